"""The op-schema record and the helpers every shape-inference rule uses.

An :class:`OpSchema` states an op's input/output arity, its attributes with their defaults (``REQUIRED``
for none) and ``infer(node) -> list[TensorType]``, the output types from the input types (and from
constant inputs where the output shape depends on their values, e.g. Reshape's shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import AttributeValueError, ShapeError, node_error
from ..ir import Dim, Node, TensorType

REQUIRED = object()

FLOAT_TYPES = ("float16", "float32", "float64")
INT_TYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
NUMERIC_TYPES = FLOAT_TYPES + INT_TYPES


@dataclass(frozen=True)
class OpSchema:
    op: str
    infer: Callable[[Node], list[TensorType]]
    inputs: tuple[int, int | None] = (1, 1)  # (min, max); max None: variadic
    outputs: tuple[int, int] = (1, 1)
    attrs: dict = field(default_factory=dict)
    dtypes: tuple[str, ...] | None = None  # allowed dtypes of the first input (None: any)


def shape_error(node: Node, message: str) -> ShapeError:
    return node_error(ShapeError, node, message)


def attr_error(node: Node, message: str) -> AttributeValueError:
    return node_error(AttributeValueError, node, message)


def in_type(node: Node, i: int = 0) -> TensorType:
    return node.inputs[i].type


def in_shape(node: Node, i: int = 0) -> tuple[Dim, ...]:
    """The shape of input ``i``; rank must be known."""
    shape = node.inputs[i].type.shape
    if shape is None:
        raise shape_error(node, f"input {i} ({node.inputs[i].name!r}) has unknown rank")
    return shape


def const_input(node: Node, i: int) -> np.ndarray | None:
    """The value of input ``i`` if it is present and constant, else None."""
    if i >= len(node.inputs) or node.inputs[i] is None:
        return None
    return node.inputs[i].const


def const_ints(node: Node, i: int) -> list[int] | None:
    v = const_input(node, i)
    return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]


def has_input(node: Node, i: int) -> bool:
    return i < len(node.inputs) and node.inputs[i] is not None


def norm_axis(node: Node, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise attr_error(node, f"{what} {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def same_dim(a: Dim, b: Dim) -> bool:
    """True unless the dims are known to differ (two static sizes that are not equal): symbolic dims of
    different names may still be equal at run time."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def broadcast_shapes(node: Node, *shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """Multidirectional (numpy) broadcasting of shapes with symbolic dims."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for k in range(rank):
        dims = [s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0]
        known = {d for d in dims if d != 1}
        if not known:
            out.append(1)
        elif len(known) == 1:
            out.append(known.pop())
        elif len({d for d in known if isinstance(d, int)}) > 1:
            raise shape_error(node, f"shapes {' and '.join(map(str, map(list, shapes)))} do not broadcast")
        else:
            ints = [d for d in known if isinstance(d, int)]
            out.append(ints[0] if ints else None)
    return tuple(out)


def dim_mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    return None


def dims_product(dims) -> Dim:
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def same_as_input(node: Node) -> list[TensorType]:
    """Output 0 has the type of input 0 (unary element-wise ops)."""
    return [in_type(node)]
