"""int8 math in the CUDA-core conv and gemm kernels (codegen/int8.py), simulator, poisoned outputs:
against a numpy int8 reference — the quantized operands (nbtrt.quant.quantize) multiplied with int64
accumulation, exact; then times the per-channel multiplier, where only float rounding may differ."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import expected, run_generated
from nbtrt.codegen import conv, gemm
from nbtrt.errors import UnsupportedOpError
from nbtrt.groups import Step
from nbtrt.ir import Node
from nbtrt.quant import quantize
from nbtrt.reference import KERNELS
from test_conv import BIAS_RELU, RESIDUAL, SMALL_TILES, bare_floats, conv_case, conv_group, out_shape
from test_gemm import TILES, gemm_group

f16, f32 = np.float16, np.float32


def int8_node(node, scale):
    """Mark a group int8: input scale ``scale``, multipliers in the last input."""
    node.attrs.update(math="int8", int8_scale=float(scale), int8_multiplier=len(node.inputs) - 1)
    return node


def conv_int64(x_q, w_q, attrs):
    """Σ Wq · q(X) with int64 accumulation (the reference Conv on exact float64 integers, < 2^53)."""
    probe = Node("Conv", [], [], dict(conv_group(x_q.shape, w_q.shape, attrs).attrs["base_attrs"]), name="probe")
    acc = KERNELS["Conv"](probe, x_q.astype(np.float64), w_q.astype(np.float64))
    return np.rint(acc).astype(np.int64)


def run_and_check(node, arrays, tactic, exact, epilogue_extra=()):
    """The kernel against the fused reference (same formula) and, without an epilogue, against
    ``exact``·mult. Outputs are poisoned; float16 outputs compare after rounding."""
    got, _, spec = run_generated(node, arrays, tactic)
    g = got[0]
    assert not np.isnan(g).any(), f"unwritten elements\n{spec.source}"
    want = expected(node, arrays)[0].astype(node.outputs[0].type.dtype)
    np.testing.assert_allclose(g.astype(np.float64), want.astype(np.float64), rtol=2e-3, atol=1e-3,
                               err_msg=spec.source)
    if not epilogue_extra:
        mult = arrays[-1].reshape((1, -1) + (1,) * (exact.ndim - 2)) if exact.ndim > 2 else arrays[-1]
        ref = (exact.astype(np.float32) * mult).astype(node.outputs[0].type.dtype)
        np.testing.assert_allclose(g.astype(np.float64), ref.astype(np.float64), rtol=2e-3, atol=1e-3,
                                   err_msg=spec.source)
    return spec


@settings(max_examples=14, deadline=None)
@given(conv_case(), st.sampled_from(SMALL_TILES), st.sampled_from(["implicit_gemm", "gemm_1x1"]),
       st.sampled_from(["none", "bias_relu", "residual"]), st.sampled_from([f16, f32]),
       st.sampled_from(["float16", "float32"]), st.integers(0, 999))
def test_conv_int8_random(case, tile, algorithm, epi, x_dtype, out_dtype, seed):
    x_shape, w_shape, attrs = case
    rng = np.random.default_rng(seed)
    m, rank = w_shape[0], len(x_shape)
    probe = conv_group(x_shape, w_shape, attrs)
    extra = {"none": [], "bias_relu": [(m,) + (1,) * (rank - 2)],
             "residual": [(m,) + (1,) * (rank - 2), out_shape(probe)]}[epi]
    program = {"none": (), "bias_relu": BIAS_RELU, "residual": RESIDUAL}[epi]
    node = int8_node(conv_group(x_shape, w_shape, attrs, (program,), extra + [(m,)]), 0.03)
    node.outputs[0].type = type(node.outputs[0].type)(out_dtype, node.outputs[0].type.shape)
    x = (rng.standard_normal(x_shape) * 2).astype(x_dtype)
    w_q = rng.integers(-127, 128, w_shape).astype(np.int8)
    mult = (rng.random(m) * 1e-3).astype(f32)
    arrays = [x, w_q] + [rng.standard_normal(s).astype(f32 if k == 0 else f16) for k, s in enumerate(extra)] + [mult]
    tactic = dict(algorithm=algorithm, **tile)
    if algorithm == "gemm_1x1" and not conv.is_1x1(conv.geometry(node, conv._operand_args(node))):
        assert not conv.valid(node, tactic)
        return
    assert conv.valid(node, tactic)
    run_and_check(node, arrays, tactic, conv_int64(quantize(x, 0.03), w_q, attrs), extra)


def test_conv_int8_integers_exact_and_source():
    """With multipliers 1 and a float32 output the kernel's result is the int32 sum itself: exact.
    Inputs on quantization boundaries (x/s = k + 0.5) round half to even."""
    rng = np.random.default_rng(1)
    attrs = dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1), group=2)
    x = ((rng.integers(-150, 150, (2, 6, 5, 5)) + 0.5) * 0.5).astype(f32)  # x / 0.5 = j + 0.5; |j| > 127 clips
    w_q = rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8)
    node = int8_node(conv_group(x.shape, w_q.shape, attrs, ((),), [(8,)]), 0.5)
    exact = conv_int64(quantize(x, 0.5), w_q, attrs).astype(f32)
    for tile in reversed(SMALL_TILES[:4]):
        got, _, spec = run_generated(node, [x, w_q, np.ones(8, f32)], dict(algorithm="implicit_gemm", **tile))
        assert np.array_equal(got[0], exact), spec.source
    q = quantize(x, 0.5)
    assert np.abs(q).max() == 127 and (q[np.abs(q) < 127] % 2 == 0).all()  # clipped; the rest half to even
    assert "cuda.shared.array((8, 16), int32)" in spec.source and "c0_0 = int32(0)" in spec.source
    assert "quantize_s8(in0[" in spec.source and "int32(in1[" in spec.source
    assert "acc = float32(v) * in2[ch]" in spec.source
    assert not bare_floats(spec.source) and "float64" not in spec.source


def test_int8_conv_refuses_direct_and_mma_and_picks_a_gemm():
    node = int8_node(conv_group((1, 2, 4, 4), (3, 2, 3, 3), dict(kernel_shape=(3, 3)), ((),), [(3,)]), 0.1)
    assert not conv.valid(node, dict(algorithm="direct", threads=128))
    assert conv.pick(conv.geometry(node, conv._operand_args(node)), node)["algorithm"] == "implicit_gemm"
    with pytest.raises(UnsupportedOpError, match="int8 math runs on implicit_gemm, gemm_1x1, mma_async only"):
        run_generated(node, [np.zeros((1, 2, 4, 4), f32), np.zeros((3, 2, 3, 3), np.int8), np.ones(3, f32)],
                      dict(algorithm="direct", threads=128))


@settings(max_examples=14, deadline=None)
@given(st.integers(1, 21), st.integers(1, 21), st.integers(1, 40), st.sampled_from(["Gemm", "Gemm_tB", "MatMul"]),
       st.booleans(), st.sampled_from(TILES), st.sampled_from(["float16", "float32"]), st.integers(0, 999))
def test_gemm_int8_random(m, n, k, base, bias, tile, out_dtype, seed):
    rng = np.random.default_rng(seed)
    tb = base == "Gemm_tB"
    a = (rng.standard_normal((m, k)) * 3).astype(f16 if seed % 2 else f32)
    w_q = rng.integers(-127, 128, (n, k) if tb else (k, n)).astype(np.int8)
    mult = (rng.random(n) * 1e-2).astype(f32)
    extra = [(n,)] if bias else []
    program = (Step("Add", ("acc", "in2")), Step("Relu", ("s0",))) if bias else ()
    node = gemm_group("MatMul" if base == "MatMul" else "Gemm", a.shape, w_q.shape,
                      {} if base == "MatMul" else dict(transA=0, transB=int(tb), alpha=1.0, beta=1.0), program,
                      extra + [(n,)])
    int8_node(node, 0.05)
    node.outputs[0].type = type(node.outputs[0].type)(out_dtype, node.outputs[0].type.shape)
    arrays = [a, w_q] + [rng.standard_normal(s).astype(f32) for s in extra] + [mult]
    assert gemm.valid(node, tile)
    exact = quantize(a, 0.05).astype(np.int64) @ (w_q.T if tb else w_q).astype(np.int64)
    run_and_check(node, arrays, tile, exact, extra)


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e4, 1e4, width=32), st.floats(2.0 ** -10, 10.0, width=32),
       st.integers(-(1 << 22) + 1, (1 << 22) - 1))
def test_conversions_without_conversion_instructions(x, scale, i):
    """The tensor-core run stores' bit tricks (codegen/int8.py), in numpy float32: the low byte of
    ``quantized_bits`` is ``nbtrt.quant.quantize`` (clip, round half to even); ``exact_float`` of an
    int32 below 2^22 is the integer, and so is a sum that started at MAGIC_BITS (``biased_float``);
    ``unpacked_float`` of a widened int8 is the int8."""
    from nbtrt.codegen.int8 import MAGIC, MAGIC_BITS, S8_BIAS
    inv = f32(1.0) / f32(scale)
    bits = (np.clip(f32(x) * inv, f32(-127), f32(127)) + f32(MAGIC)).astype(f32).view(np.int32)
    assert np.int8(bits & 0xFF) == quantize(np.array([x], f32), scale)[0]
    ties = np.arange(-127.5, 128, 1, dtype=f32)  # halves round to even, as rint
    tie_bits = (np.clip(ties, -127, 127) + f32(MAGIC)).astype(f32).view(np.int32)
    assert ((tie_bits & 0xFF).astype(np.uint8).view(np.int8) == np.clip(np.rint(ties), -127, 127)).all()
    widened = np.array([i + MAGIC_BITS], np.int64).astype(np.int32).view(f32) - f32(MAGIC)
    assert widened[0] == i
    biased = np.array([MAGIC_BITS], np.int32) + np.array([i], np.int32)  # the int32 sum started there
    assert biased.view(f32)[0] - f32(MAGIC) == i
    q = np.arange(-128, 128, dtype=np.int32)  # ptx.unpack_s8_f32: the byte q ^ 0x80 under 2^23's exponent
    assert ((((q & 0xFF) ^ 0x80) | 0x4B000000).view(f32) - f32(S8_BIAS) == q).all()


@pytest.mark.parametrize("x_dtype", ["int8", "float16"])
def test_dp4a_words_tap_major_on_channels_last(x_dtype):
    """32 channels a tap: K in (tap, channel) order, one tap per slice of 8 words (32 int8), X
    channels-last (its tile copied along K: four consecutive channels a word). int8-stored X is
    taken as it is, float X quantized on load; multipliers 1 and a float32 output: exact sums."""
    from nbtrt.codegen.kernel import TensorArg
    from nbtrt.runtime.layout import channels_last_strides
    rng = np.random.default_rng(7)
    attrs = dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1), strides=(2, 2))
    x_shape, w_shape = (1, 32, 5, 5), (8, 32, 3, 3)
    node = int8_node(conv_group(x_shape, w_shape, attrs, ((),), [(8,)]), 0.25)
    x = (rng.integers(-127, 128, x_shape).astype(np.int8) if x_dtype == "int8"
         else (rng.standard_normal(x_shape) * 10).astype(f16))
    w_q = rng.integers(-127, 128, w_shape).astype(np.int8)
    ins = [TensorArg("in0", x_dtype, x_shape, channels_last_strides(x_shape)),
           TensorArg("in1", "int8", w_shape, channels_last_strides(w_shape)),
           TensorArg.contiguous("in2", "float32", (8,))]
    tactic = dict(algorithm="implicit_gemm", bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1)
    got, _, spec = run_generated(node, [x, w_q, np.ones(8, f32)], tactic, in_args=ins)
    x_q = x if x_dtype == "int8" else quantize(x.astype(f32), 0.25)
    assert np.array_equal(got[0], conv_int64(x_q, w_q, attrs).astype(f32)), spec.source
    assert "tap = k0 // 32" in spec.source and "k0 += 32" in spec.source
    assert "c0_0 = dp4a(a0, b0, c0_0)" in spec.source
    assert "br0 = pack_s8(" in spec.source and "br0_1 =" not in spec.source  # one condition a word


def test_dp4a_words_with_elements_on_their_own():
    """K = 27 (not a multiple of 4) and a (channel, tap) K order: each element of a word has its own
    bounds and window conditions."""
    attrs = dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1))
    node = int8_node(conv_group((1, 3, 5, 5), (4, 3, 3, 3), attrs, ((),), [(4,)]), 0.5)
    rng = np.random.default_rng(8)
    x = rng.integers(-127, 128, (1, 3, 5, 5)).astype(np.int8)
    w_q = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    tactic = dict(algorithm="implicit_gemm", bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1)
    got, _, spec = run_generated(node, [x, w_q, np.ones(4, f32)], tactic)
    assert np.array_equal(got[0], conv_int64(x, w_q, attrs).astype(f32)), spec.source
    assert "br0 = pack_s8(br0_0, br0_1, br0_2, br0_3)" in spec.source and "bk0_3 < 27" in spec.source
