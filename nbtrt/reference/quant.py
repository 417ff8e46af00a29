"""Numpy kernels of QuantizeLinear and DequantizeLinear (semantics in ``nbtrt/ops/quant.py``).

Quantize to an integer type: ``q = clip(rint(x / scale) + zero_point, lo, hi)`` with round-half-to-even.
To a float type (float8, float4_e2m1fn): ``x / scale`` rounded to the type as Cast does it (nearest even;
float8 saturating to +-max when ``saturate``, else inf/NaN), then a nonzero zero point is added and the
sum rounded again (the formula is ONNX's; zero points of float types are 0 in practice, and adding a
zero would turn -0 into +0). ``x / scale`` is computed in the ``precision`` dtype if given; else in
numpy's promotion of x and the scale for numpy types (float16 stays float16, as in ONNX), and in the
scale's type (ONNX's rule) when bfloat16 or float8_e8m0fnu take part (an e8m0 scale: x's type).
bfloat16 division is float32 division rounded once to bfloat16 (exact by the 2p+2 rule).

Dequantize: ``(float32(x) - zero_point) * scale`` (float64 for a float64 scale) cast to the output dtype.
Scale and zero point are expanded to x's shape by :func:`expand_param` (per-tensor, per-axis, blocked).
"""

from __future__ import annotations

import numpy as np

from ..dtypes import ML_TYPES, int_range, np_dtype
from ..ops.quant import INT_QUANT_TYPES, QUANT_TYPES, check_scale
from ..ops.schema import attr_error, norm_axis
from .elementwise import convert


def expand_param(node, param: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Scale or zero point reshaped/replicated so that it broadcasts against x."""
    block_size = node.attrs["block_size"]
    check_scale(node, x_shape, param.shape, block_size)
    if param.ndim == 0 or (param.size == 1 and not block_size):
        return param.reshape(())
    axis = norm_axis(node, node.attrs["axis"], len(x_shape))
    if not block_size:
        dims = [1] * len(x_shape)
        dims[axis] = param.size
        return param.reshape(dims)
    repeated = np.repeat(param, block_size, axis=axis)
    return np.take(repeated, np.arange(x_shape[axis]), axis=axis)


def _quantized_dtype(node, zero_point) -> str:
    wanted = node.attrs["output_dtype"]
    if zero_point is not None:
        if wanted is not None and wanted != zero_point.dtype.name:
            raise attr_error(node, f"output_dtype {wanted} contradicts the zero point's dtype "
                             f"{zero_point.dtype.name}")
        wanted = zero_point.dtype.name
    wanted = wanted or "uint8"
    if wanted not in QUANT_TYPES:
        raise attr_error(node, f"quantized type {wanted} is not supported ({', '.join(QUANT_TYPES)})")
    return wanted


def _divide(x: np.ndarray, scale: np.ndarray, precision: str | None) -> np.ndarray:
    """``x / scale`` in the precision described in the module docstring."""
    if precision is None:
        if x.dtype.name not in ML_TYPES and scale.dtype.name not in ML_TYPES:
            return x / scale
        precision = scale.dtype.name
        if precision == "float8_e8m0fnu":
            precision = x.dtype.name if x.dtype.kind == "f" or x.dtype.name in ML_TYPES else "float32"
    xp, sp = convert(x, precision), convert(scale, precision)
    if precision in ML_TYPES:
        return convert(xp.astype(np.float32) / sp.astype(np.float32), precision)
    return xp / sp


def quantize_linear(node, x, y_scale, y_zero_point=None):
    name = _quantized_dtype(node, y_zero_point)
    scaled = _divide(x, expand_param(node, y_scale, x.shape), node.attrs["precision"])
    zp = None if y_zero_point is None else expand_param(node, y_zero_point, x.shape)
    if name in INT_QUANT_TYPES:
        q = np.rint(scaled.astype(np.float64))
        if zp is not None:
            q = q + zp.astype(np.float64)
        lo, hi = int_range(name)
        return np.clip(q, lo, hi).astype(np_dtype(name))
    saturate = bool(node.attrs["saturate"])
    q = convert(scaled, name, saturate)
    if zp is not None and np.any(zp.astype(np.float32) != 0):
        z = zp.astype(np.float32)
        q = np.where(z == 0, q, convert(q.astype(np.float32) + z, name, saturate))
    return q


def dequantize_linear(node, x, x_scale, x_zero_point=None):
    work = np.float64 if x_scale.dtype == np.float64 else np.float32
    dx = x.astype(work)
    if x_zero_point is not None:
        dx = dx - expand_param(node, x_zero_point, x.shape).astype(work)
    y = dx * expand_param(node, x_scale, x.shape).astype(work)
    return convert(y, node.attrs["output_dtype"] or x_scale.dtype.name)


KERNELS = {"QuantizeLinear": quantize_linear, "DequantizeLinear": dequantize_linear}
