"""Schemas of the pooling ops.

MaxPool / AveragePool: X (N, C, D1..Dn) -> Y (N, C, O1..On) with the window geometry of ``window.py``
(kernel_shape required; strides, dilations, pads, auto_pad, ceil_mode). MaxPool's optional second
output ``Indices`` (int64, same shape) holds the flat position of each maximum in X.
GlobalAveragePool / GlobalMaxPool: X (N, C, D1..Dn) -> Y (N, C, 1..1).
"""

from __future__ import annotations

from ..ir import Dim, Node, TensorType
from .schema import FLOAT_TYPES, REQUIRED, OpSchema, attr_error, in_type, shape_error
from .window import flag, forward_shape, shape_or_none, window_attrs

POOL_ATTRS = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": REQUIRED,
              "pads": None, "strides": None}


def pooled_input(node: Node, rank: int | None = None) -> tuple[Dim, ...] | None:
    x = shape_or_none(node, 0, rank)
    if x is not None and len(x) < 3:
        raise shape_error(node, f"input must be (N, C, spatial...) of rank >= 3, got {list(x)}")
    return x


def pool_output(node: Node) -> tuple[Dim, ...]:
    kernel = tuple(int(k) for k in node.attrs["kernel_shape"])
    x = pooled_input(node, len(kernel) + 2)
    if len(kernel) != len(x) - 2:
        raise attr_error(node, f"kernel_shape {list(kernel)} must have one value per spatial axis "
                               f"of the input {list(x)}")
    win = window_attrs(node, kernel)
    spatial, _ = forward_shape(node, win, x[2:], flag(node, "ceil_mode"))
    return x[:2] + spatial


def infer_max_pool(node: Node) -> list[TensorType]:
    flag(node, "storage_order")
    shape = pool_output(node)
    return [TensorType(in_type(node).dtype, shape), TensorType("int64", shape)]


def infer_average_pool(node: Node) -> list[TensorType]:
    flag(node, "count_include_pad")
    return [TensorType(in_type(node).dtype, pool_output(node))]


def infer_global_pool(node: Node) -> list[TensorType]:
    x = pooled_input(node)
    return [TensorType(in_type(node).dtype, None if x is None else x[:2] + (1,) * (len(x) - 2))]


SCHEMAS = {
    "MaxPool": OpSchema("MaxPool", infer_max_pool, outputs=(1, 2),
                        attrs={**POOL_ATTRS, "storage_order": 0},
                        dtypes=FLOAT_TYPES + ("int8", "uint8")),
    "AveragePool": OpSchema("AveragePool", infer_average_pool,
                            attrs={**POOL_ATTRS, "count_include_pad": 0}, dtypes=FLOAT_TYPES),
    "GlobalAveragePool": OpSchema("GlobalAveragePool", infer_global_pool, dtypes=FLOAT_TYPES),
    "GlobalMaxPool": OpSchema("GlobalMaxPool", infer_global_pool, dtypes=FLOAT_TYPES),
}
