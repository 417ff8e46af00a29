"""Rules as pattern / check / rewrite, and the helpers rewrites share.

A :class:`Rule` finds a candidate at a node (``match``), says why it must not apply (``check``
returns a reason, or None) and applies it (``rewrite``). :func:`apply_rule` runs a rule over the graph
and records every decision, applied or refused, in the build report.
"""

from __future__ import annotations

from ..config import BuildConfig
from ..groups import sources
from ..ir import Graph, Node, Value
from ..report import BuildReport


class Rule:
    """Subclasses set ``name`` and implement ``match``, ``check`` and ``rewrite``."""

    name = "rule"

    def match(self, graph: Graph, node: Node):
        """A candidate (any object with the nodes it involves) rooted at ``node``, or None."""
        raise NotImplementedError

    def check(self, graph: Graph, match) -> str | None:
        """The reason the candidate must not be rewritten, or None."""
        return None

    def rewrite(self, graph: Graph, match) -> None:
        raise NotImplementedError

    def involved(self, match) -> list[Node]:
        """The nodes of a candidate, for the report (default: ``match.nodes``)."""
        return list(match.nodes)


def apply_rule(graph: Graph, rule: Rule, report: BuildReport, pass_name: str) -> int:
    """Apply ``rule`` at every node (in order, skipping nodes already rewritten away); return how
    many times it was applied."""
    applied = 0
    for node in list(graph.nodes):
        if not is_alive(graph, node):
            continue
        match = rule.match(graph, node)
        if match is None:
            continue
        names = [n for m in rule.involved(match) for n in sources(m)]
        if report.decide(pass_name, rule.name, names, rule.check(graph, match)):
            rule.rewrite(graph, match)
            applied += 1
    return applied


def is_alive(graph: Graph, node: Node) -> bool:
    return any(v.producer() is node for v in node.outputs) and node in graph.nodes


def is_output(graph: Graph, value: Value) -> bool:
    return any(v is value for v in graph.outputs)


def sole_user(graph: Graph, value: Value) -> Node | None:
    """The one node that reads ``value`` (once), or None if several do or it is a graph output."""
    uses = value.uses()
    if len(uses) != 1 or is_output(graph, value):
        return None
    return uses[0][0]


def other_input(node: Node, value: Value) -> Value | None:
    """For a binary node reading ``value``, its other input."""
    a, b = node.inputs[:2]
    return b if a is value else a if b is value else None


def remove_nodes(graph: Graph, nodes) -> None:
    """Remove nodes whose outputs nobody reads any more, in reverse order."""
    for node in reversed(list(nodes)):
        graph.remove_node(node)


__all__ = ["Rule", "apply_rule", "is_alive", "is_output", "sole_user", "other_input", "remove_nodes",
           "BuildConfig"]
