"""SSA tensor IR: :class:`TensorType`, :class:`Value`, :class:`Node`, :class:`Graph`.

Every value is defined once: by a graph input, by a constant (an initializer, with a numpy payload) or
by exactly one node output. A value knows its producer and its uses, both in O(1), so that rewrites
(fusion, horizontal merging, concat elimination) can ask "who reads this tensor?" cheaply.

Dims are ``int`` (static), ``str`` (a named symbolic dim such as the dynamic batch ``"N"``) or ``None``
(unknown). Node attributes are complete after the frontend: every default is filled in from the op's
schema, so passes and back ends never look defaults up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .errors import GraphError

Dim = int | str | None


@dataclass(frozen=True)
class TensorType:
    """Element type (a numpy dtype name such as ``"float32"``) and shape (``None``: unknown rank)."""

    dtype: str
    shape: tuple[Dim, ...] | None = None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def numel(self) -> int | None:
        return int(np.prod(self.shape, dtype=np.int64)) if self.is_static else None

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[?]"
        return f"{self.dtype}[{','.join('?' if d is None else str(d) for d in self.shape)}]"


class Value:
    """A tensor defined once: graph input, constant (``const`` holds the array) or node output."""

    __slots__ = ("name", "type", "const", "_producer", "_uses")

    def __init__(self, name: str, type: TensorType | None = None, const: np.ndarray | None = None):
        self.name = name
        if const is not None:
            const = np.asarray(const)
            type = TensorType(const.dtype.name, tuple(int(d) for d in const.shape))
        self.type = type
        self.const = const
        self._producer: Node | None = None
        self._uses: dict[tuple[Node, int], None] = {}

    def producer(self) -> Node | None:
        return self._producer

    def uses(self) -> list[tuple[Node, int]]:
        """(node, input index) pairs that read this value, in insertion order."""
        return list(self._uses)

    @property
    def is_constant(self) -> bool:
        return self.const is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """One operation. ``inputs`` may hold ``None`` for an omitted optional input."""

    __slots__ = ("op", "name", "attrs", "domain", "_inputs", "outputs")

    def __init__(self, op: str, inputs: Iterable[Value | None], outputs: Iterable[Value],
                 attrs: dict | None = None, name: str = "", domain: str = ""):
        self.op = op
        self.domain = domain
        self.attrs = dict(attrs or {})
        self._inputs: list[Value | None] = []
        self.outputs: list[Value] = list(outputs)
        self.name = name or (self.outputs[0].name if self.outputs else op)
        for v in inputs:
            self._inputs.append(None)
            self.set_input(len(self._inputs) - 1, v)

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    def set_input(self, index: int, value: Value | None) -> None:
        old = self._inputs[index]
        if old is not None:
            old._uses.pop((self, index), None)
        self._inputs[index] = value
        if value is not None:
            value._uses[(self, index)] = None

    def set_inputs(self, values) -> None:
        """Replace the whole input list (its length may change)."""
        self.detach()
        self._inputs = [None] * len(values)
        for i, v in enumerate(values):
            self.set_input(i, v)

    def detach(self) -> None:
        """Drop this node's uses of its inputs (before removing it from a graph)."""
        for i in range(len(self._inputs)):
            self.set_input(i, None)

    def __repr__(self) -> str:
        return f"<Node {self.name!r} {self.op}>"


class Graph:
    """Inputs, constants, nodes in topological order, and outputs."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.constants: dict[str, Value] = {}
        self.nodes: list[Node] = []
        self._names: set[str] = set()

    # -- building -------------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(self.unique_name(name), type)
        self.inputs.append(v)
        return v

    def add_constant(self, name: str, array) -> Value:
        v = Value(self.unique_name(name), const=np.asarray(array))
        self.constants[v.name] = v
        return v

    def add_node(self, op: str, inputs, n_outputs: int = 1, attrs: dict | None = None,
                 name: str = "", domain: str = "", output_names=(), index: int | None = None) -> Node:
        """Create a node with fresh output values and insert it (at the end, or before ``index``)."""
        names = list(output_names) + [f"{name or op}_out{i}" for i in range(len(output_names), n_outputs)]
        node = Node(op, inputs, [Value(self.unique_name(n)) for n in names], attrs, name=name, domain=domain)
        return self.insert(node, index)

    def insert(self, node: Node, index: int | None = None) -> Node:
        """Insert an already built node (at the end, or before ``index``) and own its outputs."""
        for v in node.outputs:
            v._producer = node
            self._names.add(v.name)
        self.nodes.insert(len(self.nodes) if index is None else index, node)
        return node

    def remove_node(self, node: Node) -> None:
        """Remove ``node``; its outputs must be unused (redirect them first with replace_uses)."""
        for v in node.outputs:
            if v._uses or v in self.outputs:
                raise GraphError(f"cannot remove node {node.name!r}: output {v.name!r} is still used")
        self.take_out(node)

    def take_out(self, node: Node) -> int:
        """Remove ``node`` while its outputs pass to a replacement node (so they may still be read):
        drop its uses of its inputs and its place in the order; return that place."""
        index = self.nodes.index(node)
        node.detach()
        del self.nodes[index]
        return index

    def replace_uses(self, old: Value, new: Value) -> None:
        """Make every reader of ``old`` (and the graph outputs) read ``new`` instead."""
        for node, i in old.uses():
            node.set_input(i, new)
        self.outputs = [new if v is old else v for v in self.outputs]

    # -- queries --------------------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        yield from self.inputs
        yield from self.constants.values()
        for n in self.nodes:
            yield from n.outputs

    def value(self, name: str) -> Value:
        for v in self.values():
            if v.name == name:
                return v
        raise KeyError(name)

    def toposort(self) -> None:
        """Reorder ``nodes`` topologically (stable); raises GraphError on a cycle."""
        order, state = [], {}
        position = {id(n): i for i, n in enumerate(self.nodes)}
        for root in self.nodes:
            stack = [(root, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    state[id(node)] = 2
                    order.append(node)
                    continue
                if state.get(id(node)) == 2:
                    continue
                if state.get(id(node)) == 1:
                    raise GraphError(f"the graph has a cycle through node {node.name!r} ({node.op})")
                state[id(node)] = 1
                stack.append((node, True))
                preds = [v.producer() for v in node.inputs if v is not None and v.producer() is not None]
                for p in sorted(preds, key=lambda p: -position.get(id(p), 0)):
                    if id(p) not in position:
                        raise GraphError(f"node {node.name!r} reads a value of a node outside the graph")
                    if state.get(id(p)) != 2:
                        stack.append((p, False))
        self.nodes = order

    def verify(self) -> None:
        """Check SSA (one definition per name), that every input is defined before use, and types."""
        defined: set[int] = set()
        seen: set[str] = set()

        def define(v: Value, what: str) -> None:
            if v.name in seen:
                raise GraphError(f"value {v.name!r} is defined twice (second time by {what})")
            seen.add(v.name)
            defined.add(id(v))

        for v in self.inputs:
            define(v, "a graph input")
        for v in self.constants.values():
            if v.const is None:
                raise GraphError(f"constant {v.name!r} has no payload")
            define(v, "a constant")
        for node in self.nodes:
            for i, v in enumerate(node.inputs):
                if v is None:
                    continue
                if id(v) not in defined:
                    raise GraphError(f"node {node.name!r} ({node.op}) reads {v.name!r} before it is defined")
                if (node, i) not in v._uses:
                    raise GraphError(f"use list of {v.name!r} misses node {node.name!r}")
            for v in node.outputs:
                if v._producer is not node:
                    raise GraphError(f"value {v.name!r} does not name node {node.name!r} as its producer")
                define(v, f"node {node.name!r}")
        for v in self.outputs:
            if id(v) not in defined:
                raise GraphError(f"graph output {v.name!r} is not defined by anything")
        for v in self.values():
            if v.type is None:
                raise GraphError(f"value {v.name!r} has no type")

    # -- printing -------------------------------------------------------------------------------
    def __str__(self) -> str:
        lines = [f"graph {self.name}("]
        lines += [f"    %{v.name}: {v.type}," for v in self.inputs]
        lines.append(") {")
        for v in self.constants.values():
            lines.append(f"  %{v.name}: {v.type} = constant")
        for n in self.nodes:
            outs = ", ".join(f"%{v.name}: {v.type}" for v in n.outputs)
            ins = ", ".join("_" if v is None else f"%{v.name}" for v in n.inputs)
            attrs = ", ".join(f"{k}={_short(a)}" for k, a in sorted(n.attrs.items()))
            attrs = f" {{{attrs}}}" if attrs else ""
            lines.append(f"  {outs} = {n.op}({ins}){attrs}  # {n.name}")
        lines.append("  return " + ", ".join(f"%{v.name}" for v in self.outputs))
        lines.append("}")
        return "\n".join(lines)


def _short(a) -> str:
    if isinstance(a, np.ndarray):
        return f"tensor{list(a.shape)}" if a.size > 8 else repr(a.tolist())
    return repr(a)
