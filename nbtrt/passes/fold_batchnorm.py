"""BatchNormalization at inference is a per-channel affine map, folded into the weights before it.

With the BN inputs scale γ, bias β, mean μ and variance σ² (per channel c, axis 1):

    BN(y) = (y − μ)·γ/√(σ² + ε) + β = y·s + t,     s = γ/√(σ² + ε),   t = β − μ·s

``fold_batchnorm`` (rule): when y is the output of a Conv / ConvTranspose / Gemm with weights W and
bias b (0 if absent), the BN disappears into them (see ``weights.py`` for the output-channel axis of
each op's W, ConvTranspose groups and Gemm's transB):

    W' = W·s,     b' = b·s + t = (b − μ)·s + β

It needs W and b to be constants read only by that producer (a shared constant is never mutated: the
folded node gets new constants) and y to be read only by the BN and not be a graph output. The folded
node keeps the producer's name and writes the BN's output value, so graph output names survive.

``batchnorm_to_scale_shift`` (rule): a BN that does not fold (after a Concat, a pool, a graph input, or
refused above) becomes ``Add(Mul(x, s), t)`` with s and t constants shaped [C, 1, ..., 1] to broadcast
over x; the nodes are named ``<bn>_scale`` and ``<bn>_shift`` and the Add writes the BN's output value.

Neither applies in training mode (batch statistics) or when γ, β, μ or σ² are not constants.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ops import infer_node
from .rules import Rule, apply_rule
from .weights import Fold, drop_constants, fold_into, foldable_producer, producer_refusal

NAME = "fold_batchnorm"


def scale_shift(bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) in float64, one entry per channel, with BN(y) = y·s + t."""
    gamma, beta, mean, var = (v.const.astype(np.float64).reshape(-1) for v in bn.inputs[1:5])
    s = gamma / np.sqrt(var + float(bn.attrs["epsilon"]))
    return s, beta - mean * s


def bn_refusal(bn: Node) -> str | None:
    """Why ``bn`` is no fixed affine map, or None."""
    if bn.attrs.get("training_mode"):
        return "training_mode: the BN uses batch statistics computed at run time"
    if len(bn.outputs) > 1:
        return "the BN outputs running mean/variance"
    if not all(v is not None and v.is_constant for v in bn.inputs[1:5]):
        return "BN parameters are not constant"
    return None


class FoldBatchNorm(Rule):
    name = "fold_batchnorm"

    def match(self, graph, node):
        if node.op != "BatchNormalization":
            return None
        producer = foldable_producer(node.inputs[0])
        return None if producer is None else Fold(producer, node)

    def check(self, graph, fold):
        reason = bn_refusal(fold.reader)
        return f"not folded: {reason}" if reason else producer_refusal(graph, fold.producer)

    def rewrite(self, graph, fold):
        fold_into(graph, fold, *scale_shift(fold.reader))


class BatchNormToScaleShift(Rule):
    name = "batchnorm_to_scale_shift"

    def match(self, graph, node):
        return node if node.op == "BatchNormalization" else None

    def involved(self, bn):
        return [bn]

    def check(self, graph, bn):
        reason = bn_refusal(bn)
        if reason is None and bn.inputs[0].type.rank is None:
            reason = "the rank of the BN input is unknown"
        return reason

    def rewrite(self, graph, bn):
        x, y = bn.inputs[0], bn.outputs[0]
        s, t = scale_shift(bn)
        shape = (-1,) + (1,) * (x.type.rank - 2)
        dtype = np.dtype(x.type.dtype)
        s_const = graph.add_constant(f"{bn.name}_scale_value", s.reshape(shape).astype(dtype))
        t_const = graph.add_constant(f"{bn.name}_shift_value", t.reshape(shape).astype(dtype))
        params = list(bn.inputs[1:])
        index = graph.take_out(bn)  # y moves to the Add below
        mul = graph.add_node("Mul", [x, s_const], name=f"{bn.name}_scale", index=index)
        infer_node(mul)
        add = graph.insert(Node("Add", [mul.outputs[0], t_const], [y], name=f"{bn.name}_shift"), index + 1)
        infer_node(add)
        drop_constants(graph, params)


def run(graph: Graph, config, report) -> None:
    apply_rule(graph, FoldBatchNorm(), report, NAME)
    apply_rule(graph, BatchNormToScaleShift(), report, NAME)
