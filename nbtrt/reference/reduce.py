"""Numpy kernels of ReduceSum, ReduceMean and ReduceMax (semantics in ``nbtrt/ops/reduce.py``).

Float sums and means accumulate in float64 and round once to the input dtype; integer sums wrap in the
input dtype as ONNX does, and an integer mean truncates toward zero. Over an empty set Sum gives 0,
Mean NaN and Max the lowest value of the dtype.
"""

from __future__ import annotations

import numpy as np

from ..ops.reduce import reduce_axes


def _axes(node, data, axes) -> tuple[int, ...] | None:
    listed = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    found = reduce_axes(node, data.ndim, listed)
    return None if found is None else tuple(found)


def _out_shape(data, axes, keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if k in axes else d for k, d in enumerate(data.shape))
    return tuple(d for k, d in enumerate(data.shape) if k not in axes)


def _accumulator(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype.kind == "f" else dtype


def reduce_sum(node, data, axes=None):
    axes = _axes(node, data, axes)
    if axes is None:
        return data.copy()
    keep = bool(node.attrs["keepdims"])
    total = np.sum(data, axis=axes, keepdims=keep, dtype=_accumulator(data.dtype))
    return np.asarray(total).astype(data.dtype)


def reduce_mean(node, data, axes=None):
    axes = _axes(node, data, axes)
    if axes is None:
        return data.copy()
    keep = bool(node.attrs["keepdims"])
    count = int(np.prod([data.shape[a] for a in axes], dtype=np.int64))
    total = np.sum(data, axis=axes, keepdims=keep, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(total / count)
    return mean.astype(data.dtype)


def _lowest(dtype: np.dtype):
    if dtype == np.bool_:
        return False
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return -np.inf


def reduce_max(node, data, axes=None):
    axes = _axes(node, data, axes)
    if axes is None:
        return data.copy()
    keep = bool(node.attrs["keepdims"])
    if any(data.shape[a] == 0 for a in axes):
        return np.full(_out_shape(data, axes, keep), _lowest(data.dtype), dtype=data.dtype)
    return np.asarray(np.max(data, axis=axes, keepdims=keep))


KERNELS = {"ReduceSum": reduce_sum, "ReduceMean": reduce_mean, "ReduceMax": reduce_max}
