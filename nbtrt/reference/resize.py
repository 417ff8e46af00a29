"""Numpy kernel of Resize (opset 19 semantics; output sizes as in ``nbtrt/ops/resize.py``).

Resize is separable: each resized axis is processed in turn. For output index ``y`` of an axis with
input length ``n``, scale ``s`` and output length ``m``, the source coordinate ``x`` is
(``coordinate_transformation_mode``)::

    half_pixel            (y + 0.5) / s - 0.5
    half_pixel_symmetric  c * (1 - m / (s n)) + (y + 0.5) / s - 0.5,   c = n / 2
    pytorch_half_pixel    (y + 0.5) / s - 0.5, or -0.5 when s n == 1
    align_corners         y (n - 1) / (s n - 1), or 0 when s n == 1
    asymmetric            y / s
    tf_crop_and_resize    r0 (n - 1) + y (r1 - r0)(n - 1) / (s n - 1)   (roi [r0, r1]; outside [0, n-1]
                          the output is extrapolation_value)

``nearest`` picks ``round(x)`` by ``nearest_mode``. ``linear`` and ``cubic`` weigh the neighbours
``b + i`` of ``b = ceil(x) - 1`` by the kernel ``k((i - (x - b)) * a)``: the triangle ``1 - |t|``
(radius 1) or Keys' cubic with ``cubic_coeff_a`` (radius 2). ``a = min(s, 1)`` with ``antialias`` (a
widened kernel when downsampling), else 1. Neighbours outside ``[0, n-1]`` take the edge value, or with
``exclude_outside`` get weight 0. Weights are renormalized to sum 1 with antialias or exclude_outside.
``nearest`` ignores ``exclude_outside`` (as onnxruntime does) and clamps to the edge pixel.
Linear and cubic compute in float64 and round back (integers: round half to even, then saturate).
"""

from __future__ import annotations

import math

import numpy as np

from ..ops.resize import resize_axes, resize_target


def source_coords(node, y: np.ndarray, n: int, m: int, s: float, roi) -> np.ndarray:
    """The input coordinate of each output index ``y`` along one axis."""
    mode = node.attrs["coordinate_transformation_mode"]
    m_float = s * n
    if mode == "half_pixel":
        return (y + 0.5) / s - 0.5
    if mode == "half_pixel_symmetric":
        offset = n / 2 * (1 - m / m_float)
        return offset + (y + 0.5) / s - 0.5
    if mode == "pytorch_half_pixel":
        return np.full(m, -0.5) if m_float == 1 else (y + 0.5) / s - 0.5
    if mode == "align_corners":
        return np.zeros(m) if m_float == 1 else y * (n - 1) / (m_float - 1)
    if mode == "asymmetric":
        return y / s
    r0, r1 = roi
    if m_float == 1:
        return np.full(m, (r1 - r0) * (n - 1) / 2 + r0 * (n - 1))
    return y * (r1 - r0) * (n - 1) / (m_float - 1) + r0 * (n - 1)


def nearest_index(node, x: np.ndarray, n: int) -> np.ndarray:
    mode = node.attrs["nearest_mode"]
    if mode == "round_prefer_floor":
        index = np.ceil(x - 0.5)
    elif mode == "round_prefer_ceil":
        index = np.floor(x + 0.5)
    elif mode == "floor":
        index = np.floor(x)
    else:
        index = np.ceil(x)
    return np.clip(index, 0, n - 1).astype(np.int64)


def _kernel(node, t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    if node.attrs["mode"] == "linear":
        return np.clip(1 - t, 0, 1)
    a = node.attrs["cubic_coeff_a"]
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def interpolation_matrix(node, x: np.ndarray, n: int, s: float) -> np.ndarray:
    """The (output x input) weights of linear or cubic interpolation along one axis."""
    radius = 1 if node.attrs["mode"] == "linear" else 2
    antialias = bool(node.attrs["antialias"])
    a = min(s, 1.0) if antialias else 1.0
    start = math.floor(-radius / a) + 1
    offsets = np.arange(start, 2 - start)
    base = np.ceil(x) - 1
    ratio = x - base
    neighbours = base[:, None].astype(np.int64) + offsets[None, :]
    weights = _kernel(node, (offsets[None, :] - ratio[:, None]) * a)
    if node.attrs["exclude_outside"]:
        weights = np.where((neighbours < 0) | (neighbours >= n), 0.0, weights)
    if antialias or node.attrs["exclude_outside"]:
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    matrix = np.zeros((len(x), n))
    rows = np.broadcast_to(np.arange(len(x))[:, None], neighbours.shape)
    np.add.at(matrix, (rows, np.clip(neighbours, 0, n - 1)), weights)
    return matrix


def resize_axis(node, data: np.ndarray, axis: int, m: int, s: float, roi) -> np.ndarray:
    """Resize ``data`` along one axis to length ``m``."""
    n = data.shape[axis]
    x = source_coords(node, np.arange(m, dtype=np.float64), n, m, s, roi)
    if node.attrs["mode"] == "nearest":
        out = np.take(data, nearest_index(node, x, n), axis=axis)
    else:
        weights = interpolation_matrix(node, x, n, s)
        out = np.moveaxis(np.tensordot(weights, np.moveaxis(data, axis, 0), axes=1), 0, axis)
    if node.attrs["coordinate_transformation_mode"] == "tf_crop_and_resize":
        outside = ((x < 0) | (x > n - 1)).reshape((1,) * axis + (m,) + (1,) * (data.ndim - axis - 1))
        out = np.where(outside, _cast_back(np.asarray(node.attrs["extrapolation_value"]), out.dtype), out)
    return out


def _full_roi(node, roi, rank: int, axes: list[int]) -> list[tuple[float, float]]:
    """Per-dim (start, end) of the roi; (0, 1) for dims it does not list."""
    full = [(0.0, 1.0)] * rank
    if roi is None or np.asarray(roi).size == 0:
        return full
    roi = np.asarray(roi, dtype=np.float64).reshape(-1)
    k = len(axes) if len(roi) == 2 * len(axes) else rank
    listed = axes if k == len(axes) else list(range(rank))
    for i, a in enumerate(listed):
        full[a] = (float(roi[i]), float(roi[i + k]))
    return full


def _cast_back(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(result), info.min, info.max).astype(dtype)
    return result.astype(dtype)


def _values(array, kind):
    if array is None or np.asarray(array).size == 0:
        return None
    return [kind(v) for v in np.asarray(array).reshape(-1)]


def resize(node, x, roi=None, scales=None, sizes=None):
    out_dims, factors = resize_target(node, x.shape, _values(scales, float), _values(sizes, int))
    axes = resize_axes(node, x.ndim)
    rois = _full_roi(node, roi, x.ndim, axes)
    crop = node.attrs["coordinate_transformation_mode"] == "tf_crop_and_resize"
    result = x if node.attrs["mode"] == "nearest" else x.astype(np.float64)
    for axis in axes:
        trivial_roi = not crop or rois[axis] == (0.0, 1.0)
        if out_dims[axis] == x.shape[axis] and math.isclose(factors[axis], 1.0) and trivial_roi:
            continue
        result = resize_axis(node, result, axis, out_dims[axis], factors[axis], rois[axis])
    return _cast_back(result, x.dtype)
