"""The CUDA-core int8 kernels on the GPU (``tiled.py`` with dp4a words: four K-consecutive int8 a
32-bit word, ``dp4a.s32.s32`` multiply-adds): conv (implicit GEMM, the 1×1 GEMM) and gemm with
int8 weights and an int8-stored or quantized-on-load activation, NCHW or channels-last. With
multipliers 1, no epilogue and a float32 output the result is float32 of the exact integer sum:
compared bit for bit with numpy int64. Random geometry with K off every multiple of 4 and of the
tile, random tiles (split K among them); NaN-poisoned outputs (the harness)."""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "codegen"))
from harness import run_generated  # noqa: E402
from test_gemm import gemm_group  # noqa: E402
from test_int8_gpu import exact_sums, int8_conv_node  # noqa: E402
from test_mma_gpu import nhwc_args  # noqa: E402

from nbtrt.codegen import conv, gemm  # noqa: E402
from nbtrt.quant import quantize  # noqa: E402

pytestmark = pytest.mark.gpu
SCALE = 0.05


def cuda_core_tactics(family, node, ins=None, outs=None):
    return [t for t in family.TACTICS if t.get("algorithm") in (None, "implicit_gemm", "gemm_1x1")
            and family.valid(node, t, outs, ins)]


def operand(rng, shape, dtype):
    """int8 values, or floats that quantize (scale SCALE) to values across the whole int8 range."""
    if dtype == "int8":
        return rng.integers(-127, 128, shape).astype(np.int8)
    return (rng.standard_normal(shape) * 40 * SCALE).astype(dtype)


def quantized(x):
    return x if x.dtype == np.int8 else quantize(x.astype(np.float32), SCALE)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_dp4a_conv_sums_are_exact(data):
    k = data.draw(st.sampled_from([1, 3]))
    groups = data.draw(st.sampled_from([1, 1, 2]))
    c, m = groups * data.draw(st.integers(1, 40)), groups * data.draw(st.integers(1, 24))
    stride, hw = data.draw(st.sampled_from([1, 2])), data.draw(st.integers(k, 14))
    pad = data.draw(st.integers(0, k // 2))
    attrs = dict(kernel_shape=(k, k), strides=(stride, stride), pads=(pad,) * 4, group=groups)
    x_dtype = data.draw(st.sampled_from(["int8", "float16", "float32"]))
    node = int8_conv_node((data.draw(st.integers(1, 3)), c, hw, hw), (m, c // groups, k, k), attrs, None,
                          scale=SCALE)
    node.inputs[0].type = type(node.inputs[0].type)(x_dtype, node.inputs[0].type.shape)
    ins, outs = nhwc_args(node, out_nhwc=data.draw(st.booleans())) if data.draw(st.booleans()) else (None, None)
    tactics = cuda_core_tactics(conv, node, ins, outs)
    assert tactics, "no valid CUDA-core tactic"
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    arrays = [operand(rng, node.inputs[0].type.shape, x_dtype), operand(rng, node.inputs[1].type.shape, "int8"),
              np.ones(m, np.float32)]
    want = exact_sums(node, [quantized(arrays[0]), arrays[1]]).astype(np.float32)
    for tactic in data.draw(st.lists(st.sampled_from(tactics), min_size=1, max_size=2, unique_by=str)):
        got, _, spec = run_generated(node, arrays, tactic, out_args=outs, in_args=ins)
        np.testing.assert_array_equal(got[0], want, err_msg=str(tactic))
        assert "dp4a(" in spec.source


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(1, 130), st.integers(1, 300), st.integers(1, 700), st.booleans(),
       st.sampled_from(["int8", "float16", "float32"]), st.data())
def test_dp4a_gemm_sums_are_exact(m, n, k, trans_b, a_dtype, data):
    """Gemm (the classifier's fc: int8 weights transposed) and MatMul."""
    rng = np.random.default_rng(m * n + k)
    a, w_q = operand(rng, (m, k), a_dtype), operand(rng, (n, k) if trans_b else (k, n), "int8")
    node = gemm_group("Gemm", a.shape, w_q.shape, dict(transA=0, transB=int(trans_b), alpha=1.0, beta=1.0),
                      (), [(n,)])
    node.inputs[0].type = type(node.inputs[0].type)(a_dtype, a.shape)
    node.inputs[1].type = type(node.inputs[1].type)("int8", w_q.shape)
    node.attrs.update(math="int8", int8_scale=SCALE, int8_multiplier=2)
    want = (quantized(a).astype(np.int64) @ (w_q.T if trans_b else w_q).astype(np.int64)).astype(np.float32)
    tactics = cuda_core_tactics(gemm, node)
    for tactic in data.draw(st.lists(st.sampled_from(tactics), min_size=1, max_size=2, unique_by=str)):
        got, _, spec = run_generated(node, [a, w_q, np.ones(n, np.float32)], tactic)
        np.testing.assert_array_equal(got[0], want, err_msg=str(tactic))
        assert "dp4a(" in spec.source
