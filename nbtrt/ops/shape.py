"""Schemas of Shape, ConstantOfShape, Expand, Gather, Identity and Dropout.

- ``Shape(data){start=0, end=None}``: the int64 1-D tensor ``shape(data)[start:end]``; negative
  ``start``/``end`` count from the back, both are clamped to ``[0, rank]``.
- ``ConstantOfShape(input){value}``: a tensor of shape ``input`` (1-D int64) filled with the one
  element of ``value`` (default: float32 0).
- ``Expand(input, shape)``: numpy broadcasting of ``input`` and the shape ``shape`` (a 1 in either keeps
  the other's dim; the output rank is the larger).
- ``Gather(data, indices){axis=0}``: ``out = take(data, indices, axis)``; out shape is
  ``data.shape[:axis] + indices.shape + data.shape[axis+1:]``; indices in ``[-n, n-1]`` (negative ones
  count from the back).
- ``Identity(input)`` copies; ``Dropout(data, ratio?, training_mode?){seed}`` is the identity at
  inference (``training_mode`` absent or false) and its optional ``mask`` output is all true.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node, TensorType
from .reshape import input_len, unknown_dims
from .schema import (OpSchema, attr_error, broadcast_shapes, const_input, const_ints, in_type, norm_axis,
                     same_as_input, shape_error)

INDEX_TYPES = ("int32", "int64")


def shape_slice(rank: int, start: int, end: int | None) -> tuple[int, int]:
    """Clamp Shape's ``start``/``end`` (end None: rank) to ``[0, rank]``."""
    end = rank if end is None else end
    start = start + rank if start < 0 else start
    end = end + rank if end < 0 else end
    return min(max(start, 0), rank), min(max(end, 0), rank)


def _infer_shape(node: Node) -> list[TensorType]:
    shape = in_type(node).shape
    if shape is None:
        return [TensorType("int64", (None,))]
    start, end = shape_slice(len(shape), node.attrs["start"], node.attrs["end"])
    return [TensorType("int64", (max(end - start, 0),))]


def constant_fill(node: Node) -> np.ndarray:
    """ConstantOfShape's fill value as a 0-d array (float32 0 when the attribute is absent)."""
    value = node.attrs["value"]
    if value is None:
        return np.zeros((), np.float32)
    value = np.asarray(value)
    if value.size != 1:
        raise attr_error(node, f"value must hold exactly one element, it has {value.size}")
    return value.reshape(())


def _infer_constant_of_shape(node: Node) -> list[TensorType]:
    dtype = constant_fill(node).dtype.name
    shape = const_ints(node, 0)
    if shape is None:
        return [unknown_dims(dtype, input_len(node, 0))]
    if any(d < 0 for d in shape):
        raise shape_error(node, f"shape {shape} has a negative dim")
    return [TensorType(dtype, tuple(shape))]


def _infer_expand(node: Node) -> list[TensorType]:
    data = in_type(node)
    target = const_ints(node, 1)
    if target is None or data.shape is None:
        n = input_len(node, 1) if target is None else len(target)
        rank = None if n is None or data.shape is None else max(n, len(data.shape))
        return [unknown_dims(data.dtype, rank)]
    if any(d < 0 for d in target):
        raise shape_error(node, f"shape {target} has a negative dim")
    return [TensorType(data.dtype, broadcast_shapes(node, data.shape, tuple(target)))]


def _check_gather_indices(node: Node, dim, axis: int) -> None:
    indices = const_input(node, 1)
    if indices is None or not isinstance(dim, int) or indices.size == 0:
        return
    lo, hi = int(indices.min()), int(indices.max())
    if lo < -dim or hi >= dim:
        bad = lo if lo < -dim else hi
        raise shape_error(node, f"index {bad} is out of range for axis {axis} of size {dim}")


def _infer_gather(node: Node) -> list[TensorType]:
    data, indices = in_type(node, 0), in_type(node, 1)
    if indices.dtype not in INDEX_TYPES:
        raise shape_error(node, f"indices must be int32 or int64, not {indices.dtype}")
    if data.shape is None or indices.shape is None:
        return [unknown_dims(data.dtype, None)]
    if not data.shape:
        raise shape_error(node, "data must have rank >= 1")
    axis = norm_axis(node, node.attrs["axis"], len(data.shape))
    _check_gather_indices(node, data.shape[axis], axis)
    return [TensorType(data.dtype, data.shape[:axis] + indices.shape + data.shape[axis + 1:])]


def _infer_dropout(node: Node) -> list[TensorType]:
    data = in_type(node)
    return [data, TensorType("bool", data.shape)]


SCHEMAS = {
    "Shape": OpSchema("Shape", _infer_shape, attrs={"start": 0, "end": None}),
    "ConstantOfShape": OpSchema("ConstantOfShape", _infer_constant_of_shape, attrs={"value": None}),
    "Expand": OpSchema("Expand", _infer_expand, inputs=(2, 2)),
    "Gather": OpSchema("Gather", _infer_gather, inputs=(2, 2), attrs={"axis": 0}),
    "Identity": OpSchema("Identity", same_as_input),
    "Dropout": OpSchema("Dropout", _infer_dropout, inputs=(1, 3), outputs=(1, 2), attrs={"seed": None}),
}
