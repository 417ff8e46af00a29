"""Schemas of ReduceSum, ReduceMean and ReduceMax (opset 18+ form: ``axes`` is an optional input).

``Reduce*(data, axes?){keepdims=1, noop_with_empty_axes=0}`` reduces over ``axes``; with ``axes`` absent
or empty it reduces over every dim, or (``noop_with_empty_axes=1``) returns ``data`` unchanged.
``keepdims=1`` keeps each reduced dim with size 1. Over an empty set, Sum gives 0, Mean NaN and Max the
lowest value of the dtype (-inf for floats, False for bool).
"""

from __future__ import annotations

from ..ir import Node, TensorType
from .reshape import input_len, norm_axes, unknown_dims
from .schema import NUMERIC_TYPES, OpSchema, const_ints, has_input, in_type


def reduce_axes(node: Node, rank: int, axes: list[int] | None) -> list[int] | None:
    """The normalized reduced axes; None means "no reduction" (noop_with_empty_axes)."""
    if not axes:
        return None if node.attrs["noop_with_empty_axes"] else list(range(rank))
    return norm_axes(node, axes, rank)


def _infer_reduce(node: Node) -> list[TensorType]:
    data = in_type(node)
    keep = bool(node.attrs["keepdims"])
    axes = const_ints(node, 1)
    if data.shape is None:
        return [unknown_dims(data.dtype, None)]
    rank = len(data.shape)
    if has_input(node, 1) and axes is None:
        n = input_len(node, 1)
        if keep:
            return [unknown_dims(data.dtype, rank)]
        return [unknown_dims(data.dtype, None if not n else rank - n)]
    axes = reduce_axes(node, rank, axes)
    if axes is None:
        return [data]
    if keep:
        return [TensorType(data.dtype, tuple(1 if k in axes else d for k, d in enumerate(data.shape)))]
    return [TensorType(data.dtype, tuple(d for k, d in enumerate(data.shape) if k not in axes))]


def _schema(op: str, dtypes) -> OpSchema:
    return OpSchema(op, _infer_reduce, inputs=(1, 2), attrs={"keepdims": 1, "noop_with_empty_axes": 0},
                    dtypes=dtypes)


SCHEMAS = {
    "ReduceSum": _schema("ReduceSum", NUMERIC_TYPES),
    "ReduceMean": _schema("ReduceMean", NUMERIC_TYPES),
    "ReduceMax": _schema("ReduceMax", NUMERIC_TYPES + ("bool",)),
}
