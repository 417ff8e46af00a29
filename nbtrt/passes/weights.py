"""Folding a per-output-channel affine map ``y·m + a`` into the weights and bias of the node that
produces ``y`` (Conv, ConvTranspose, Gemm); shared by ``fold_batchnorm`` and ``fold_affine``.

For every output channel o:   (W ⊛ x + b)[o]·m[o] + a[o]  =  ((W·m) ⊛ x)[o] + (b[o]·m[o] + a[o])

so ``W' = W·m`` (scaled along the output-channel axis of W) and ``b' = b·m + a`` (``b = 0`` if absent).
Where the output channels sit in W:

  Conv            W [M, C/g, k...]     axis 0
  ConvTranspose   W [C, M/g, k...]     output channel o = j·(M/g) + i reads W[j·C/g : (j+1)·C/g, i]:
                                       view W as [g, C/g, M/g, k...] and scale by m viewed [g, 1, M/g, 1...]
  Gemm            Y = α·A'·B' + β·C    B' = B [K, N] (transB=0: scale columns) or Bᵀ with B [N, K]
                                       (transB=1: scale rows); C' = β·C·m + a with beta' = 1
                                       (C keeps its broadcast shape, widened by m and a where needed)

Arithmetic is done in float64 and rounded once to the weights' dtype. Shared constants are never
mutated: the folded node gets new constants, the old ones are dropped once nothing reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Node, Value
from ..ops import infer_node
from .rules import is_output

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


@dataclass(frozen=True)
class Fold:
    """A candidate: ``reader`` (a BatchNormalization, Mul, Add, ...) is folded into ``producer``."""

    producer: Node
    reader: Node

    @property
    def nodes(self) -> list[Node]:
        return [self.producer, self.reader]


def foldable_producer(value: Value | None) -> Node | None:
    """The Conv/ConvTranspose/Gemm (plain ONNX op) producing ``value``, or None."""
    node = None if value is None else value.producer()
    if node is None or node.op not in FOLDABLE or node.domain not in ("", "ai.onnx"):
        return None
    return node


def out_channels(node: Node) -> int:
    w = node.inputs[1].const
    if node.op == "Conv":
        return int(w.shape[0])
    if node.op == "ConvTranspose":
        return int(w.shape[1]) * int(node.attrs["group"])
    return int(w.shape[0] if node.attrs["transB"] else w.shape[1])


def producer_refusal(graph: Graph, node: Node) -> str | None:
    """Why the weights of ``node`` cannot absorb an affine map applied to its output, or None."""
    y, op = node.outputs[0], node.op
    if is_output(graph, y):
        return f"not folded: {op} output is also a graph output"
    if len(y.uses()) != 1:
        return f"not folded: {op} output read by other nodes"
    if not np.issubdtype(np.dtype(y.type.dtype), np.floating):
        return f"not folded: {op} computes in {y.type.dtype}, not a float type"
    for i, what, verb in ((1, "weights", "are"), (2, "bias", "is")):
        v = node.inputs[i] if len(node.inputs) > i else None
        if v is None:
            continue
        if not v.is_constant:
            return f"not folded: {what} {verb} not constant"
        if len(v.uses()) != 1 or is_output(graph, v):
            return f"not folded: {what} shared with another node"
    return None


def scale_weights(node: Node, w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``W·m`` along the output-channel axis of ``node``'s weights (``m``: one entry per channel)."""
    w64 = w.astype(np.float64)
    if node.op == "Conv":
        out = w64 * m.reshape((-1,) + (1,) * (w.ndim - 1))
    elif node.op == "ConvTranspose":
        g = int(node.attrs["group"])
        c, mg = w.shape[:2]
        view = w64.reshape((g, c // g, mg) + w.shape[2:])
        out = (view * m.reshape((g, 1, mg) + (1,) * (w.ndim - 2))).reshape(w.shape)
    elif node.attrs["transB"]:
        out = w64 * m[:, None]
    else:
        out = w64 * m[None, :]
    return out.astype(w.dtype)


def scaled_bias(node: Node, m: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``b·m + a`` (Gemm: ``β·C·m + a``), in the dtype of the node's output."""
    b = node.inputs[2] if len(node.inputs) > 2 else None
    dtype = np.dtype(node.outputs[0].type.dtype)
    if b is None:
        return a.astype(dtype)
    b64 = b.const.astype(np.float64)
    if node.op == "Gemm":
        b64 = b64 * float(node.attrs["beta"])
    return (b64 * m + a).astype(dtype)


def fold_into(graph: Graph, fold: Fold, m: np.ndarray, a: np.ndarray) -> Node:
    """Replace ``fold.producer`` and ``fold.reader`` by one node of the producer's op, with weights
    ``W·m`` and bias ``b·m + a``, that writes the reader's output value (so its name survives)."""
    node, reader = fold.producer, fold.reader
    m = np.asarray(m, np.float64).reshape(-1)
    a = np.asarray(a, np.float64).reshape(-1)
    old = [v for v in node.inputs[1:] if v is not None]
    w = node.inputs[1]
    new_w = graph.add_constant(f"{w.name}_folded", scale_weights(node, w.const, m))
    new_b = graph.add_constant(f"{node.name}_bias_folded", scaled_bias(node, m, a))
    attrs = dict(node.attrs)
    if node.op == "Gemm":
        attrs["beta"] = 1.0
    out = reader.outputs[0]
    new = Node(node.op, [node.inputs[0], new_w, new_b], [out], attrs, name=node.name, domain=node.domain)
    graph.insert(new, graph.nodes.index(node))
    reader_inputs = [v for v in reader.inputs if v is not None]
    graph.take_out(reader)  # the reader's output now belongs to ``new``
    graph.remove_node(node)
    infer_node(new)
    drop_constants(graph, old + reader_inputs)
    return new


def drop_constants(graph: Graph, values) -> None:
    """Remove the constants among ``values`` that nothing reads any more."""
    for v in values:
        if v.is_constant and not v.uses() and not is_output(graph, v) and graph.constants.get(v.name) is v:
            del graph.constants[v.name]


__all__ = ["FOLDABLE", "Fold", "foldable_producer", "out_channels", "producer_refusal", "scale_weights",
           "scaled_bias", "fold_into", "drop_constants"]
