"""The ml_dtypes element types (bfloat16, float8, float4, int4/uint4, int2/uint2, float8_e8m0fnu):
the dtype table (nbtrt/dtypes.py), the ONNX frontend's use of it, Cast's rounding and saturation rules
(nbtrt/reference/elementwise.py) and QuantizeLinear / DequantizeLinear on these types
(nbtrt/ops/quant.py, nbtrt/reference/quant.py). Expected values are worked out by hand in the comments.
"""

import math

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nbtrt import dtypes
from nbtrt.errors import AttributeValueError, UnsupportedOpError
from nbtrt.frontends.onnx import dtype_name, to_array
from nbtrt.ir import Graph, TensorType
from nbtrt.ops import fill_attributes, infer_node
from nbtrt.reference import run
from nbtrt.reference.elementwise import KERNELS as ELEMENTWISE
from nbtrt.reference.elementwise import convert
from nbtrt.reference.quant import KERNELS as QUANT

NAN, INF = math.nan, math.inf
f32 = np.float32


def arr(values, name):
    """An array of the dtype named ``name``, from exactly representable values."""
    return np.array(values, np.float64).astype(dtypes.np_dtype(name))


def floats(a) -> list:
    return a.astype(np.float64).tolist()


def same(got, want):
    """Equal values, NaN where NaN, and the same sign of zero."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True), (got, want)
    assert np.array_equal(np.signbit(got[got == 0]), np.signbit(want[want == 0])), (got, want)


# -- the table -------------------------------------------------------------------------------------

@pytest.mark.parametrize("enum, name", [
    (TensorProto.BFLOAT16, "bfloat16"), (TensorProto.FLOAT8E4M3FN, "float8_e4m3fn"),
    (TensorProto.FLOAT8E4M3FNUZ, "float8_e4m3fnuz"), (TensorProto.FLOAT8E5M2, "float8_e5m2"),
    (TensorProto.FLOAT8E5M2FNUZ, "float8_e5m2fnuz"), (TensorProto.FLOAT8E8M0, "float8_e8m0fnu"),
    (TensorProto.FLOAT4E2M1, "float4_e2m1fn"), (TensorProto.INT4, "int4"), (TensorProto.UINT4, "uint4"),
    (TensorProto.INT2, "int2"), (TensorProto.UINT2, "uint2"), (TensorProto.FLOAT, "float32"),
    (TensorProto.BOOL, "bool"), (TensorProto.UINT64, "uint64"),
])
def test_table_matches_onnx(enum, name):
    assert dtypes.ONNX_DTYPES[enum] == name == dtype_name(enum, "v")
    assert dtypes.ONNX_ENUMS[name] == enum
    assert dtypes.np_dtype(name) == np.dtype(helper.tensor_dtype_to_np_dtype(enum))
    assert dtypes.np_dtype(name).name == name


def test_np_dtype_and_ranges():
    assert dtypes.np_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16)
    assert dtypes.np_dtype(np.float16) == np.dtype("float16")
    assert dtypes.is_float("float8_e5m2") and dtypes.is_float("float16") and not dtypes.is_float("int4")
    assert dtypes.is_int("uint2") and dtypes.is_int("int64") and not dtypes.is_int("bool")
    assert [dtypes.int_range(n) for n in ("int4", "uint4", "int2", "uint2", "int8")] == \
        [(-8, 7), (0, 15), (-2, 1), (0, 3), (-128, 127)]
    assert [dtypes.float_max(n) for n in dtypes.FLOAT8_TYPES + ("float4_e2m1fn",)] == \
        [448.0, 240.0, 57344.0, 57344.0, 6.0]


@pytest.mark.parametrize("enum", [TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.COMPLEX128,
                                  TensorProto.UNDEFINED, 999])
def test_unsupported_types_still_refused(enum):
    with pytest.raises(UnsupportedOpError, match="'v'"):
        dtype_name(enum, "v")


def test_to_array_unpacks_subbyte_and_float8():
    t = helper.make_tensor("t", TensorProto.INT4, [3], [-8, 7, -1])
    got = to_array(t, "t")
    assert got.dtype.name == "int4" and got.astype(np.int8).tolist() == [-8, 7, -1]
    t = helper.make_tensor("t", TensorProto.FLOAT8E4M3FN, [2], [448.0, -0.5])
    got = to_array(t, "t")
    assert got.dtype.name == "float8_e4m3fn" and floats(got) == [448.0, -0.5]


# -- Cast ------------------------------------------------------------------------------------------

SPECIAL = [1e6, -1e6, INF, -INF, NAN, 0.0, -0.0]


@pytest.mark.parametrize("to, saturated, unsaturated", [
    # +-max for out of range and +-inf when saturating; else NaN (e4m3fn, both FNUZ) or +-inf (e5m2).
    # FNUZ types have no -0: -0 becomes +0.
    ("float8_e4m3fn", [448, -448, 448, -448, NAN, 0, -0.0], [NAN, NAN, NAN, NAN, NAN, 0, -0.0]),
    ("float8_e4m3fnuz", [240, -240, 240, -240, NAN, 0, 0], [NAN, NAN, NAN, NAN, NAN, 0, 0]),
    ("float8_e5m2", [57344, -57344, 57344, -57344, NAN, 0, -0.0], [INF, -INF, INF, -INF, NAN, 0, -0.0]),
    ("float8_e5m2fnuz", [57344, -57344, 57344, -57344, NAN, 0, 0], [NAN, NAN, NAN, NAN, NAN, 0, 0]),
])
def test_cast_float8_saturation_table(to, saturated, unsaturated):
    for src in (np.float32, np.float16, np.float64):  # 1e6 is inf in float16: same results
        with np.errstate(over="ignore"):
            x = np.array(SPECIAL, src)
        got = convert(x, to, saturate=True)
        assert got.dtype.name == to
        same(got, saturated)
        same(convert(x, to, saturate=False), unsaturated)


def test_cast_float8_overflow_threshold():
    # e4m3fn: 448 = 1.75 * 2**8 is the max; 480 would be the next value. 464 is the tie -> even 448,
    # just above it rounds to 480, which overflows: NaN unless saturating.
    x = np.array([464, 465, 449, -465], np.float32)
    same(convert(x, "float8_e4m3fn", saturate=False), [448, NAN, 448, NAN])
    same(convert(x, "float8_e4m3fn", saturate=True), [448, 448, 448, -448])
    # e5m2: max 57344 = 1.75 * 2**15, next 65536; the tie 61440 goes to the even 65536 -> inf.
    x = np.array([61439, 61440, 1e5], np.float32)
    same(convert(x, "float8_e5m2", saturate=False), [57344, INF, INF])
    same(convert(x, "float8_e5m2", saturate=True), [57344, 57344, 57344])


def test_cast_float8_round_to_nearest_even():
    # e4m3fn near 1: step 1/8. 1.0625 ties to 1 (even), 1.1875 ties to 1.25 (even), 1.07 -> 1.125.
    # Subnormals: step 2**-9; 2**-10 ties to 0, 3 * 2**-10 ties to 2**-8; 1e-7 -> 0.
    # 0.47892547 in [0.25, 0.5) has step 2**-5: 15.33 steps -> 0.46875.
    x = np.array([1.0625, 1.1875, 1.07, 2.0**-10, 3 * 2.0**-10, 1e-7, -1e-7, 0.47892547], np.float32)
    same(convert(x, "float8_e4m3fn"), [1, 1.25, 1.125, 0, 2.0**-8, 0, -0.0, 0.46875])
    # e5m2 near 1: step 1/4; 1.125 ties to 1, 1.375 ties to 1.5.
    same(convert(np.array([1.125, 1.375, 1.2], np.float32), "float8_e5m2"), [1, 1.5, 1.25])


def test_cast_float64_rounds_once():
    # 1 + 2**-4 + 2**-40 is just above the tie between 1 and 1.125: 1.125. Through float32 (RNE) it
    # would become the exact tie 1.0625 and then 1.
    x = np.array([1 + 2.0**-4 + 2.0**-40, -(1 + 2.0**-4 + 2.0**-40), 1 + 2.0**-4])
    same(convert(x, "float8_e4m3fn"), [1.125, -1.125, 1])
    same(convert(np.array([1 + 2.0**-8 + 2.0**-40]), "bfloat16"), [1 + 2.0**-7])
    # int32 / int64 sources: 2**24 + 1 is not a float32; bfloat16 step there is 2**17.
    same(convert(np.array([2**24 + 1, 2**24 + 2**16 + 1], np.int64), "bfloat16"), [2.0**24, 2.0**24 + 2**17])


def test_cast_bfloat16():
    # step 2**-7 near 1: 1 + 2**-8 ties to 1, 1 + 3 * 2**-8 ties to 1 + 2**-6. No saturation: float32's
    # max is above bfloat16's max + half a step -> inf; the saturate flag does not apply.
    x = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, np.finfo(np.float32).max, NAN, -INF], np.float32)
    same(convert(x, "bfloat16", saturate=True), [1, 1 + 2.0**-6, INF, NAN, -INF])
    back = convert(arr([0.5, -3.0, INF], "bfloat16"), "float32")
    assert back.dtype == np.float32 and floats(back) == [0.5, -3.0, INF]


def test_cast_float4_e2m1():
    # Values 0, 0.5, 1, 1.5, 2, 3, 4, 6. Ties to even mantissa: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1,
    # 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4. Out of range and inf saturate to +-6 (no inf/NaN in the
    # type). NaN becomes -0, as with onnx's reference (ml_dtypes).
    x = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7, 100, INF, -INF, -0.0, -2.9, NAN], np.float32)
    same(convert(x, "float4_e2m1fn", saturate=False), [0, 1, 1, 2, 2, 4, 4, 6, 6, 6, -6, -0.0, -3, -0.0])


def test_cast_subbyte_ints():
    # Integers wrap (discard the higher bits, two's complement); floats truncate toward zero.
    got = convert(np.array([7, 8, -9, 17, -1], np.int32), "int4")
    assert got.dtype.name == "int4" and got.astype(np.int8).tolist() == [7, -8, 7, 1, -1]
    assert convert(np.array([4, 5, -1, 3], np.int64), "uint2").astype(np.int8).tolist() == [0, 1, 3, 3]
    assert convert(np.array([2.9, -2.9, 1.5], np.float32), "int4").astype(np.int8).tolist() == [2, -2, 1]
    assert convert(np.array([-3, -1, 1], np.int8), "int2").astype(np.int8).tolist() == [1, -1, 1]
    # Between ml_dtypes types that do not convert directly (int4 -> uint2 goes through int8).
    got = convert(arr([-3, 7, -8], "int4"), "uint2")
    assert got.dtype.name == "uint2" and got.astype(np.int8).tolist() == [1, 3, 0]
    got = convert(arr([-3, 7], "int4"), "float32")
    assert got.dtype == np.float32 and got.tolist() == [-3, 7]
    # float8 -> int4 truncates the float value; bool -> float8.
    assert convert(arr([3.5, -2.5], "float8_e4m3fn"), "int4").astype(np.int8).tolist() == [3, -2]
    same(convert(np.array([True, False]), "float8_e5m2"), [1, 0])


def test_cast_between_ml_floats():
    # bfloat16 -> e4m3fn: through float32 (exact), then one rounding with saturation.
    same(convert(arr([1000.0, 1.0625, -INF], "bfloat16"), "float8_e4m3fn"), [448, 1, -448])
    same(convert(arr([1000.0], "bfloat16"), "float8_e4m3fn", saturate=False), [NAN])
    same(convert(arr([57344, -0.0], "float8_e5m2"), "float8_e4m3fnuz"), [240, 0])
    same(convert(arr([6, -0.5], "float4_e2m1fn"), "bfloat16"), [6, -0.5])


@pytest.mark.parametrize("x, mode, saturate, want", [
    # rounding of the exponent: up (any mantissa bit), down, nearest (ties up as in onnx's reference)
    ([0.124, 0.25, 1.1, 3.0, 8.0], "up", True, [0.125, 0.25, 2, 4, 8]),
    ([0.124, 0.25, 1.1, 3.0, 8.0], "down", True, [0.0625, 0.25, 1, 2, 8]),
    ([1.4, 1.5, 1.6, 0.74, 0.76], "nearest", True, [1, 2, 2, 0.5, 1]),
    # 0, below the minimum 2**-127, above the maximum 2**127, inf: the extreme when saturating, else NaN
    ([0.0, 1e-45, 1e39, INF, NAN], "up", True, [2.0**-127, 2.0**-127, 2.0**127, 2.0**127, NAN]),
    ([0.0, 1e-45, 1e39, INF, NAN], "nearest", False, [NAN, NAN, NAN, NAN, NAN]),
])
def test_cast_e8m0(x, mode, saturate, want):
    got = convert(np.array(x, np.float64), "float8_e8m0fnu", saturate=saturate, round_mode=mode)
    assert got.dtype.name == "float8_e8m0fnu"
    same(got, want)
    same(convert(got, "float32"), want)


def test_cast_kernel_reads_saturate():
    node = _node("Cast", [TensorType("float32", (2,))], {"to": "float8_e5m2", "saturate": 0})
    same(ELEMENTWISE["Cast"](node, np.array([1e6, 2.0], np.float32)), [INF, 2])
    node = _node("Cast", [TensorType("float32", (2,))], {"to": "float8_e5m2"})
    same(ELEMENTWISE["Cast"](node, np.array([1e6, 2.0], np.float32)), [57344, 2])


# -- QuantizeLinear / DequantizeLinear ---------------------------------------------------------------

def _node(op, inputs, attrs):
    g = Graph()
    values = [None if x is None else g.add_input(f"x{i}", x) if isinstance(x, TensorType)
              else g.add_constant(f"c{i}", np.asarray(x)) for i, x in enumerate(inputs)]
    node = g.add_node(op, values, attrs=attrs, name="n1")
    fill_attributes(node)
    infer_node(node)
    return node


def quant(op, *args, **attrs):
    """Run the kernel of ``op`` on ``args`` (after shape inference) and check the inferred dtype."""
    node = _node(op, [None if a is None else TensorType(a.dtype.name, a.shape) for a in args], attrs)
    out = QUANT[op](node, *args)
    assert out.dtype.name == node.outputs[0].type.dtype
    return out


def ints(a) -> list:
    return a.astype(np.int64).tolist()


def test_quantize_int4_per_axis():
    # row / scale, rounded half to even, + 1, clipped to [-8, 7]:
    # /2: 0, 1.25, 2.4, 4.3 -> 0 1 2 4 -> 1 2 3 5;  /3: -10, -6.67, 2, 3 -> -9 -6 3 4 -> -8 -6 3 4;
    # /4: 3, 3.75, 4, 10 -> 4 5 5 11 -> 4 5 5 7
    x = np.array([[0, 2.5, 4.8, 8.6], [-30, -20, 6, 9], [12, 15, 16, 40]], np.float32)
    q = quant("QuantizeLinear", x, np.array([2, 3, 4], np.float32), arr([1, 1, 1], "int4"), axis=0)
    assert q.dtype.name == "int4" and ints(q) == [[1, 2, 3, 5], [-8, -6, 3, 4], [4, 5, 5, 7]]


@pytest.mark.parametrize("name, want", [
    # x = -5, -1.5, -0.5, 0.5, 1.5, 2.5, 20 rounded half to even: -5 -2 -0 0 2 2 20, then clipped
    ("int4", [-5, -2, 0, 0, 2, 2, 7]),
    ("uint4", [0, 0, 0, 0, 2, 2, 15]),
    ("int2", [-2, -2, 0, 0, 1, 1, 1]),
    ("uint2", [0, 0, 0, 0, 2, 2, 3]),
])
def test_quantize_subbyte_saturation(name, want):
    x = np.array([-5, -1.5, -0.5, 0.5, 1.5, 2.5, 20], np.float32)
    q = quant("QuantizeLinear", x, f32(1), None, output_dtype=name)
    assert q.dtype.name == name and ints(q) == want


def test_quantize_float8():
    # x / 2 = 0, 0.5, 1, 50000, 96: 50000 saturates to 448 (e4m3fn) or rounds to 49152 (e5m2, step
    # 8192 above 32768); unsaturated, 1e6 / 2 is NaN in e4m3fn and inf in e5m2.
    x = np.array([0, 1, 2, 100000, 200], np.float32)
    q = quant("QuantizeLinear", x, f32(2), arr([0], "float8_e4m3fn"))  # a [1] zero point, scalar scale
    assert q.dtype.name == "float8_e4m3fn"
    same(q, [0, 0.5, 1, 448, 96])
    same(quant("QuantizeLinear", x, f32(2), arr(0, "float8_e5m2")), [0, 0.5, 1, 49152, 96])
    y = np.array([1e6, -1e6, 3], np.float32)
    same(quant("QuantizeLinear", y, f32(2), None, output_dtype="float8_e4m3fn", saturate=0), [NAN, NAN, 1.5])
    same(quant("QuantizeLinear", y, f32(2), None, output_dtype="float8_e5m2", saturate=0), [INF, -INF, 1.5])
    same(quant("QuantizeLinear", y, f32(2), None, output_dtype="float8_e4m3fnuz"), [240, -240, 1.5])
    # -0 stays -0 with a zero zero point; a nonzero one is added after rounding: 1.0625 -> 1, + 0.5.
    same(quant("QuantizeLinear", np.array([-0.0, 1.0625], np.float32), f32(1), arr(0, "float8_e4m3fn")),
         [-0.0, 1])
    same(quant("QuantizeLinear", np.array([1.0625], np.float32), f32(1), arr(0.5, "float8_e4m3fn")), [1.5])


def test_quantize_float4():
    # /2: 0, 1.25, 2.4, 4.3 -> 0 1 2 4;  /3: -10, -6.67, 2, 3 -> -6 -6 2 3;  /4: -0, -0.625, -1.2, -2.15
    # -> -0 -0.5 -1 -2
    x = np.array([[0, 2.5, 4.8, 8.6], [-30, -20, 6, 9], [-0.0, -2.5, -4.8, -8.6]], np.float32)
    q = quant("QuantizeLinear", x, np.array([2, 3, 4], np.float32), arr([0, 0, 0], "float4_e2m1fn"), axis=0)
    assert q.dtype.name == "float4_e2m1fn"
    same(q, [[0, 1, 2, 4], [-6, -6, 2, 3], [-0.0, -0.5, -1, -2]])


def test_quantize_precision_and_bfloat16():
    x = np.array([257.0, 301.0], np.float32)
    assert ints(quant("QuantizeLinear", x, f32(1), None, output_dtype="uint16")) == [257, 301]
    # in bfloat16 (step 2 in [256, 512)): 257 ties to 256, 301 ties to 300 (even mantissas)
    assert ints(quant("QuantizeLinear", x, f32(1), None, output_dtype="uint16", precision="bfloat16")) == [256, 300]
    # a bfloat16 scale sets the precision too (ONNX: the scale's type)
    assert ints(quant("QuantizeLinear", x, arr(1, "bfloat16"), None, output_dtype="uint16")) == [256, 300]
    # bfloat16 x with a float32 scale: float32 division; 3 / 0.5 = 6, -2.5 / 0.5 = -5
    assert ints(quant("QuantizeLinear", arr([3, -2.5], "bfloat16"), f32(0.5), np.int8(0))) == [6, -5]
    # an e8m0 scale (2) divides in x's type: 8 / 2 = 4, 3 / 2 = 1.5 -> 2
    assert ints(quant("QuantizeLinear", np.array([8, 3], np.float32), arr(2, "float8_e8m0fnu"), np.int8(0))) == [4, 2]


def test_dequantize():
    # (x - zp) * scale: int4 (-8 - 1) * 0.5 = -4.5, (7 - 1) * 0.5 = 3; float8 448 * 2, -0.5 * 2
    y = quant("DequantizeLinear", arr([-8, 7, 1], "int4"), f32(0.5), arr(1, "int4"))
    assert y.dtype == np.float32 and y.tolist() == [-4.5, 3, 0]
    y = quant("DequantizeLinear", arr([3, 0], "uint2"), np.float16(0.25), arr(1, "uint2"))
    assert y.dtype == np.float16 and y.tolist() == [0.5, -0.25]
    y = quant("DequantizeLinear", arr([448, -0.5], "float8_e4m3fn"), f32(2), arr(0, "float8_e4m3fn"))
    assert y.tolist() == [896, -1]
    same(quant("DequantizeLinear", arr([6, -0.5], "float4_e2m1fn"), f32(3)), [18, -1.5])
    # 3 * 0.1f = 0.3000000119 -> bfloat16 (step 2**-9 in [0.25, 0.5)): 153.6 steps -> 154 * 2**-9
    y = quant("DequantizeLinear", np.int8([3]), f32(0.1), output_dtype="bfloat16")
    assert y.dtype.name == "bfloat16" and floats(y) == [154 * 2.0**-9]
    y = quant("DequantizeLinear", np.int8([3]), arr([0.25], "float8_e8m0fnu"), output_dtype="float32")
    assert y.tolist() == [0.75]


def test_quant_type_errors():
    with pytest.raises(AttributeValueError, match="output_dtype float8_e8m0fnu is not a float type"):
        quant("DequantizeLinear", np.int8([3]), arr([0.25], "float8_e8m0fnu"))
    with pytest.raises(AttributeValueError, match="quantized type bfloat16 is not supported"):
        quant("QuantizeLinear", np.float32([1]), f32(1), None, output_dtype="bfloat16")
    with pytest.raises(AttributeValueError, match="contradicts"):
        quant("QuantizeLinear", np.float32([1]), f32(1), arr(0, "int4"), output_dtype="uint4")


# -- end to end through the ONNX frontend -----------------------------------------------------------

def test_model_with_float8_input_and_int4_initializer():
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("QuantizeLinear", ["xf", "s", "zp"], ["q"], axis=0),
             helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT8E4M3FNUZ, saturate=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT8E4M3FN, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FNUZ, [3])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.5]),
         helper.make_tensor("zp", TensorProto.INT4, [], [-1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    # 448 / 0.5 - 1 = 895 -> 7; -0.5 / 0.5 - 1 = -2; 2.5 / 0.5 - 1 = 4
    (y,) = run(model, {"x": arr([448, -0.5, 2.5], "float8_e4m3fn")}).values()
    assert y.dtype.name == "float8_e4m3fnuz" and floats(y) == [7, -2, 4]
