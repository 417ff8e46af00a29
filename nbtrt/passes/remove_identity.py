"""Identity and Dropout are the identity at inference: readers of the output read the input instead.

Dropout's optional mask output, if read, is all True: it becomes a constant. When the output is a
graph output, its name must survive: the input takes the output's name if nothing else observes the
input's name (it is produced by a node and is no graph output); otherwise the node stays.
"""

from __future__ import annotations

import numpy as np

from .rules import Rule, apply_rule, is_output

NAME = "remove_identity"


class RemoveIdentity(Rule):
    name = "remove_identity"

    def match(self, graph, node):
        return node if node.op in ("Identity", "Dropout") else None

    def involved(self, node):
        return [node]

    def check(self, graph, node):
        x, y = node.inputs[0], node.outputs[0]
        if len(node.outputs) > 1 and node.outputs[1].uses() and not node.outputs[1].type.is_static:
            return "the dropout mask is read and its shape is not static"
        if is_output(graph, y) and (x.producer() is None or is_output(graph, x)):
            return "copies a graph input or output to a graph output"
        return None

    def rewrite(self, graph, node):
        x, y = node.inputs[0], node.outputs[0]
        if len(node.outputs) > 1 and (node.outputs[1].uses() or is_output(graph, node.outputs[1])):
            mask = graph.add_constant(node.outputs[1].name + "_ones", np.ones(node.outputs[1].type.shape, bool))
            graph.replace_uses(node.outputs[1], mask)
        if is_output(graph, y):
            graph._names.discard(x.name)
            x.name = y.name
        graph.replace_uses(y, x)
        graph.remove_node(node)


def run(graph, config, report) -> None:
    apply_rule(graph, RemoveIdentity(), report, NAME)
