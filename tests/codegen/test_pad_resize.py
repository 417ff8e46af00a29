"""Pad and Resize kernels in the simulator against the reference: every pad mode with positive and
negative (cropping) pads, Resize nearest with every nearest_mode and coordinate mode, linear and cubic
(antialias, exclude_outside, tf_crop_and_resize), scales up and down, sizes, integer data, a strided
output, and what is refused."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import assert_matches, run_generated
from nbtrt.codegen import generate
from nbtrt.codegen.kernel import TensorArg
from nbtrt.errors import UnsupportedOpError
from nbtrt.ops.resize import COORDINATE_MODES, NEAREST_MODES
from test_copy import T, check, i64, make

SETTINGS = settings(max_examples=15, deadline=None)
SCALES = [0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0]
f32 = np.float32


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.data(),
       st.sampled_from(["constant", "reflect", "edge", "wrap"]))
def test_pad_all_modes(shape, data, mode):
    rank = len(shape)
    axes = data.draw(st.one_of(st.none(), st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank,
                                                    unique_by=lambda a: a % rank)))
    listed = range(rank) if axes is None else [a % rank for a in axes]
    begins, ends = [], []
    for a in listed:  # crop at most leaving one element (reflect/edge/wrap need one), pad up to 5
        b = data.draw(st.integers(-(shape[a] - 1), 5))
        begins.append(b)
        ends.append(data.draw(st.integers(-(shape[a] - 1 + min(b, 0)), 5)))
    inputs = [T(shape), i64(*begins, *ends)]
    if mode == "constant" and data.draw(st.booleans()):
        inputs.append(f32(data.draw(st.sampled_from([-2.5, 0.0, 7.0]))))
    if axes is not None:
        inputs += [None] * (3 - len(inputs)) + [i64(*axes)]
    check("Pad", inputs, {"mode": mode})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_crop_one_side_pad_the_other(mode):
    check("Pad", [T((5, 4, 3)), i64(-2, 3, 1, 3, -1, -1)], {"mode": mode})


def test_pad_int_constant_and_large_reflect():
    node, _ = make("Pad", [T((3,), "int32"), i64(2, 4), np.int32(-7)], {"mode": "constant"})
    assert_matches(node, [np.arange(3, dtype=np.int32), i64(2, 4), np.int32(-7)])
    check("Pad", [T((3, 2)), i64(7, 1, 8, 0)], {"mode": "reflect"})  # pads longer than the data


def resize_inputs(shape, scales=None, sizes=None, roi=None):
    return [T(shape), None if roi is None else np.asarray(roi, f32),
            None if scales is None else np.asarray(scales, f32), None if sizes is None else i64(*sizes)]


@SETTINGS
@given(st.sampled_from(NEAREST_MODES), st.sampled_from(COORDINATE_MODES[:5]),
       st.tuples(st.integers(1, 4), st.integers(1, 4)), st.sampled_from(SCALES), st.sampled_from(SCALES))
def test_resize_nearest(nearest_mode, coord_mode, hw, sh, sw):
    attrs = {"mode": "nearest", "nearest_mode": nearest_mode, "coordinate_transformation_mode": coord_mode}
    check("Resize", resize_inputs((1, 2) + hw, [1, 1, sh, sw]), attrs, rtol=0, atol=0)


@SETTINGS
@given(st.sampled_from(COORDINATE_MODES[:5]), st.tuples(st.integers(1, 4), st.integers(1, 4)),
       st.sampled_from(SCALES), st.sampled_from(SCALES), st.booleans())
def test_resize_bilinear(coord_mode, hw, sh, sw, by_sizes):
    attrs = {"mode": "linear", "coordinate_transformation_mode": coord_mode}
    if by_sizes:
        inputs = resize_inputs((2, 1) + hw, sizes=[max(1, int(hw[0] * sh)), max(1, int(hw[1] * sw))])
        attrs["axes"] = (2, 3)
    else:
        inputs = resize_inputs((2, 1) + hw, [1, 1, sh, sw])
    check("Resize", inputs, attrs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs, scales", [
    ({"mode": "linear"}, [1.5, 0.5, 2.0]),                                  # 3-D linear
    ({"mode": "linear", "antialias": 1}, [1.0, 0.5, 0.6]),
    ({"mode": "linear", "exclude_outside": 1}, [1.0, 2.5, 1.5]),
    ({"mode": "cubic"}, [1.0, 2.0, 0.75]),
    ({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, [1.0, 1.5, 3.0]),
    ({"mode": "cubic", "antialias": 1, "coordinate_transformation_mode": "pytorch_half_pixel"},
     [1.0, 0.5, 0.6]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, [1.0, 1.5, 0.6]),
])
def test_resize_nd_cubic_antialias_exclude(attrs, scales):
    check("Resize", resize_inputs((2, 4, 5), scales), attrs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_tf_crop_and_resize(mode):
    attrs = {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize",
             "extrapolation_value": -3.0}
    roi = [0, 0, -0.2, 0.3, 1, 1, 0.9, 1.4]
    check("Resize", resize_inputs((1, 1, 4, 5), sizes=[1, 1, 5, 3], roi=roi), attrs, rtol=1e-5, atol=1e-5)


def test_resize_uint8_rounds_and_saturates():
    scales = np.array([1, 1, 1.5, 2.0], f32)
    node, _ = make("Resize", [T((1, 1, 3, 3), "uint8"), None, scales], {"mode": "cubic"})
    x = np.array([[0, 255, 0], [255, 0, 255], [10, 11, 200]], np.uint8).reshape(1, 1, 3, 3)
    assert_matches(node, [x, None, scales], rtol=0, atol=0)


def test_resize_into_strided_slice():
    node, arrays = make("Resize", resize_inputs((1, 2, 2, 2), [1, 1, 2, 2]), {"mode": "linear"})
    dst = TensorArg("out0", "float32", (1, 2, 4, 4), (48, 16, 4, 1), 16)  # channels 1:3 of [1, 3, 4, 4]
    (got,), buffers, _ = run_generated(node, arrays, out_args=[dst], buffer_sizes={"out0": 48})
    assert np.isnan(buffers["out0"][:16]).all() and not np.isnan(got).any()


def test_runtime_scales_unsupported():
    node, arrays = make("Resize", [T((1, 1, 2, 2)), None, T((4,))], {"mode": "linear"})
    ins = [None if a is None else TensorArg.contiguous(f"in{k}", a.dtype.name, a.shape)
           for k, a in enumerate(arrays)]
    with pytest.raises(UnsupportedOpError, match="n1"):
        generate(node, [TensorArg.contiguous("out0", "float32", (1, 1, 4, 4))], ins)


def test_source_is_readable():
    spec = check("Resize", resize_inputs((1, 1, 2, 3), [1, 1, 2, 0.5]), {"mode": "nearest"})
    assert "# nbtrt resize kernel for 'n1'" in spec.source and "float64(2.0)" in spec.source
    spec = check("Pad", [T((3, 4)), i64(1, 0, 2, 0)], {"mode": "reflect"})
    assert "# nbtrt pad kernel for 'n1'" in spec.source and "% 4" in spec.source
