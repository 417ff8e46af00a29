"""Constant folding: a node whose inputs are all constants is evaluated once, at build time, by the
reference interpreter, and its outputs become constants. ``Shape`` of a tensor with a static shape is
a constant too, which lets Shape -> Gather -> Concat -> Reshape chains fold once shapes are static.
``ConstantOfShape`` (light model-zoo weights), ``Cast`` of constants and arithmetic on weights fold the
same way.
"""

from __future__ import annotations

import numpy as np

from ..groups import is_group
from ..ir import Node
from ..plugins import PLUGIN_OP
from ..reference import run_node

NAME = "fold_constants"


def run(graph, config, report) -> None:
    for node in list(graph.nodes):
        if is_group(node) or node.op == PLUGIN_OP:  # plugins are opaque: they run in the engine
            continue
        if node.op == "Shape" and node.inputs[0].type.is_static:
            values = [_static_shape(node)]
        elif node.inputs and all(v is None or v.is_constant for v in node.inputs):
            values = run_node(node, [None if v is None else v.const for v in node.inputs])
        else:
            continue
        for out, value in zip(node.outputs, values):
            const = graph.add_constant(out.name + "_folded", value)
            graph.replace_uses(out, const)
            if const in graph.outputs:  # keep the output's name
                del graph.constants[const.name]
                const.name = out.name
                graph.constants[const.name] = const
        graph.remove_node(node)
        report.decide(NAME, "fold", [node.name])


def _static_shape(node: Node) -> np.ndarray:
    shape = np.asarray(node.inputs[0].type.shape, dtype=np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    return shape[start:end]
