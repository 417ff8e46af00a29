"""Op schemas: attributes with defaults, arity, and shape/dtype inference, in one place.

The tables live in ``elementwise.py``, ``nn.py`` and ``tensor.py``; this module merges them and drives
inference over a graph. ``SCHEMAS`` maps the canonical op name (latest ONNX semantics; the ONNX
frontend upgrades older opset forms) to its :class:`OpSchema`.
"""

from __future__ import annotations

from ..errors import AttributeValueError, ShapeError, node_error
from ..ir import Graph, Node, TensorType
from . import elementwise, nn, plugin, tensor
from .schema import REQUIRED, OpSchema, same_dim

SCHEMAS: dict[str, OpSchema] = {**elementwise.SCHEMAS, **nn.SCHEMAS, **tensor.SCHEMAS, **plugin.SCHEMAS}


def fill_attributes(node: Node) -> None:
    """Check the node's attribute names, fill in defaults, and reject missing required ones."""
    schema = SCHEMAS[node.op]
    unknown = sorted(set(node.attrs) - set(schema.attrs))
    if unknown:
        raise node_error(AttributeValueError, node, f"unknown attribute(s) {', '.join(unknown)}")
    for name, default in schema.attrs.items():
        if name not in node.attrs:
            if default is REQUIRED:
                raise node_error(AttributeValueError, node, f"required attribute {name!r} is missing")
            node.attrs[name] = default


def infer_node(node: Node) -> None:
    """Set the types of ``node``'s outputs, checking arity, dtypes and any declared output types."""
    schema = SCHEMAS[node.op]
    lo, hi = schema.inputs
    n_in = len(node.inputs)
    if n_in < lo or (hi is not None and n_in > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any'}"
        raise node_error(ShapeError, node, f"takes {want} inputs, got {n_in}")
    for i, v in enumerate(node.inputs[:lo]):
        if v is None:
            raise node_error(ShapeError, node, f"required input {i} is missing")
    lo, hi = schema.outputs
    if not lo <= len(node.outputs) <= hi:
        raise node_error(ShapeError, node, f"has {len(node.outputs)} outputs, the op has {lo} to {hi}")
    if schema.dtypes is not None and node.inputs[0].type.dtype not in schema.dtypes:
        raise node_error(ShapeError, node, f"input dtype {node.inputs[0].type.dtype} is not supported "
                         f"(allowed: {', '.join(schema.dtypes)})")
    inferred = schema.infer(node)
    for v, t in zip(node.outputs, inferred):
        v.type = merge_types(node, v.name, v.type, t)


def merge_types(node: Node, name: str, declared: TensorType | None, inferred: TensorType) -> TensorType:
    """Combine a declared type (from the model) with the inferred one; a contradiction is an error."""
    if declared is None:
        return inferred
    if declared.dtype != inferred.dtype:
        raise node_error(ShapeError, node, f"output {name!r} is declared {declared.dtype} "
                         f"but the op produces {inferred.dtype}")
    if declared.shape is None:
        return inferred
    if inferred.shape is None:
        return declared
    if len(declared.shape) != len(inferred.shape) or not all(
            same_dim(a, b) for a, b in zip(declared.shape, inferred.shape)):
        raise node_error(ShapeError, node, f"output {name!r} is declared {declared} but the op produces "
                         f"{inferred}")
    # a static declared size refines an unknown or symbolic inferred one; otherwise inference wins
    # (its symbols are the graph inputs' own)
    shape = tuple(a if isinstance(a, int) and not isinstance(b, int) else b if b is not None else a
                  for a, b in zip(declared.shape, inferred.shape))
    return TensorType(inferred.dtype, shape)


def infer_graph(graph: Graph) -> None:
    """Infer every node's output types in topological order."""
    for node in graph.nodes:
        infer_node(node)


__all__ = ["SCHEMAS", "OpSchema", "REQUIRED", "fill_attributes", "infer_node", "infer_graph"]
