"""Dead-code elimination: remove nodes none of whose outputs is read or is a graph output, and
constants nothing reads."""

from __future__ import annotations

from .rules import is_output

NAME = "dead_code"


def run(graph, config, report) -> None:
    for node in reversed(list(graph.nodes)):
        if not any(v.uses() or is_output(graph, v) for v in node.outputs):
            graph.remove_node(node)
    for name, v in list(graph.constants.items()):
        if not v.uses() and not is_output(graph, v):
            del graph.constants[name]
