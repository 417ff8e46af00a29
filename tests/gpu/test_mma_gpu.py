"""Tensor-core (mma.sync) kernels on the GPU against the reference: random conv geometry (1×1, strided,
padded, grouped, shapes that are and are not multiples of the tile), every mma tile shape, f16 and
tf32, bias + Relu and residual epilogues; Gemm (transposed operands) and batched MatMul; NaN-poisoned
outputs (the harness)."""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "codegen"))
from harness import run_generated  # noqa: E402

from nbtrt.codegen import conv, gemm, mma_async, mma_tiled  # noqa: E402
from nbtrt.codegen.kernel import TensorArg  # noqa: E402
from nbtrt.runtime.layout import channels_last_strides  # noqa: E402
from nbtrt.groups import Step, group_attrs, group_op  # noqa: E402
from nbtrt.ir import Graph, Node, TensorType  # noqa: E402
from nbtrt.reference import KERNELS  # noqa: E402

pytestmark = pytest.mark.gpu
BIAS_RELU = (Step("Add", ("acc", "in2")), Step("Relu", ("s0",)))
RESIDUAL = (Step("Add", ("acc", "in2")), Step("Add", ("s0", "in3")), Step("Relu", ("s1",)))
CONV = dict(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None)


def conv_node(x_shape, w_shape, attrs, dtype, math, residual):
    g = Graph()
    m = w_shape[0]
    probe = Node("Conv", [], [], dict(CONV, **attrs), name="probe")
    y = KERNELS["Conv"](probe, np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32))
    shapes = [x_shape, w_shape, (m, 1, 1)] + ([y.shape] if residual else [])
    ins = [g.add_input(f"x{k}", TensorType(dtype if k in (0, 1, 3) else "float32", s)) for k, s in enumerate(shapes)]
    node = g.add_node(group_op("Conv"), ins, attrs=group_attrs("Conv", dict(CONV, **attrs), 2, (m,),
                                                               (RESIDUAL if residual else BIAS_RELU,), ("conv",)),
                      name="conv")
    node.outputs[0].type = TensorType(dtype, y.shape)
    node.attrs["math"] = {"f16": "fp16", "tf32": "tf32"}.get(math, "fp32")
    return node


def channels_last(param, dtype, shape, channels=None, first=0):
    """NHWC strides for logical NCHW ``shape`` (inside a buffer of ``channels`` channels, from channel
    ``first``: a concat slice)."""
    n, c, h, w = shape
    return TensorArg(param, dtype, tuple(shape), channels_last_strides((n, channels or c, h, w)), first)


def ohwi(param, dtype, shape):
    return TensorArg(param, dtype, tuple(shape), channels_last_strides(shape))


def nhwc_args(node, extra_channels=0, out_nhwc=True):
    """Channels-last input (maybe a slice of a wider buffer), OHWI weights, NHWC or NCHW output."""
    x, w = node.inputs[0].type, node.inputs[1].type
    ins = [channels_last("in0", x.dtype, x.shape, x.shape[1] + extra_channels, extra_channels), ohwi("in1", w.dtype, w.shape)]
    ins += [channels_last(f"in{k}", v.type.dtype, v.type.shape) if len(v.type.shape) == 4
            else TensorArg.contiguous(f"in{k}", v.type.dtype, v.type.shape) for k, v in enumerate(node.inputs) if k > 1]
    y = node.outputs[0].type
    out = channels_last("out0", y.dtype, y.shape) if out_nhwc else TensorArg.contiguous("out0", y.dtype, y.shape)
    return ins, [out]


def check(node, tactic, rng, layouts=None):
    arrays = [rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in node.inputs]
    arrays[1] = (arrays[1] / np.sqrt(np.prod(arrays[1].shape[1:]))).astype(arrays[1].dtype)
    ins, outs = layouts or (None, None)
    got, _, spec = run_generated(node, arrays, tactic, out_args=outs, in_args=ins)
    want = KERNELS[node.op](node, *[a.astype(np.float32) for a in arrays])[0]
    got = got[0].astype(np.float32)
    assert not np.isnan(got).any(), f"unwritten elements\n{spec.source}"
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
    assert err <= 2e-3, (tactic, err)
    return spec


@settings(max_examples=14, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mma_conv_matches_reference(data):
    math = data.draw(st.sampled_from(["f16", "tf32"]))
    n, groups = data.draw(st.integers(1, 3)), data.draw(st.sampled_from([1, 1, 2]))
    cg, mg = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 48))
    k = data.draw(st.sampled_from([1, 1, 3, 5]))
    s, p = data.draw(st.integers(1, 2)), data.draw(st.integers(0, k // 2 + 1))
    h, w = data.draw(st.integers(k, 18)), data.draw(st.integers(k, 18))
    attrs = dict(kernel_shape=(k, k), strides=(s, s), pads=(p, p, p, p), group=groups)
    node = conv_node((n, cg * groups, h, w), (mg * groups, cg, k, k), attrs,
                     "float16" if math == "f16" else "float32", math, data.draw(st.booleans()))
    tactics = [t for t in conv.TACTICS if t.get("algorithm") == "mma" and t["math"] == math and conv.valid(node, t)]
    assert tactics, "no valid tensor-core tactic"
    check(node, data.draw(st.sampled_from(tactics)), np.random.default_rng(0))


@pytest.mark.parametrize("math", ["f16", "tf32"])
@pytest.mark.parametrize("shape", mma_tiled.SHAPES)
def test_every_tile_shape_at_a_resnet_layer(math, shape):
    """A ResNet-50-like 3×3 layer (not a multiple of any tile: 200 output channels, 15×15 pixels); 72
    input channels (K decoded per element) and 64 (K in (tap, channel) order, one tap per K slice)."""
    for channels in (72, 64):
        node = conv_node((2, channels, 15, 15), (200, channels, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)),
                         "float16" if math == "f16" else "float32", math, residual=True)
        _check_shape(node, math, shape, channels == 64)


def _check_shape(node, math, shape, tap_major):
    tactic = next(t for t in conv.TACTICS if t.get("algorithm") == "mma" and t["math"] == math
                  and (t["bm"], t["bn"], t["wm"], t["wn"]) == shape)
    spec = check(node, tactic, np.random.default_rng(1))
    assert "mma_" in spec.source and ("tap = k0 //" in spec.source) == tap_major


def test_fp32_kernels_do_not_use_tensor_cores():
    node = conv_node((1, 16, 8, 8), (16, 16, 3, 3), dict(kernel_shape=(3, 3)), "float16", None, False)
    assert not any(conv.valid(node, t) for t in conv.TACTICS if t.get("algorithm") == "mma" and t["math"] == "f16")
    assert not any(conv.valid(node, t) for t in conv.TACTICS if t.get("algorithm") == "mma")  # no math="tf32" either


def gemm_node(base, a_shape, b_shape, attrs, dtype, math):
    g = Graph()
    a, b = g.add_input("a", TensorType(dtype, a_shape)), g.add_input("b", TensorType(dtype, b_shape))
    probe = Node(base, [], [], attrs, name="probe")
    y = KERNELS[base](probe, np.zeros(a_shape, np.float32), np.zeros(b_shape, np.float32))
    node = g.add_node(group_op(base), [a, b], attrs=group_attrs(base, attrs, 2, (y.shape[-1],), ((),), ("mm",)),
                      name="mm")
    node.outputs[0].type = TensorType(dtype, y.shape)
    node.attrs["math"] = {"f16": "fp16", "tf32": "tf32"}[math]
    return node


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mma_gemm_and_matmul(data):
    math = data.draw(st.sampled_from(["f16", "tf32"]))
    dtype = "float16" if math == "f16" else "float32"
    m, n, k = data.draw(st.integers(1, 150)), data.draw(st.integers(1, 150)), data.draw(st.integers(1, 100))
    if data.draw(st.booleans()):
        ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
        node = gemm_node("Gemm", (k, m) if ta else (m, k), (n, k) if tb else (k, n),
                         dict(transA=int(ta), transB=int(tb), alpha=1.0, beta=1.0), dtype, math)
    else:
        batch = data.draw(st.integers(1, 3))
        node = gemm_node("MatMul", (batch, m, k), (batch, k, n), {}, dtype, math)
    tactics = [t for t in gemm.TACTICS if t.get("algorithm") == "mma" and t["math"] == math and gemm.valid(node, t)]
    assert tactics
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(v.type.shape).astype(dtype) for v in node.inputs]
    tactic = data.draw(st.sampled_from(tactics))
    got, _, spec = run_generated(node, arrays, tactic)
    want = KERNELS[node.op](node, *[a.astype(np.float32) for a in arrays])[0]
    assert not np.isnan(got[0]).any(), spec.source
    err = np.abs(got[0].astype(np.float32) - want).max() / max(np.abs(want).max(), 1e-30)
    assert err <= 2e-3, (tactic, err)


def async_tactics(node, ins, outs):
    return [t for t in conv.TACTICS if t.get("algorithm") == "mma_async" and conv.valid(node, t, outs, ins)]


def pipelined_geometry(data, chunk: int, chunks: int):
    """(x shape, w shape, attrs) of a random conv for the pipelined kernel: Cg a multiple of ``chunk``
    (at most ``chunks`` of them), padding, strides, groups, pixel and channel counts off the tile."""
    n, groups = data.draw(st.integers(1, 3)), data.draw(st.sampled_from([1, 1, 2]))
    cg, mg = chunk * data.draw(st.integers(1, chunks)), data.draw(st.integers(1, 80))
    k = data.draw(st.sampled_from([1, 1, 3, 3, 5]))
    s, p = data.draw(st.integers(1, 2)), data.draw(st.integers(0, k // 2 + 1))
    h, w = data.draw(st.integers(k, 20)), data.draw(st.integers(k, 20))
    attrs = dict(kernel_shape=(k, k), strides=(s, s), pads=(p, p, p, p), group=groups)
    return (n, cg * groups, h, w), (mg * groups, cg, k, k), attrs


@settings(max_examples=16, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_pipelined_conv_on_channels_last_tensors(data):
    """The cp.async kernel: NHWC input (maybe a channel slice of a wider buffer), OHWI weights, NHWC or
    NCHW output; padding, strides, groups, pixel and channel counts off the tile."""
    x_shape, w_shape, attrs = pipelined_geometry(data, 8, 9)
    node = conv_node(x_shape, w_shape, attrs, "float16", "f16", data.draw(st.booleans()))
    ins, outs = nhwc_args(node, 8 * data.draw(st.integers(0, 2)), data.draw(st.booleans()))
    tactics = async_tactics(node, ins, outs)
    assert tactics, "no valid pipelined tactic"
    check(node, data.draw(st.sampled_from(tactics)), np.random.default_rng(0), (ins, outs))


@pytest.mark.parametrize("shape", mma_async.SHAPES)
def test_every_pipelined_tile_at_a_resnet_layer(shape):
    node = conv_node((2, 64, 15, 15), (200, 64, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)), "float16", "f16",
                     residual=True)
    ins, outs = nhwc_args(node)
    tactic = next(t for t in conv.TACTICS if t.get("algorithm") == "mma_async"
                  and (t["bm"], t["bn"], t["wm"], t["wn"], t["stages"]) == shape)
    spec = check(node, tactic, np.random.default_rng(2), (ins, outs))
    assert "cp_async16" in spec.source


@pytest.mark.parametrize("splits", mma_async.SPLITS)
@pytest.mark.parametrize("shape", mma_async.SPLIT_SHAPES)
def test_split_k_at_a_batch_one_layer(shape, splits):
    """Split K: every part count on a 7x7 layer (18 K slices: with 16 parts some parts are empty); the
    same scratch reused by two more launches gives the same result bit for bit (parts summed in
    order) and every arrival counter is back to zero."""
    from numba import cuda

    from nbtrt.codegen.build import jit
    from nbtrt.codegen.kernel import scratch_arrays
    node = conv_node((1, 64, 7, 7), (80, 64, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)), "float16", "f16",
                     residual=True)
    ins, outs = nhwc_args(node)
    tactic = next(t for t in conv.TACTICS if t.get("splits") == splits
                  and (t["bm"], t["bn"], t["wm"], t["wn"], t["stages"]) == shape)
    spec = check(node, tactic, np.random.default_rng(3), (ins, outs))
    assert spec.grid[2] == splits and spec.scratch.flags == spec.grid[0] * spec.grid[1]
    rng = np.random.default_rng(4)
    tensors = {a.param: cuda.to_device(rng.standard_normal(a.offset + a.numel).astype(a.dtype)) for a in ins + outs}
    work, flags = [cuda.to_device(a) for a in scratch_arrays(spec.scratch)]
    kernel, results = jit(spec), []
    for _ in range(2):
        kernel[spec.grid, spec.block](*[tensors[p] for p in spec.tensor_params], work, flags)
        results.append(tensors["out0"].copy_to_host())
    np.testing.assert_array_equal(results[0], results[1])
    assert not flags.copy_to_host().any()


def test_pipelined_kernel_needs_channels_last_operands():
    node = conv_node((1, 16, 8, 8), (16, 16, 3, 3), dict(kernel_shape=(3, 3)), "float16", "f16", False)
    assert not async_tactics(node, None, None)  # contiguous NCHW / OIHW
    ins, outs = nhwc_args(node)
    assert async_tactics(node, ins, outs)
    ins[1] = TensorArg.contiguous("in1", "float16", (16, 16, 3, 3))
    assert not async_tactics(node, ins, outs)
