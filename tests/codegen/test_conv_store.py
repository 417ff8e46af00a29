"""Pure-Python parts of the conv stores and tile choice: flat views (a column's elements at one
stride, so the epilogue indexes by the column itself) and the split-K heuristic of the pipelined
kernel. Their GPU numerics are in tests/gpu/test_mma_gpu.py."""

import pytest

from nbtrt.codegen import mma_async
from nbtrt.codegen.conv_geom import ConvGeom
from nbtrt.codegen.conv_store import flat_views
from nbtrt.codegen.kernel import TensorArg, contiguous_strides
from nbtrt.runtime.layout import channels_last_strides


def geom(n, c, m, h, w):
    return ConvGeom(n=n, c=c, m=m, groups=1, sizes=(h, w), out=(h, w), kernel=(1, 1), strides=(1, 1),
                    dilations=(1, 1), pads=(0, 0))


def nhwc(param, shape, channels=None, first=0, dtype="float16"):
    n, c, h, w = shape
    return TensorArg(param, dtype, shape, channels_last_strides((n, channels or c, h, w)), first)


def test_nhwc_output_and_residual_are_flat():
    g = geom(2, 8, 16, 3, 5)
    out, res = nhwc("out0", (2, 16, 3, 5), 48, 24), nhwc("in3", (2, 16, 3, 5))
    bias = TensorArg.contiguous("in2", "float32", (16, 1, 1))
    (view,), ins = flat_views(g, [out], [None, None, bias, res])
    assert view.shape == (1, 16, 1, 30) and view.strides[1] == 1 and view.strides[3] == 48 and view.offset == 24
    assert ins[2] is bias and ins[3].strides[3] == 16 and ins[3].shape == (1, 16, 1, 30)


def test_nchw_is_flat_only_for_one_image():
    one = TensorArg.contiguous("out0", "float16", (1, 16, 3, 5))
    (view,), _ = flat_views(geom(1, 8, 16, 3, 5), [one], [None, None])
    assert view.strides == (0, 15, 0, 1)
    two = TensorArg.contiguous("out0", "float16", (2, 16, 3, 5))
    assert flat_views(geom(2, 8, 16, 3, 5), [two], [None, None]) is None


def test_an_operand_varying_over_positions_but_not_full_shaped_is_not_flat():
    g = geom(2, 8, 16, 3, 5)
    out = nhwc("out0", (2, 16, 3, 5))
    rows = TensorArg("in2", "float32", (16, 3, 1), contiguous_strides((16, 3, 1)))  # varies over H
    assert flat_views(g, [out], [None, None, rows]) is None


def test_split_k_only_when_the_tiles_leave_the_gpu_idle():
    bs1 = mma_async.pick(512, 49, 1, 4608)  # ResNet-50 layer4 3x3 at batch 1: 8 tiles of 64x64
    assert bs1["bm"] == bs1["bn"] == 64 and bs1["splits"] == 16
    assert "splits" not in mma_async.pick(512, 64 * 49, 1, 4608)  # batch 64: enough tiles
    assert mma_async.pick(512, 49, 1, 16 * mma_async.BK)["splits"] == 4  # parts of at least MIN_SLICES slices
    small = mma_async.pick(64, 49, 1, 2 * mma_async.BK)  # one tile, two K slices: nothing to split
    assert small is None or "splits" not in small


@pytest.mark.parametrize("math", ["s8", "f16"])
def test_pick_weighs_the_busiest_sms_outputs(math):
    """GoogLeNet's conv3 (M = 192) and merged 1x1s (M = 176, 320): a 128-row tile would compute rows
    past M that a 64-row one does not; M a multiple of 128 keeps 128x128 unless its blocks leave a
    partial last wave that 128x64 tiles fill better (ResNet-50 layer3 and layer4)."""
    shape = lambda t: (t["bm"], t["bn"])
    for m in (192, 176, 320, 288):
        assert shape(mma_async.pick(m, 64 * 56 * 56, 1, 576, math)) == (64, 128), m
    for m in (128, 256, 512, 96):  # no padding, or as much with 64 rows; whole waves
        assert shape(mma_async.pick(m, 64 * 28 * 28, 1, 576, math)) == (128, 128), m
    assert shape(mma_async.pick(1024, 64 * 14 * 14, 1, 256, math)) == (128, 128)  # 784 blocks: 6 waves either way
    # 196 blocks of 128x128: 2 on the busiest SM, or 3 of 128x64; 400 blocks: 4, or 6 of 128x64
    assert shape(mma_async.pick(256, 64 * 14 * 14, 1, 2304, math)) == (128, 64)
    assert shape(mma_async.pick(2048, 64 * 7 * 7, 1, 512, math)) == (128, 64)
