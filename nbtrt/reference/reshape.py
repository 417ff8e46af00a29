"""Numpy kernels of the data-movement ops that keep every element: Reshape, Flatten, Squeeze, Unsqueeze,
Transpose, SpaceToDepth, Expand, Gather, Identity, Dropout, and of Shape and ConstantOfShape.

Each kernel is ``fn(node, *inputs)``; the semantics (and the shape rules, shared with shape inference)
are stated in ``nbtrt/ops/reshape.py`` and ``nbtrt/ops/shape.py``.
"""

from __future__ import annotations

import numpy as np

from ..ops.reshape import flatten_axis, norm_axes, reshape_dims, space_to_depth_channels, transpose_perm
from ..ops.schema import attr_error, shape_error
from ..ops.shape import constant_fill, shape_slice


def _ints(array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


def reshape(node, data, shape):
    dims = reshape_dims(node, data.shape, _ints(shape), node.attrs["allowzero"])
    return data.reshape(dims)


def flatten(node, data):
    axis = flatten_axis(node, data.ndim)
    outer = int(np.prod(data.shape[:axis], dtype=np.int64))
    inner = int(np.prod(data.shape[axis:], dtype=np.int64))
    return data.reshape(outer, inner)


def squeeze(node, data, axes=None):
    if axes is None:
        return data.reshape([d for d in data.shape if d != 1])
    axes = norm_axes(node, _ints(axes), data.ndim)
    for a in axes:
        if data.shape[a] != 1:
            raise shape_error(node, f"cannot squeeze axis {a} of shape {list(data.shape)}: its size is not 1")
    return data.reshape([d for k, d in enumerate(data.shape) if k not in axes])


def unsqueeze(node, data, axes):
    axes = norm_axes(node, _ints(axes), data.ndim + np.asarray(axes).size)
    return np.expand_dims(data, tuple(axes))


def transpose(node, data):
    return np.transpose(data, transpose_perm(node, data.ndim))


def space_to_depth(node, data):
    """ONNX SpaceToDepth; with ``channels`` (``passes/space_to_depth.py``) zero channels appended, and
    with ``out_scales`` (int8 storage, ``passes/int8_storage.py``) stored quantized."""
    n, c, h, w = data.shape
    b = int(node.attrs["blocksize"])
    channels = space_to_depth_channels(node, c)
    perm = (0, 3, 5, 1, 2, 4) if node.attrs["mode"] == "DCR" else (0, 1, 3, 5, 2, 4)
    out = data.reshape(n, c, h // b, b, w // b, b).transpose(perm).reshape(n, c * b * b, h // b, w // b)
    if channels > out.shape[1]:
        out = np.concatenate([out, np.zeros((n, channels - out.shape[1]) + out.shape[2:], out.dtype)], axis=1)
    scale = (node.attrs.get("out_scales") or [None])[0]
    if scale is None:
        return out
    from ..quant.fake import quantize  # (nbtrt.quant imports the reference)
    return quantize(out, scale)


def shape(node, data):
    start, end = shape_slice(data.ndim, node.attrs["start"], node.attrs["end"])
    return np.array(data.shape[start:end], dtype=np.int64)


def constant_of_shape(node, shape):
    fill = constant_fill(node)
    return np.full(_ints(shape), fill, dtype=fill.dtype)


def expand(node, data, shape):
    try:
        out_shape = np.broadcast_shapes(data.shape, tuple(_ints(shape)))
    except ValueError as e:
        raise shape_error(node, f"cannot expand shape {list(data.shape)} to {_ints(shape)}") from e
    return np.broadcast_to(data, out_shape).copy()


def gather(node, data, indices):
    axis = norm_axes(node, [node.attrs["axis"]], data.ndim)[0]
    n = data.shape[axis]
    if indices.size and (indices.min() < -n or indices.max() >= n):
        raise shape_error(node, f"indices out of range [-{n}, {n - 1}] for axis {axis}")
    return np.take(data, indices.astype(np.int64), axis=axis)


def identity(node, data):
    return np.array(data, copy=True)


def dropout(node, data, ratio=None, training_mode=None):
    """Identity at inference; in training mode, zero with probability ``ratio`` and scale the rest by
    ``1 / (1 - ratio)``, drawing from ``numpy.random.RandomState(seed)`` (the ONNX test generator)."""
    ratio = 0.5 if ratio is None else float(np.asarray(ratio).reshape(-1)[0])
    if not 0 <= ratio < 1:
        raise attr_error(node, f"ratio {ratio} is not in [0, 1)")
    if training_mode is None or not np.asarray(training_mode).any() or ratio == 0:
        out, mask = np.array(data, copy=True), np.ones(data.shape, dtype=bool)
    else:
        mask = np.random.RandomState(node.attrs["seed"]).uniform(0, 1, data.shape) >= ratio
        out = (mask * data * (1.0 / (1 - ratio))).astype(data.dtype)
    return (out, mask) if len(node.outputs) == 2 else out


KERNELS = {
    "Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
    "Transpose": transpose, "SpaceToDepth": space_to_depth, "Shape": shape,
    "ConstantOfShape": constant_of_shape, "Expand": expand,
    "Gather": gather, "Identity": identity, "Dropout": dropout,
}
