"""Concat elimination: each producer of a Concat writes straight into its slice of the concat's
output buffer, so the Concat itself moves no data (it is marked ``in_place`` and becomes a view).

Input i of ``y = Concat(x_0, ..., x_n; axis)`` is the slice ``y[..., o_i : o_i + d_i, ...]`` along
``axis`` with ``o_i = sum(d_<i)``: its producer writes it with the concat buffer's strides. That needs,
per input, a producer that is a kernel (not a graph input, a constant, a view or a plugin, which
writes whole tensors), and the value must be read by nothing else, appear once in the concat and be no
graph output. An input that does not qualify gets a copy kernel that writes its slice, so no Concat
copy kernel remains in any case.
"""

from __future__ import annotations

from ..groups import Step, group_attrs, group_op, kernel_kind
from ..ir import Node, Value
from .rules import Rule, apply_rule, is_output

NAME = "eliminate_concat"


def _why_not_in_place(graph, concat: Node, v: Value) -> str | None:
    p = v.producer()
    if p is None:
        return "it is a graph input or constant"
    if kernel_kind(p) is None:
        return f"it is a view made by {p.name} ({p.op})"
    if kernel_kind(p) == "plugin":
        return f"plugin {p.name} writes whole tensors"
    if len(v.uses()) > 1:
        return "other nodes read it too"
    if is_output(graph, v):
        return "it is a graph output"
    return None


class ConcatInPlace(Rule):
    name = "concat_in_place"

    def match(self, graph, node):
        return node if node.op == "Concat" and not node.attrs.get("in_place") else None

    def involved(self, node):
        return [node]

    def rewrite(self, graph, concat):
        for i, v in enumerate(concat.inputs):
            reason = _why_not_in_place(graph, concat, v)
            if reason is not None:
                concat.set_input(i, _copy(graph, concat, v, i))
        concat.attrs["in_place"] = True


def _copy(graph, concat: Node, v: Value, i: int) -> Value:
    """A copy kernel that writes ``v`` into the concat's slice for input ``i``."""
    attrs = group_attrs(None, {}, 0, (), ((Step("Identity", ("in0",)),),), (f"{concat.name}_copy{i}",))
    node = graph.add_node(group_op(None), [v], attrs=attrs, name=f"{concat.name}_copy{i}",
                          index=graph.nodes.index(concat))
    node.outputs[0].type = v.type
    return node.outputs[0]


def run(graph, config, report) -> None:
    rule = ConcatInPlace()
    for node in list(graph.nodes):
        if rule.match(graph, node) is None:
            continue
        for v in node.inputs:
            reason = _why_not_in_place(graph, node, v)
            if reason is not None:
                named = [node.name] + ([v.producer().name] if v.producer() else [])
                report.decide(NAME, "concat_input_in_place", named, f"copied {v.name!r}: {reason}")
    apply_rule(graph, rule, report, NAME)
