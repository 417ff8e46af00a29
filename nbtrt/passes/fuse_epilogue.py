"""Epilogue fusion: every Conv, ConvTranspose, Gemm, MatMul and pool becomes a fused group
(``nbtrt.conv`` / ``conv_transpose`` / ``gemm`` / ``pool``) that also applies the element-wise ops
reading its result, so that the result is written once, already biased, activated and summed.

The anchor keeps only its core inputs (``n_base``): Conv/ConvTranspose X, W; Gemm and MatMul A, B;
a pool X. What it dropped becomes the first epilogue steps, with the same math:

    Conv(X, W, B)          = acc + B'              B' = B reshaped to [C, 1, …, 1] (output rank)
    Gemm(A, B, C; α, β)    = α·A'B' + (β·C)        β·C folded into one constant when C is constant;
                           = acc + Mul(C, β)        for a computed C with β ≠ 1 (just acc + C if β = 1)

Then, while the current result has exactly one reader (one use) and is no graph output, that reader
is absorbed when it is

- ``fuse_bias`` / ``fuse_scale_shift``: Add/Sub (bias, shift) or Mul/Div (scale) whose other operand is
  a per-channel or scalar constant (see ``epilogue_ops``); the operand order is kept, since
  ``c − acc ≠ acc − c`` and ``c / acc ≠ acc / c``;
- ``fuse_activation``: Relu, LeakyRelu, Sigmoid, Tanh, HardSwish, HardSigmoid, Elu, Selu, Softplus,
  Gelu, Clip with constant bounds (Relu6), PRelu with a per-channel or scalar constant slope, and SiLU
  written as ``x · Sigmoid(x)`` (the one case of two readers: the pair counts as one activation);
- ``fuse_residual``: Add (or two-input Sum) of a computed tensor of exactly the result's type (no
  broadcast, which would change the result's shape; symbolic dims must have the same name, unknown
  dims refuse), at most one per epilogue.

The group produces the last absorbed node's output value (graph output names and readers stay) and
takes that node's place in the node list: every input it reads is defined before it, since each
absorbed node read it. Chains are grown from the last anchor backwards, so that when two anchors reach
the same residual Add (ResNet's projection shortcut) the one computed later — next to the Add — takes
it. A MaxPool whose Indices output is read stays a plain op.
"""

from __future__ import annotations

import numpy as np

from ..groups import KIND_OF_BASE, group_attrs, group_op
from ..ir import Graph, Node, TensorType, Value
from ..report import BuildReport
from .epilogue_ops import (ACTIVATIONS, ProgramBuilder, canonical_constant, channel_shape, node_step,
                           silu_pair)
from .rules import is_output, other_input, remove_nodes

NAME = "fuse_epilogue"
BASE_OPS = frozenset(op for op in KIND_OF_BASE if op is not None)
N_BASE = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, "MatMul": 2}  # pools: 1
BINARY_RULES = {"Add": "fuse_bias", "Sub": "fuse_bias", "Sum": "fuse_bias", "Mul": "fuse_scale_shift",
                "Div": "fuse_scale_shift"}


def run(graph: Graph, config, report: BuildReport) -> None:
    """Plan the chains from the last anchor backwards, then build the groups in graph order (so that
    a tensor's readers keep their order in its use list)."""
    refused: set = set()
    claimed: set[int] = set()
    plans: list[tuple[Node, Chain | str]] = []
    for node in reversed([n for n in graph.nodes if n.op in BASE_OPS and not n.domain]):
        indices = node.outputs[1] if node.op == "MaxPool" and len(node.outputs) > 1 else None
        if indices is not None and (indices.uses() or is_output(graph, indices)):
            plans.append((node, "not grouped: the MaxPool Indices output is read"))
            continue
        chain = Chain(graph, node, refused, claimed)
        while chain.absorb_next():
            pass
        claimed.update(id(n) for n in chain.absorbed)
        plans.append((node, chain))
    for node, plan in reversed(plans):
        if isinstance(plan, str):
            report.decide(NAME, "form_group", [node.name], plan)
            continue
        for rule, nodes, reason in plan.decisions:
            report.decide(NAME, rule, nodes, reason)
        plan.build()


class Chain:
    """One anchor op and the readers absorbed into its epilogue so far."""

    def __init__(self, graph: Graph, base: Node, refused: set, claimed: set[int]):
        self.graph, self.base, self.refused, self.claimed = graph, base, refused, claimed
        self.decisions: list[tuple[str, list[str], str | None]] = []
        self.view: tuple[Value, Value, Value] | None = None  # (bias, shape, view of the bias)
        self.kind = KIND_OF_BASE[base.op]
        self.n_base = N_BASE.get(base.op, 1)
        self.cur: Value = base.outputs[0]
        rank = self.cur.type.rank or 0
        self.axis = 1 if self.kind in ("conv", "conv_transpose", "pool") else max(rank - 1, 0)
        self.absorbed: list[Node] = []
        self.residual: Node | None = None
        self.prog = ProgramBuilder(graph, base.inputs[:self.n_base], self.n_base)
        self.prog.bind(self.cur, "acc")
        if base.op in ("Conv", "ConvTranspose") and len(base.inputs) > 2 and base.inputs[2] is not None:
            self._conv_bias(base.inputs[2])
        elif base.op == "Gemm" and len(base.inputs) > 2 and base.inputs[2] is not None:
            self._gemm_c(base.inputs[2], float(base.attrs["beta"]))

    # -- the anchor's own bias ------------------------------------------------------------------
    def _conv_bias(self, b: Value) -> None:
        shape = (b.type.shape[0],) + (1,) * (self.cur.type.rank - 2)
        if b.is_constant:
            b = canonical_constant(self.graph, b, shape)
        else:  # a computed bias: a Reshape view of it with the broadcast shape, put before the group
            self.view = (b, self.graph.add_constant(b.name + "_shape", np.asarray(shape, np.int64)),
                         Value(self.graph.unique_name(b.name + "_bias"), TensorType(b.type.dtype, shape)))
            b = self.view[2]
        self.prog.step("Add", ("acc", self.prog.operand(b)), value=self.cur)

    def _gemm_c(self, c: Value, beta: float) -> None:
        if beta == 0:
            return
        if c.is_constant:
            scaled = c.const if beta == 1 else (beta * c.const).astype(c.const.dtype)
            shape = channel_shape(scaled.shape, self.cur.type.shape, self.axis)
            c = self.graph.add_constant(c.name + "_epilogue", scaled) if beta != 1 else c
            if shape is not None:
                c = canonical_constant(self.graph, c, shape)
            operand = self.prog.operand(c)
        elif beta == 1:
            operand = self.prog.operand(c)
        else:
            k = self.graph.add_constant(c.name + "_beta", np.asarray(beta, c.type.dtype))
            operand = self.prog.step("Mul", (self.prog.operand(c), self.prog.operand(k)))
        self.prog.step("Add", ("acc", operand), value=self.cur)

    # -- absorbing readers ----------------------------------------------------------------------
    def absorb_next(self) -> bool:
        """Absorb the current result's reader(s) if allowed; False when the chain ends here."""
        cur, graph = self.cur, self.graph
        readers = list(dict.fromkeys(n for n, _ in cur.uses()))
        pair = None if is_output(graph, cur) else silu_pair(graph, cur)
        if pair is not None and not any(id(n) in self.claimed for n in pair):
            for node in pair:
                node_step(self.prog, node)
            self._absorbed("fuse_activation", list(pair))
            return True
        if is_output(graph, cur) or len(cur.uses()) != 1:
            self._refuse_shared(readers)
            return False
        plan = None if id(readers[0]) in self.claimed else self._classify(readers[0])
        if plan is None:
            return False
        rule, reason, replace = plan
        if reason is not None:
            self._refuse(rule, readers[0], reason)
            return False
        node_step(self.prog, readers[0], {k: canonical_constant(graph, v, s) for k, (v, s) in replace.items()})
        if rule == "fuse_residual":
            self.residual = readers[0]
        self._absorbed(rule, readers[:1])
        return True

    def _classify(self, node: Node):
        """(rule, refusal reason or None, {id(constant): (constant, canonical shape)}) for a natural
        candidate reader, None for a reader that is none (a chain just ends there)."""
        if node.domain or (node.inputs[0] is not self.cur and node.op not in BINARY_RULES):
            return None
        if node.op in ACTIVATIONS:
            return "fuse_activation", None, {}
        if node.op == "Clip":
            ok = all(v is None or v.is_constant for v in node.inputs[1:])
            return "fuse_activation", None if ok else "not fused: Clip bounds are not constant", {}
        if node.op == "PRelu" and node.inputs[0] is self.cur and node.inputs[1] is not self.cur:
            return self._constant_operand("fuse_activation", node.inputs[1])
        binary = node.op in ("Add", "Sub", "Mul", "Div") or (node.op == "Sum" and len(node.inputs) == 2)
        other = other_input(node, self.cur) if binary else None
        if other is None or other is self.cur:
            return None
        if other.is_constant:
            return self._constant_operand(BINARY_RULES[node.op], other)
        return self._residual(node, other) if node.op in ("Add", "Sum") else None

    def _constant_operand(self, rule: str, c: Value):
        if not c.is_constant:
            return rule, f"not fused: operand {c.name!r} is not a constant", {}
        shape = channel_shape(c.const.shape, self.cur.type.shape, self.axis)
        if shape is None or c.type.dtype != self.cur.type.dtype:
            return rule, (f"not fused: constant {c.name!r} of shape {list(c.const.shape)} is neither "
                          f"per-channel nor scalar for {_shape(self.cur)}"), {}
        return rule, None, {id(c): (c, shape)}

    def _residual(self, node: Node, other: Value):
        if self.residual is not None:
            return "fuse_residual", "not fused: second residual", {}
        shape = other.type.shape
        if other.type != self.cur.type or shape is None or any(d is None for d in shape):
            return "fuse_residual", (f"not fused: residual shape {_shape(other)} differs from the "
                                     f"{self.kind} result {_shape(self.cur)}"), {}
        return "fuse_residual", None, {}

    def _absorbed(self, rule: str, nodes: list[Node]) -> None:
        self.absorbed += nodes
        self.cur = nodes[-1].outputs[0]
        self.decisions.append((rule, [self.base.name] + [n.name for n in nodes], None))

    def _refuse_shared(self, readers: list[Node]) -> None:
        """The result is a graph output or read more than once: refuse the first natural candidate."""
        for node in readers:
            plan = None if id(node) in self.claimed else self._classify(node)
            if plan is None:
                continue
            if is_output(self.graph, self.cur):
                why = f"not fused: {self.kind} output {self.cur.name!r} is a graph output"
            elif len(readers) == 1:
                why = f"not fused: {self.kind} output read twice by one node"
            else:
                why = f"not fused: {self.kind} output read by {len(readers)} nodes"
            self._refuse(plan[0], node, why)
            return

    def _refuse(self, rule: str, node: Node, reason: str) -> None:
        if (rule, id(node)) not in self.refused:
            self.refused.add((rule, id(node)))
            self.decisions.append((rule, [self.base.name, node.name], reason))

    # -- the group node -------------------------------------------------------------------------
    def splits(self) -> tuple[int, ...]:
        shape = self.base.outputs[0].type.shape
        if shape is None or len(shape) < 2 or not isinstance(shape[1], int):
            return ()
        return () if self.base.op == "MatMul" and len(shape) != 2 else (shape[1],)

    def build(self) -> None:
        nodes = [self.base] + self.absorbed
        attrs = group_attrs(self.base.op, self.base.attrs, self.n_base, self.splits(),
                            (self.prog.program(),), tuple(n.name for n in nodes))
        group = Node(group_op(self.base.op), self.prog.inputs, [self.cur], attrs, name=self.base.name)
        last = nodes[-1]
        index = self.graph.take_out(last)
        self.graph.insert(group, index)
        remove_nodes(self.graph, nodes[:-1])
        if self.view is not None:
            b, shape, out = self.view
            view = Node("Reshape", [b, shape], [out], {"allowzero": 0}, name=out.name)
            self.graph.insert(view, self.graph.nodes.index(group))


def _shape(v: Value) -> str:
    return "[?]" if v.type.shape is None else "[" + ",".join(str(d) for d in v.type.shape) + "]"
