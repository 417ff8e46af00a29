"""Element-wise fusion: the element-wise ops left after epilogue fusion (the unary, binary, variadic
ops, Clip, Where and simple Casts of ``ops/elementwise.py``) become ``nbtrt.eltwise`` groups — chains
and DAGs, with broadcasting — each one kernel that reads its operands once and writes one result.

A group grows backwards from a root (the last element-wise node of the graph not yet grouped): the
producer of a value some member reads joins when it is element-wise, its value is no graph output and
every reader of that value is already a member. So every member other than the root is read only
inside the group, every path out of the group starts at the root, and the group is convex: putting it
at the root's place keeps the node list topological. A value also read outside stays the result of a
group of its own. The program evaluates the members in their graph order, one step per node, with the
node's own semantics (operands ``in<k>`` are the group's inputs; broadcasting is that of each step),
so the group's result — the root's output value, with its type — is the broadcast of its operands
exactly as before. A single element-wise op becomes a one-step group, so code generation sees one
kind.
"""

from __future__ import annotations

from ..groups import group_attrs, group_op, is_group
from ..ir import Graph, Node
from ..report import BuildReport
from .epilogue_ops import ProgramBuilder, is_elementwise, node_step
from .rules import is_output, remove_nodes

NAME = "fuse_elementwise"


def run(graph: Graph, config, report: BuildReport) -> None:
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    grouped: set[int] = set()
    for root in reversed(list(graph.nodes)):
        if id(root) in grouped or is_group(root) or not is_elementwise(root):
            continue
        members = sorted(_grow(graph, root, grouped), key=lambda n: position[id(n)])
        grouped.update(id(n) for n in members)
        _build(graph, root, members)
        report.decide(NAME, "fuse_elementwise", [n.name for n in members])


def _grow(graph: Graph, root: Node, grouped: set[int]) -> list[Node]:
    """``root`` and the producers that may join its group (module docstring)."""
    members = {id(root): root}
    changed = True
    while changed:
        changed = False
        for node in list(members.values()):
            for v in node.inputs:
                p = None if v is None else v.producer()
                if p is None or id(p) in members or id(p) in grouped or is_group(p) or not is_elementwise(p):
                    continue
                if is_output(graph, v) or any(id(n) not in members for n, _ in v.uses()):
                    continue
                members[id(p)] = p
                changed = True
    return list(members.values())


def _build(graph: Graph, root: Node, members: list[Node]) -> None:
    prog = ProgramBuilder(graph, (), 0)
    for node in members:
        node_step(prog, node)
    attrs = group_attrs(None, {}, 0, (), (prog.program(),), tuple(n.name for n in members))
    group = Node(group_op(None), prog.inputs, [root.outputs[0]], attrs, name=root.name)
    index = graph.take_out(root)
    graph.insert(group, index)
    remove_nodes(graph, [n for n in members if n is not root])
