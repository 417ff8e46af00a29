"""numpy MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool.

Windows are a strided view of the padded input (``window.window_view``). MaxPool pads with −∞ so that
padding never wins; ``Indices`` is the flat position of the (first) maximum in X:
``((n·C + c)·D1 + h)·D2 + w`` (storage_order 0, row major) or ``(n·C + c)·D1·D2 + h + w·D1``
(storage_order 1, column major), likewise for other ranks.
AveragePool divides the window sum by the number of counted cells: the cells inside X, or with
count_include_pad also the explicit/auto pads — but never the extra end cells that ceil_mode adds.
"""

from __future__ import annotations

import numpy as np

from ..ops.window import flag, forward_shape, window_attrs
from .window import needed_end_pads, pad_spatial, window_view, work_dtype


def _geometry(node, x):
    """(window, out, pads_begin, explicit pads_end, pads_end incl. the ceil_mode extra)."""
    nsp = x.ndim - 2
    win = window_attrs(node, tuple(int(k) for k in node.attrs["kernel_shape"]))
    out, pads = forward_shape(node, win, x.shape[2:], flag(node, "ceil_mode"))
    begin, end = pads[:nsp], pads[nsp:]
    full_end = needed_end_pads(x.shape[2:], win.kernel, win.strides, win.dilations, out, begin, end)
    return win, out, begin, end, full_end


def _flat_indices(arg, win, out, begin, x_shape, column_major: bool) -> np.ndarray:
    """Flat input positions of the window-local argmax ``arg`` (shape (N, C, *out))."""
    nsp = len(out)
    local = np.unravel_index(arg, win.kernel)
    sizes = x_shape[2:]
    index = np.zeros(arg.shape, dtype=np.int64)
    scale = 1
    axes = range(nsp) if column_major else reversed(range(nsp))
    for i in axes:
        grid = np.arange(out[i], dtype=np.int64).reshape((-1,) + (1,) * (nsp - 1 - i))
        coord = grid * win.strides[i] - begin[i] + local[i] * win.dilations[i]
        index += coord * scale
        scale *= sizes[i]
    nc = np.arange(x_shape[0] * x_shape[1], dtype=np.int64).reshape(x_shape[:2] + (1,) * nsp)
    return index + nc * scale


def max_pool(node, x):
    nsp = x.ndim - 2
    win, out, begin, _, full_end = _geometry(node, x)
    ct = work_dtype(x.dtype) if x.dtype.kind == "f" else np.dtype(np.float64)
    xp = pad_spatial(x.astype(ct, copy=False), begin, full_end, -np.inf)
    view = window_view(xp, win.kernel, win.strides, win.dilations, out)
    y = view.max(axis=tuple(range(-nsp, 0))).astype(x.dtype)
    if len(node.outputs) < 2:
        return y
    arg = view.reshape(view.shape[:2 + nsp] + (-1,)).argmax(axis=-1)
    return y, _flat_indices(arg, win, out, begin, x.shape, flag(node, "storage_order"))


def average_pool(node, x):
    nsp = x.ndim - 2
    win, out, begin, end, full_end = _geometry(node, x)
    xp = pad_spatial(x.astype(np.float64), begin, full_end, 0.0)
    sums = window_view(xp, win.kernel, win.strides, win.dilations, out).sum(axis=tuple(range(-nsp, 0)))
    ones = np.ones((1, 1) + x.shape[2:])
    if flag(node, "count_include_pad"):
        ones = pad_spatial(ones, begin, end, 1.0)
        begin, full_end = [0] * nsp, [f - e for f, e in zip(full_end, end)]
    mask = pad_spatial(ones, begin, full_end, 0.0)
    counts = window_view(mask, win.kernel, win.strides, win.dilations, out).sum(axis=tuple(range(-nsp, 0)))
    return (sums / counts).astype(x.dtype)


def global_average_pool(node, x):
    axes = tuple(range(2, x.ndim))
    return x.astype(np.float64).mean(axis=axes, keepdims=True).astype(x.dtype)


def global_max_pool(node, x):
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


KERNELS = {"MaxPool": max_pool, "AveragePool": average_pool,
           "GlobalAveragePool": global_average_pool, "GlobalMaxPool": global_max_pool}
