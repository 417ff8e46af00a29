"""Schemas of the element-wise ops: unary activations/math, broadcasting binary and variadic ops,
Clip, Where and Cast.

Binary and variadic ops broadcast multidirectionally (numpy rules); their inputs share one dtype
(Pow's exponent may differ). Unary ops keep their input's type.
"""

from __future__ import annotations

from ..ir import Node, TensorType
from .schema import (FLOAT_TYPES, NUMERIC_TYPES, OpSchema, REQUIRED, broadcast_shapes, in_shape, in_type,
                     same_as_input, shape_error)

SIGNED_TYPES = FLOAT_TYPES + ("int8", "int16", "int32", "int64")


def _broadcast(node: Node, first: int = 0, same_dtype: bool = True) -> list[TensorType]:
    present = [v for v in node.inputs[first:] if v is not None]
    if same_dtype:
        dtypes = {v.type.dtype for v in present}
        if len(dtypes) > 1:
            raise shape_error(node, f"inputs have different dtypes ({', '.join(sorted(dtypes))})")
    if any(v.type.shape is None for v in present):
        return [TensorType(present[0].type.dtype, None)]
    return [TensorType(present[0].type.dtype, broadcast_shapes(node, *(v.type.shape for v in present)))]


def _infer_pow(node: Node) -> list[TensorType]:
    out = _broadcast(node, same_dtype=False)[0]
    return [TensorType(in_type(node).dtype, out.shape)]


def _infer_where(node: Node) -> list[TensorType]:
    if in_type(node).dtype != "bool":
        raise shape_error(node, f"condition must be bool, got {in_type(node).dtype}")
    out = _broadcast(node, first=1)[0]
    if out.shape is None or in_type(node).shape is None:
        return [out]
    return [TensorType(out.dtype, broadcast_shapes(node, in_shape(node), out.shape))]


def _infer_clip(node: Node) -> list[TensorType]:
    for i in (1, 2):
        if i < len(node.inputs) and node.inputs[i] is not None:
            bound = node.inputs[i].type
            if bound.dtype != in_type(node).dtype:
                raise shape_error(node, f"bound {i} has dtype {bound.dtype}, input has {in_type(node).dtype}")
            if bound.shape not in (None, ()) and bound.shape != (1,):
                raise shape_error(node, f"bound {i} must be a scalar, got shape {list(bound.shape)}")
    return [in_type(node)]


def _infer_prelu(node: Node) -> list[TensorType]:
    x, slope = in_type(node, 0), in_type(node, 1)
    if x.shape is not None and slope.shape is not None:
        broadcast_shapes(node, x.shape, slope.shape)
    return [x]


def _infer_cast(node: Node) -> list[TensorType]:
    return [TensorType(node.attrs["to"], in_type(node).shape)]


def _unary(op: str, dtypes=FLOAT_TYPES, **attrs) -> OpSchema:
    return OpSchema(op, same_as_input, attrs=attrs, dtypes=dtypes)


def _binary(op: str, dtypes=NUMERIC_TYPES) -> OpSchema:
    return OpSchema(op, _broadcast, inputs=(2, 2), dtypes=dtypes)


def _variadic(op: str, dtypes=NUMERIC_TYPES) -> OpSchema:
    return OpSchema(op, _broadcast, inputs=(1, None), dtypes=dtypes)


_SCHEMAS = [
    _unary("Relu", SIGNED_TYPES),
    _unary("LeakyRelu", alpha=0.01),
    _unary("Sigmoid"),
    _unary("Tanh"),
    _unary("HardSigmoid", alpha=0.2, beta=0.5),
    _unary("HardSwish"),
    _unary("Elu", alpha=1.0),
    _unary("Selu", alpha=1.67326319217681884765625, gamma=1.05070102214813232421875),
    _unary("Softplus"),
    _unary("Gelu", approximate="none"),
    _unary("Erf", NUMERIC_TYPES),
    _unary("Exp"),
    _unary("Log"),
    _unary("Sqrt"),
    _unary("Reciprocal"),
    _unary("Neg", SIGNED_TYPES),
    _unary("Abs", NUMERIC_TYPES),
    OpSchema("PRelu", _infer_prelu, inputs=(2, 2), dtypes=SIGNED_TYPES),
    OpSchema("Clip", _infer_clip, inputs=(1, 3), dtypes=NUMERIC_TYPES),
    OpSchema("Pow", _infer_pow, inputs=(2, 2), dtypes=FLOAT_TYPES + ("int32", "int64")),
    _binary("Add"), _binary("Sub"), _binary("Mul"), _binary("Div"),
    _variadic("Sum", FLOAT_TYPES), _variadic("Mean", FLOAT_TYPES), _variadic("Max"), _variadic("Min"),
    OpSchema("Where", _infer_where, inputs=(3, 3)),
    OpSchema("Cast", _infer_cast, attrs={"to": REQUIRED, "saturate": 1, "round_mode": "up"}),
]

SCHEMAS: dict[str, OpSchema] = {s.op: s for s in _SCHEMAS}
