"""Schemas of QuantizeLinear and DequantizeLinear (opset 21+ semantics).

- ``QuantizeLinear(x, y_scale, y_zero_point?){axis=1, saturate=1, block_size=0, output_dtype,
  precision}``: ``y = saturate(round_half_even(x / y_scale) + y_zero_point)``. The output dtype is the
  zero point's dtype, else ``output_dtype`` (a numpy dtype name), else uint8. ``precision`` (a dtype
  name, default the scale's dtype) is the type in which ``x / y_scale`` is computed.
- ``DequantizeLinear(x, x_scale, x_zero_point?){axis=1, block_size=0, output_dtype}``:
  ``y = (x - x_zero_point) * x_scale``, of ``output_dtype`` or else the scale's dtype.

Granularity follows the scale's shape: a scalar (or one element) is per-tensor; a 1-D scale of
``x.shape[axis]`` elements is per-axis; with ``block_size > 0`` the scale has x's rank, equal dims except
``ceil(x.shape[axis] / block_size)`` along ``axis`` (blocked quantization). The zero point, when given,
has the scale's shape (or both have one element: per-tensor).

Quantized types: int8, uint8, int16, uint16, int4, uint4, int2, uint2 (saturating to their range),
float8 e4m3fn/e4m3fnuz/e5m2/e5m2fnuz (``saturate`` as for Cast), float4_e2m1fn (always saturating); the
ml_dtypes ones as ml_dtypes arrays. DequantizeLinear also takes int32. Scales are float16/32/64,
bfloat16 or float8_e8m0fnu; x of QuantizeLinear and the dequantized output may also be bfloat16.
"""

from __future__ import annotations

from ..dtypes import NAMES
from ..ir import Node, TensorType
from .schema import FLOAT_TYPES, OpSchema, attr_error, has_input, in_type, norm_axis, same_dim, shape_error

INT_QUANT_TYPES = tuple(t for t in ("int8", "uint8", "int16", "uint16", "int4", "uint4", "int2", "uint2")
                        if t in NAMES)
FLOAT_QUANT_TYPES = tuple(t for t in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                                      "float4_e2m1fn") if t in NAMES)
QUANT_TYPES = INT_QUANT_TYPES + FLOAT_QUANT_TYPES
DEQUANT_TYPES = QUANT_TYPES + ("int32",)
# Full-precision types: QuantizeLinear's x (and int32) and DequantizeLinear's output; scales.
HIGH_TYPES = FLOAT_TYPES + tuple(t for t in ("bfloat16",) if t in NAMES)
SCALE_TYPES = HIGH_TYPES + tuple(t for t in ("float8_e8m0fnu",) if t in NAMES)


def _one_element(shape) -> bool:
    return shape is not None and all(d == 1 for d in shape)


def check_scale(node: Node, x_shape, scale_shape, block_size: int) -> None:
    """Check that the scale's shape matches x for per-tensor, per-axis or blocked quantization."""
    if x_shape is None or scale_shape is None:
        return
    if block_size < 0:
        raise attr_error(node, f"block_size {block_size} is negative")
    if len(scale_shape) == 0 or (len(scale_shape) == 1 and scale_shape[0] == 1 and not block_size):
        return
    axis = norm_axis(node, node.attrs["axis"], len(x_shape))
    if not block_size:
        if len(scale_shape) != 1 or not same_dim(scale_shape[0], x_shape[axis]):
            raise shape_error(node, f"a per-axis scale must be 1-D of size x.shape[{axis}]={x_shape[axis]}, "
                              f"got shape {list(scale_shape)}")
        return
    want = list(x_shape)
    if isinstance(x_shape[axis], int):
        want[axis] = -(-x_shape[axis] // block_size)
    if len(scale_shape) != len(x_shape) or not all(same_dim(a, b) for a, b in zip(want, scale_shape)):
        raise shape_error(node, f"a blocked scale (block_size={block_size}) must have shape {want}, "
                          f"got {list(scale_shape)}")


def _check_zero_point(node: Node) -> None:
    if not has_input(node, 2):
        return
    scale, zp = in_type(node, 1).shape, in_type(node, 2).shape
    if _one_element(scale) and _one_element(zp) and not node.attrs["block_size"]:
        return  # both per-tensor, e.g. a scalar scale with a [1] zero point
    if scale is not None and zp is not None and (
            len(scale) != len(zp) or not all(same_dim(a, b) for a, b in zip(scale, zp))):
        raise shape_error(node, f"zero point shape {list(zp)} differs from scale shape {list(scale)}")


def quantized_dtype(node: Node) -> str:
    """QuantizeLinear's output dtype: zero point's, else output_dtype, else uint8."""
    wanted = node.attrs["output_dtype"]
    if has_input(node, 2):
        zp = in_type(node, 2).dtype
        if wanted is not None and wanted != zp:
            raise attr_error(node, f"output_dtype {wanted} contradicts the zero point's dtype {zp}")
        wanted = zp
    wanted = wanted or "uint8"
    if wanted not in QUANT_TYPES:
        raise attr_error(node, f"quantized type {wanted} is not supported ({', '.join(QUANT_TYPES)})")
    return wanted


def _infer_quantize(node: Node) -> list[TensorType]:
    x, scale = in_type(node, 0), in_type(node, 1)
    if scale.dtype not in SCALE_TYPES:
        raise shape_error(node, f"y_scale must be a float tensor ({', '.join(SCALE_TYPES)}), not {scale.dtype}")
    precision = node.attrs["precision"]
    if precision is not None and precision not in HIGH_TYPES:
        raise attr_error(node, f"precision {precision} is not a float type ({', '.join(HIGH_TYPES)})")
    check_scale(node, x.shape, scale.shape, node.attrs["block_size"])
    _check_zero_point(node)
    return [TensorType(quantized_dtype(node), x.shape)]


def _infer_dequantize(node: Node) -> list[TensorType]:
    x, scale = in_type(node, 0), in_type(node, 1)
    if has_input(node, 2) and in_type(node, 2).dtype != x.dtype:
        raise shape_error(node, f"x is {x.dtype} but the zero point is {in_type(node, 2).dtype}")
    if scale.dtype not in SCALE_TYPES:
        raise shape_error(node, f"x_scale must be a float tensor ({', '.join(SCALE_TYPES)}), not {scale.dtype}")
    check_scale(node, x.shape, scale.shape, node.attrs["block_size"])
    _check_zero_point(node)
    out = node.attrs["output_dtype"] or scale.dtype
    if out not in HIGH_TYPES:
        raise attr_error(node, f"output_dtype {out} is not a float type ({', '.join(HIGH_TYPES)})"
                         + ("; give output_dtype with a float8_e8m0fnu scale" if out == scale.dtype else ""))
    return [TensorType(out, x.shape)]


SCHEMAS = {
    "QuantizeLinear": OpSchema(
        "QuantizeLinear", _infer_quantize, inputs=(2, 3), dtypes=HIGH_TYPES + ("int32",),
        attrs={"axis": 1, "saturate": 1, "block_size": 0, "output_dtype": None, "precision": None}),
    "DequantizeLinear": OpSchema(
        "DequantizeLinear", _infer_dequantize, inputs=(2, 3), dtypes=DEQUANT_TYPES,
        attrs={"axis": 1, "block_size": 0, "output_dtype": None}),
}
