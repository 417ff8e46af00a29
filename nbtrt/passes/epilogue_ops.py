"""Helpers shared by ``fuse_epilogue`` and ``fuse_elementwise``: which ops are element-wise, how an IR
node becomes a :class:`~nbtrt.groups.Step`, and the per-channel test for epilogue constants.

A :class:`ProgramBuilder` collects a group node's inputs and its program. Each IR value the program
computes is bound to an operand name (``acc``, ``s<j>``); any other value becomes a node input
``in<k>`` (an epilogue operand appears once however often the program reads it).

Per-channel constants. A constant ``c`` of an epilogue step broadcasts against the anchor's result of
shape ``S`` (rank r) with channel axis ``a`` (1 for conv and pool results, r − 1 for gemm results):
right-aligned, every dim of ``c`` except the one at ``a`` is 1 and that one is 1 or ``S[a]``. Such a
``c`` is rewritten to its canonical shape — ``()`` for a scalar, ``(S[a], 1, …, 1)`` with r − 1 − a
ones otherwise — which broadcasts identically, so ``acc ∘ c`` keeps shape ``S`` and its values.
"""

from __future__ import annotations

import numpy as np

from ..groups import Step
from ..ir import Graph, Node, Value
from ..ops.elementwise import SCHEMAS as ELEMENTWISE_SCHEMAS

ELEMENTWISE_OPS = frozenset(ELEMENTWISE_SCHEMAS)
# Unary activations an epilogue absorbs as they are (Clip, PRelu and SiLU are handled on their own).
ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Elu", "Selu",
                         "Softplus", "Gelu"})
# A Cast is "simple" between these types: one conversion per element, no strings or packed types.
SIMPLE_CAST_TYPES = frozenset({"float16", "float32", "float64", "int8", "uint8", "int16", "uint16",
                               "int32", "uint32", "int64", "uint64", "bool"})


def is_elementwise(node: Node) -> bool:
    """A plain ONNX element-wise op that an ``nbtrt.eltwise`` group may hold."""
    if node.domain not in ("", "ai.onnx") or node.op not in ELEMENTWISE_OPS:
        return False
    if node.op == "Cast":
        return node.inputs[0].type.dtype in SIMPLE_CAST_TYPES and node.attrs["to"] in SIMPLE_CAST_TYPES
    return True


def attrs_of(node: Node) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(node.attrs.items()))


class ProgramBuilder:
    """A group node's input list (the first ``n_base`` belong to the anchor op) and its program."""

    def __init__(self, graph: Graph, base_inputs, n_base: int):
        self.graph = graph
        self.inputs: list[Value] = list(base_inputs)
        self.n_base = n_base
        self.steps: list[Step] = []
        self.bound: dict[int, str] = {}

    def bind(self, value: Value, operand: str) -> None:
        self.bound[id(value)] = operand

    def operand(self, value: Value) -> str:
        if id(value) in self.bound:
            return self.bound[id(value)]
        for k in range(self.n_base, len(self.inputs)):
            if self.inputs[k] is value:
                return f"in{k}"
        self.inputs.append(value)
        return f"in{len(self.inputs) - 1}"

    def step(self, op: str, args, attrs=(), value: Value | None = None) -> str:
        """Append ``op(*args)``; bind ``value`` (the IR value it computes) to its result."""
        self.steps.append(Step(op, tuple(args), tuple(attrs)))
        name = f"s{len(self.steps) - 1}"
        if value is not None:
            self.bind(value, name)
        return name

    def program(self) -> tuple[Step, ...]:
        return tuple(self.steps)


def bound_constant(graph: Graph, dtype: str, upper: bool) -> Value:
    """The no-op Clip bound for ``dtype``: ±inf for floats, the type's limits for integers."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        v = np.inf if upper else -np.inf
    elif dt.kind == "b":
        v = upper
    else:
        v = np.iinfo(dt).max if upper else np.iinfo(dt).min
    name = f"clip_{'max' if upper else 'min'}_{dt.name}"
    known = graph.constants.get(name)
    if known is not None and known.const.shape == () and known.const.dtype == dt and known.const == v:
        return known
    return graph.add_constant(name, np.asarray(v, dtype=dt))


def node_step(prog: ProgramBuilder, node: Node, replace: dict | None = None) -> str:
    """Append ``node`` as one step (its inputs as operands, ``replace`` mapping ``id(value)`` to a
    substitute value); binds its output. A Clip's omitted bound becomes a no-op constant bound and a
    two-input Sum an Add, so that a step never has an empty operand."""
    replace = replace or {}
    args = []
    for i, v in enumerate(node.inputs):
        if v is None:  # only Clip has optional inputs among the element-wise ops
            v = bound_constant(prog.graph, node.inputs[0].type.dtype, upper=(i == 2))
        args.append(prog.operand(replace.get(id(v), v)))
    if node.op == "Clip":
        args += [prog.operand(bound_constant(prog.graph, node.inputs[0].type.dtype, upper=(i == 2)))
                 for i in range(len(args), 3)]
    op = "Add" if node.op == "Sum" and len(args) == 2 else node.op
    return prog.step(op, args, attrs_of(node), value=node.outputs[0])


def channel_shape(const_shape, out_shape, axis: int) -> tuple[int, ...] | None:
    """The canonical shape of a per-channel or scalar constant (module docstring), or None."""
    r = len(out_shape)
    if len(const_shape) > r:
        return None
    padded = (1,) * (r - len(const_shape)) + tuple(const_shape)
    if any(d != 1 for i, d in enumerate(padded) if i != axis):
        return None
    if all(d == 1 for d in padded):
        return ()
    if not isinstance(out_shape[axis], int) or padded[axis] != out_shape[axis]:
        return None
    return (out_shape[axis],) + (1,) * (r - 1 - axis)


def canonical_constant(graph: Graph, value: Value, shape: tuple[int, ...]) -> Value:
    """``value`` itself if it already has ``shape``, else a new constant reshaped to it."""
    if tuple(value.const.shape) == tuple(shape):
        return value
    return graph.add_constant(value.name + "_epilogue", value.const.reshape(shape))


def silu_pair(graph: Graph, value: Value) -> tuple[Node, Node] | None:
    """(Sigmoid, Mul) when ``value`` is read exactly by ``Sigmoid(value)`` and ``Mul`` of ``value`` with
    that Sigmoid's output (SiLU / Swish written as x · σ(x)), the Sigmoid's output read by nothing else."""
    uses = value.uses()
    if len(uses) != 2:
        return None
    nodes = {n.op: n for n, _ in uses}
    sig, mul = nodes.get("Sigmoid"), nodes.get("Mul")
    if sig is None or mul is None or sig.domain or mul.domain:
        return None
    s = sig.outputs[0]
    if any(o is s or o is value for o in graph.outputs):
        return None
    if [n for n, _ in s.uses()] != [mul] or set(map(id, mul.inputs)) != {id(value), id(s)}:
        return None
    return sig, mul
