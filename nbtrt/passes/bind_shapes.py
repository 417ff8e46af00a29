"""Bind input shapes: replace the declared shapes of graph inputs by those the build config fixes,
then infer every node's types again so that shape computations become static and can fold.

``config.input_shapes[name]`` gives a whole shape; ``config.dims[sym]`` sizes a symbolic dim wherever
it appears. A given shape must agree with the declared one (same rank, equal static dims).
"""

from __future__ import annotations

from ..bindings import check_shape
from ..ir import TensorType
from ..ops import infer_node

NAME = "bind_shapes"


def run(graph, config, report) -> None:
    if not config.input_shapes and not config.dims:
        return
    dims = dict(config.dims)
    for v in graph.inputs:
        shape = config.input_shapes.get(v.name)
        if shape is not None:
            check_shape(v.name, tuple(shape), v.type.shape, dims)
        elif v.type.shape is not None:
            shape = tuple(dims.get(d, d) if isinstance(d, str) else d for d in v.type.shape)
        v.type = TensorType(v.type.dtype, None if shape is None else tuple(shape))
    for node in graph.nodes:
        for out in node.outputs:
            out.type = _substitute(out.type, dims)
        infer_node(node)


def _substitute(t: TensorType | None, dims: dict) -> TensorType | None:
    if t is None or t.shape is None:
        return t
    return TensorType(t.dtype, tuple(dims.get(d, d) if isinstance(d, str) else d for d in t.shape))
