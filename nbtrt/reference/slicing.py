"""Numpy kernels of Concat, Split, Slice and Pad (semantics in ``nbtrt/ops/slicing.py``).

Slice clamps its bounds exactly as ONNX specifies (``slice_bounds``); a clamped end of -1 with a
negative step means "through the first element", which a Python slice spells as ``None``. Pad crops
for negative pads first, then pads with numpy's modes of the same names (constant, reflect, edge, wrap).
"""

from __future__ import annotations

import numpy as np

from ..ops.reshape import norm_axes
from ..ops.slicing import pad_widths, slice_bounds, slice_params, split_sizes


def _ints(array) -> list[int] | None:
    return None if array is None else [int(v) for v in np.asarray(array).reshape(-1)]


def concat(node, *inputs):
    axis = norm_axes(node, [node.attrs["axis"]], inputs[0].ndim)[0]
    return np.concatenate(inputs, axis=axis)


def split(node, data, sizes=None):
    axis = norm_axes(node, [node.attrs["axis"]], data.ndim)[0]
    sizes = split_sizes(node, data.shape[axis], _ints(sizes))
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.split(data, cuts, axis=axis))


def slice_(node, data, starts, ends, axes=None, steps=None):
    index = [slice(None)] * data.ndim
    for axis, start, end, step in slice_params(node, data.ndim, _ints(starts), _ints(ends),
                                               _ints(axes), _ints(steps)):
        start, end, _ = slice_bounds(data.shape[axis], start, end, step)
        index[axis] = slice(start, None if end < 0 else end, step)
    return data[tuple(index)].copy()


def pad(node, data, pads, constant_value=None, axes=None):
    widths = pad_widths(node, data.ndim, _ints(pads), _ints(axes))
    crop = tuple(slice(max(-b, 0), d - max(-e, 0)) for d, (b, e) in zip(data.shape, widths))
    data = data[crop]
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    mode = node.attrs["mode"]
    if mode == "constant":
        value = 0 if constant_value is None else np.asarray(constant_value).reshape(-1)[0]
        return np.pad(data, grow, mode="constant", constant_values=value)
    return np.pad(data, grow, mode=mode)


KERNELS = {"Concat": concat, "Split": split, "Slice": slice_, "Pad": pad}
