"""Numpy kernels of QuantizeLinear and DequantizeLinear (semantics in ``nbtrt/ops/quant.py``).

Quantize: ``q = clip(rint(x / scale) + zero_point, lo, hi)`` with round-half-to-even, ``x / scale``
computed in the ``precision`` dtype if given, else in numpy's promotion of x and the scale (float16
stays float16, as in ONNX). Dequantize: ``(float32(x) - zero_point) * scale`` cast to the output dtype.
Scale and zero point are expanded to x's shape by :func:`expand_param` (per-tensor, per-axis, blocked).
"""

from __future__ import annotations

import numpy as np

from ..ops.quant import QUANT_TYPES, check_scale
from ..ops.schema import attr_error, norm_axis


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


def _quantized_dtype(node, zero_point) -> np.dtype:
    wanted = node.attrs["output_dtype"]
    if zero_point is not None:
        if wanted is not None and wanted != zero_point.dtype.name:
            raise attr_error(node, f"output_dtype {wanted} contradicts the zero point's dtype "
                             f"{zero_point.dtype.name}")
        wanted = zero_point.dtype.name
    wanted = wanted or "uint8"
    if wanted not in QUANT_TYPES:
        raise attr_error(node, f"quantized type {wanted} is not supported ({', '.join(QUANT_TYPES)})")
    return np.dtype(wanted)


def quantize_linear(node, x, y_scale, y_zero_point=None):
    dtype = _quantized_dtype(node, y_zero_point)
    scale = expand_param(node, y_scale, x.shape)
    precision = node.attrs["precision"]
    if precision:
        scaled = x.astype(precision) / scale.astype(precision)
    else:
        scaled = x / scale
    q = np.rint(scaled).astype(np.float64)
    if y_zero_point is not None:
        q = q + expand_param(node, y_zero_point, x.shape).astype(np.float64)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_linear(node, x, x_scale, x_zero_point=None):
    work = np.float64 if x_scale.dtype == np.float64 else np.float32
    dx = x.astype(work)
    if x_zero_point is not None:
        dx = dx - expand_param(node, x_zero_point, x.shape).astype(work)
    y = dx * expand_param(node, x_scale, x.shape)
    return y.astype(node.attrs["output_dtype"] or x_scale.dtype)


KERNELS = {"QuantizeLinear": quantize_linear, "DequantizeLinear": dequantize_linear}
