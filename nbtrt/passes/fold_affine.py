"""Per-output-channel Mul / Add (and Sub, Div) by constants after a Conv / ConvTranspose / Gemm, folded
into its weights and bias: the "scale" form of BatchNormalization some exporters emit (Caffe2's
light_inception_v2 and light_densenet121 have Conv -> BN -> Mul(const) -> Add(const)).

Each such node is an affine map ``y·m + a`` of the producer's output y with, per channel c:

    Mul(y, k), Mul(k, y)   m = k,   a = 0          Sub(y, k)   m = 1,  a = −k
    Add(y, k), Add(k, y)   m = 1,   a = k          Sub(k, y)   m = −1, a = k
    Div(y, k)              m = 1/k, a = 0          (k without zeros)

and folds as ``W' = W·m``, ``b' = b·m + a`` (``weights.py`` has the per-op weight layouts). k must be
per output channel: after aligning it to y's rank it is 1 on every axis but the channel axis 1, where it
is 1 or the channel count (scalar, [C,1,1], [1,C,1,1]; [N] or [1,N] after a Gemm). The producer's
weights and bias must be constants read only by it, and y must be read only by this node and not be a
graph output. The folded node writes the Mul's (Add's) output value. Chains (Mul, Add, Mul, ...) fold
one link at a time in the same sweep: the nodes are in topological order and each fold leaves a
Conv/Gemm that the next link of the chain, visited later, folds into again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Value
from .rules import Rule, apply_rule
from .weights import Fold, fold_into, foldable_producer, out_channels, producer_refusal

NAME = "fold_affine"
OPS = ("Mul", "Add", "Sub", "Div")


@dataclass(frozen=True)
class AffineFold(Fold):
    const: Value = None
    const_first: bool = False


def channel_vector(k: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """The [channels] vector that ``k``, broadcast over an output of ``rank`` whose axis 1 holds the
    channels, stands for; None if ``k`` varies along another axis or would grow the output."""
    if k.ndim > rank:
        return None
    shape = (1,) * (rank - k.ndim) + k.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(k.astype(np.float64).reshape(-1), (channels,))


def affine_of(fold: AffineFold, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, a) with node(y) = y·m + a, given the per-channel vector ``k`` of the constant operand."""
    op = fold.reader.op
    one, zero = np.ones_like(k), np.zeros_like(k)
    if op == "Mul":
        return k, zero
    if op == "Add":
        return one, k
    if op == "Sub":
        return (-one, k) if fold.const_first else (one, -k)
    return 1.0 / k, zero


class FoldAffine(Rule):
    name = "fold_affine"

    def match(self, graph, node):
        if node.op not in OPS or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2:
            return None
        a, b = node.inputs
        for y, k, const_first in ((a, b, False), (b, a, True)):
            producer = foldable_producer(y)
            if producer is not None and k is not None and k.is_constant:
                if node.op == "Div" and const_first:
                    return None  # k / y is not affine in y
                return AffineFold(producer, node, k, const_first)
        return None

    def check(self, graph, fold):
        y, rank = fold.producer.outputs[0], fold.producer.outputs[0].type.rank
        if rank is None:
            return "not folded: the rank of the output is unknown"
        reason = producer_refusal(graph, fold.producer)
        if reason:
            return reason
        k = fold.const.const
        if k.dtype.name != y.type.dtype:
            return f"not folded: the constant is {k.dtype.name}, the output {y.type.dtype}"
        vec = channel_vector(k, rank, out_channels(fold.producer))
        if vec is None:
            return f"not folded: the constant {list(k.shape)} is not per output channel"
        if fold.reader.op == "Div" and not np.all(vec):
            return "not folded: the divisor has zeros"
        return None

    def rewrite(self, graph, fold):
        k = channel_vector(fold.const.const, fold.producer.outputs[0].type.rank, out_channels(fold.producer))
        fold_into(graph, fold, *affine_of(fold, k))


def run(graph: Graph, config, report) -> None:
    apply_rule(graph, FoldAffine(), report, NAME)
