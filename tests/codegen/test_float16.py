"""float16 storage in every CUDA-core kernel family (simulator, poisoned outputs): inputs and outputs
in float16 or float32 in any mix, against the reference run on the widened (float32) inputs and
rounded to each output's dtype — what an fp16 build computes (passes/precision.py). Kernels compute in
float32, so the only differences are summation order and, rarely, one float16 rounding step."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import expected, run_generated
from nbtrt.groups import Step
from nbtrt.ir import TensorType
from test_conv import BIAS_RELU, SMALL_TILES, bare_floats, conv_case, conv_group, epilogue_group
from test_copy import T, i64, make
from test_eltwise import group_node
from test_gemm import TILES, gemm_group
from test_pool import pool_group
from test_reduce import plain

FEW = settings(max_examples=8, deadline=None)
f16, f32 = np.float16, np.float32


def widened(a):
    return a.astype(f32) if isinstance(a, np.ndarray) and a.dtype == f16 else a


def outputs_in(node, *dtypes):
    """Give the node's outputs these dtypes (one for all, or one per output)."""
    for i, v in enumerate(node.outputs):
        v.type = TensorType(dtypes[min(i, len(dtypes) - 1)], v.type.shape)
    return node


def check(node, arrays, tactic=None, rtol=2e-3, atol=2e-3):
    """Run the kernel on ``arrays`` (in their dtypes); compare with the reference of the widened inputs
    rounded to the output dtypes. Returns the kernel spec."""
    got, _, spec = run_generated(node, arrays, tactic)
    want = expected(node, [widened(a) for a in arrays])
    for g, w, v in zip(got, want, node.outputs):
        assert g.dtype.name == v.type.dtype, spec.source
        assert not np.isnan(g).any() or np.isnan(w).any(), f"unwritten elements\n{spec.source}"
        w = np.asarray(w).astype(v.type.dtype) if np.asarray(w).dtype.kind == "f" else np.asarray(w)
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol,
                                   err_msg=spec.source)
    return spec


def rand(rng, shape, dtype=f16, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@FEW
@given(conv_case(), st.sampled_from(["direct", "implicit_gemm"]), st.sampled_from(SMALL_TILES),
       st.sampled_from(["none", "bias_relu", "residual"]), st.sampled_from([f16, f32]),
       st.sampled_from(["float16", "float32"]), st.integers(0, 999))
def test_conv_float16(case, algorithm, tile, epi, x_dtype, out_dtype, seed):
    """X float16 (or float32, a network input), W float16, bias float32, a float16 residual."""
    x_shape, w_shape, attrs = case
    rng = np.random.default_rng(seed)
    node, extra = epilogue_group(x_shape, w_shape, attrs, epi)
    outputs_in(node, out_dtype)
    arrays = [rand(rng, x_shape, x_dtype), rand(rng, w_shape)]
    arrays += [rand(rng, s, f32 if k == 0 else f16) for k, s in enumerate(extra)]
    tactic = dict(algorithm="direct", threads=64) if algorithm == "direct" else dict(algorithm=algorithm, **tile)
    check(node, arrays, tactic)


def test_conv_1x1_float16_and_source():
    rng = np.random.default_rng(0)
    node = outputs_in(conv_group((2, 12, 3, 5), (7, 12, 1, 1), {}, (BIAS_RELU,), [(7, 1, 1)]), "float16")
    arrays = [rand(rng, (2, 12, 3, 5)), rand(rng, (7, 12, 1, 1)), rand(rng, (7, 1, 1), f32)]
    spec = check(node, arrays, dict(algorithm="gemm_1x1", **SMALL_TILES[1]))
    assert "float32(in0[" in spec.source and "float32(in1[" in spec.source  # widened on load
    assert "out0[" in spec.source and "= float16(" in spec.source  # rounded on store
    assert "cuda.shared.array((8, 16), float32)" in spec.source  # the tiles stay float32
    assert not bare_floats(spec.source) and "float64" not in spec.source


def test_conv_transpose_float16():
    rng = np.random.default_rng(1)
    attrs = dict(strides=(2, 2), pads=(1, 0, 1, 0), kernel_shape=(3, 3))
    node = outputs_in(conv_group((1, 4, 3, 3), (4, 3, 3, 3), attrs, (BIAS_RELU,), [(3, 1, 1)], base="ConvTranspose"),
                      "float16")
    check(node, [rand(rng, (1, 4, 3, 3)), rand(rng, (4, 3, 3, 3)), rand(rng, (3, 1, 1), f32)], dict(threads=64))


@FEW
@given(st.integers(1, 20), st.integers(1, 20), st.integers(1, 30), st.booleans(), st.sampled_from(TILES),
       st.sampled_from(["float16", "float32"]), st.integers(0, 999))
def test_gemm_float16(m, n, k, trans_b, tile, out_dtype, seed):
    rng = np.random.default_rng(seed)
    b_shape = (n, k) if trans_b else (k, n)
    node = gemm_group("Gemm", (m, k), b_shape, dict(transA=0, transB=int(trans_b), alpha=1.0, beta=1.0),
                      (Step("Add", ("acc", "in2")), Step("Relu", ("s0",))), [(n,)])
    check(outputs_in(node, out_dtype), [rand(rng, (m, k)), rand(rng, b_shape), rand(rng, (n,), f32)], tile)


def test_matmul_batched_float16_with_float32_operand():
    rng = np.random.default_rng(2)
    node = outputs_in(gemm_group("MatMul", (2, 5, 6), (6, 7), {}, (Step("Add", ("acc", "in2")),), [(2, 5, 7)]),
                      "float16")
    check(node, [rand(rng, (2, 5, 6), f32), rand(rng, (6, 7)), rand(rng, (2, 5, 7))], TILES[3])


@FEW
@given(st.sampled_from(["Sigmoid", "Tanh", "Relu", "Exp"]), st.sampled_from(["float16", "float32"]),
       st.integers(0, 999))
def test_eltwise_mixed_float16_float32(act, out_dtype, seed):
    """float16 and float32 operands (an activation and a bias) into either dtype; computed in float32."""
    rng = np.random.default_rng(seed)
    program = (Step("Mul", ("in0", "in1")), Step("Add", ("s0", "in2")), Step(act, ("s1",)))
    node = outputs_in(group_node(program, [(2, 3, 4), (3, 1), (4,)], (2, 3, 4)), out_dtype)
    spec = check(node, [rand(rng, (2, 3, 4)), rand(rng, (3, 1), f32), rand(rng, (4,))])
    assert "float16(0" not in spec.source and "float32(in0[" in spec.source


def test_eltwise_cast_steps_and_copy():
    rng = np.random.default_rng(3)
    cast = group_node((Step("Cast", ("in0",), (("round_mode", "up"), ("saturate", 1), ("to", "float32"))),),
                      [(3, 5)], (3, 5))
    check(cast, [rand(rng, (3, 5))], rtol=0, atol=0)
    copy = outputs_in(group_node((Step("Identity", ("in0",)),), [(3, 5)], (3, 5)), "float16")
    check(copy, [rand(rng, (3, 5), f32)], rtol=0, atol=0)


@FEW
@given(st.sampled_from(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"]),
       st.sampled_from(["none", "bias_relu", "scale_residual"]), st.sampled_from(["float16", "float32"]),
       st.integers(0, 999))
def test_pool_float16(base, epilogue, out_dtype, seed):
    rng = np.random.default_rng(seed)
    attrs = {} if base.startswith("Global") else {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}
    node = outputs_in(pool_group(base, (2, 3, 5, 4), attrs, epilogue), out_dtype)
    arrays = [rand(rng, v.type.shape, f32 if k == 1 else f16) for k, v in enumerate(node.inputs)]
    check(node, arrays)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("out_dtype", ["float16", "float32"])
def test_softmax_float16_accumulates_in_float32(op, out_dtype):
    """Rows of 300 logits: float32 sums (a float16 sum of 300 exps would be off by ~1e-2)."""
    rng = np.random.default_rng(4)
    node = outputs_in(plain(op, [(2, 300)], {"axis": -1}, dtype="float16"), out_dtype)
    spec = check(node, [rand(rng, (2, 300), scale=3.0)], {"threads": 32, "rows": 2})
    assert "cuda.shared.array((2, 32), float32)" in spec.source


@pytest.mark.parametrize("op,attrs,extra", [
    ("LRN", {"size": 3}, []),
    ("InstanceNormalization", {}, [(3,), (3,)]),
    ("LayerNormalization", {"axis": -1}, [(6,), (6,)]),
    ("BatchNormalization", {}, [(3,), (3,), (3,), (3,)]),
])
def test_norms_float16(op, attrs, extra):
    rng = np.random.default_rng(5)
    node = outputs_in(plain(op, [(2, 3, 6)] + extra, attrs, dtype="float16"), "float16")
    arrays = [rand(rng, (2, 3, 6), scale=4.0)] + [rand(rng, s, f32) for s in extra]
    if op == "BatchNormalization":
        arrays[4] = np.abs(arrays[4]) + f32(0.5)  # variance
    check(node, arrays)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax"])
def test_reduce_float16(op):
    rng = np.random.default_rng(6)
    axes = np.array([1, 2], np.int64)
    node = outputs_in(plain(op, [(2, 40, 9), (2,)], {"keepdims": 1}, consts={1: axes}, dtype="float16"), "float16")
    check(node, [rand(rng, (2, 40, 9)), axes], {"threads": 64, "rows": 1})


def test_copies_float16_mixed():
    rng = np.random.default_rng(7)
    node, _ = make("Transpose", [T((2, 3, 4), "float16")], {"perm": (2, 0, 1)})
    check(outputs_in(node, "float32"), [rand(rng, (2, 3, 4))], rtol=0, atol=0)
    node, _ = make("Concat", [T((2, 3), "float16"), T((2, 1), "float16")], {"axis": 1})
    check(node, [rand(rng, (2, 3)), rand(rng, (2, 1))], rtol=0, atol=0)
    node, _ = make("Split", [T((2, 5), "float16"), i64(2, 3)], {"axis": 1}, n_out=2)
    check(outputs_in(node, "float16", "float32"), [rand(rng, (2, 5)), i64(2, 3)], rtol=0, atol=0)
    node, arrays = make("Slice", [T((4, 6), "float16"), i64(1, -1), i64(4, 0), i64(0, 1), i64(1, -2)])
    check(node, [rand(rng, (4, 6))] + arrays[1:], rtol=0, atol=0)
    node, arrays = make("Gather", [T((5, 3), "float16"), i64(4, -1, 0)], {"axis": 0})
    check(outputs_in(node, "float32"), [rand(rng, (5, 3))] + arrays[1:], rtol=0, atol=0)
    node, arrays = make("Expand", [T((3, 1), "float16"), i64(2, 3, 4)])
    check(node, [rand(rng, (3, 1))] + arrays[1:], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pad_float16(mode):
    rng = np.random.default_rng(8)
    inputs = [T((2, 3, 4), "float16"), i64(0, 1, 2, 0, 0, 1)] + ([np.float16(2.5)] if mode == "constant" else [])
    node, arrays = make("Pad", inputs, {"mode": mode})
    check(outputs_in(node, "float32" if mode == "reflect" else "float16"), [rand(rng, (2, 3, 4))] + arrays[1:],
          rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_float16(mode):
    rng = np.random.default_rng(9)
    scales = np.array([1, 1, 2.0, 1.5], f32)
    node, arrays = make("Resize", [T((1, 2, 3, 4), "float16"), None, scales], {"mode": mode})
    check(node, [rand(rng, (1, 2, 3, 4))] + arrays[1:])
