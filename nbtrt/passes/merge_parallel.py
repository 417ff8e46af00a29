"""Horizontal fusion: convs that read the same tensor with the same geometry become one wider conv.

Convs ``y_i = W_i * x`` (same kernel, strides, pads, dilations, group = 1, constant weights) compute
``[y_1 | ... | y_n] = [W_1; ...; W_n] * x``: one conv whose weights stack the W_i along the output
channels. The merged group keeps one output per original conv — output i is channel slice
``[sum(C_<i), sum(C_<i) + C_i)`` of the product — and each output keeps its own epilogue (bias,
activation), so every consumer reads its own tensor and nothing is copied. One rule merges any number
of convs: the readers of a tensor are grouped by the key of their attributes. Weights with int8 scales
(``graph.weight_scales``, from ``fold_qdq``) give the merged weight the concatenated per-channel scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Node
from .rules import Rule, apply_rule

NAME = "merge_parallel"


@dataclass
class Candidates:
    nodes: list[Node]


def _key(node: Node):
    """Mergeability key of a conv group, or None if it cannot be merged at all."""
    a = node.attrs
    if node.op != "nbtrt.conv" or a["base"] != "Conv" or a["base_attrs"].get("group", 1) != 1:
        return None
    w = node.inputs[1]
    if not w.is_constant:
        return None
    return (id(node.inputs[0]), repr(sorted(a["base_attrs"].items())), w.const.shape[1:], w.const.dtype.name)


class MergeParallelConvs(Rule):
    name = "merge_parallel_convs"

    def match(self, graph, node):
        key = _key(node)
        if key is None:
            return None
        peers = []
        for user, index in node.inputs[0].uses():
            if index == 0 and user not in peers and _key(user) == key:
                peers.append(user)
        if len(peers) < 2 or peers[0] is not node:
            return None  # matched once, at the first reader
        return Candidates(peers)

    def check(self, graph, match):
        for n in match.nodes:
            if any(not v.is_constant for v in n.inputs[n.attrs["n_base"]:]):
                return f"not merged: {n.name} has a non-constant epilogue operand (residual)"
            if len(n.inputs[1].uses()) > 1:
                return f"not merged: the weights of {n.name} are shared with another node"
        return None

    def rewrite(self, graph, match):
        parts = match.nodes
        first = parts[0]
        w = graph.add_constant(f"{first.name}_merged_W", np.concatenate([p.inputs[1].const for p in parts]))
        _merge_scales(graph, [p.inputs[1] for p in parts], w)
        inputs, epilogues, splits, sources, outputs = [first.inputs[0], w], [], [], [], []
        for p in parts:
            renumber = {f"in{k}": f"in{len(inputs) + k - 2}" for k in range(2, len(p.inputs))}
            inputs += list(p.inputs[2:])
            epilogues += [tuple(type(s)(s.op, tuple(renumber.get(a, a) for a in s.args), s.attrs) for s in prog)
                          for prog in p.attrs["epilogues"]]
            splits += list(p.attrs["splits"])
            sources += list(p.attrs["sources"])
            outputs += p.outputs
        attrs = dict(first.attrs, splits=tuple(splits), epilogues=tuple(epilogues), sources=tuple(sources))
        at = graph.nodes.index(first)
        for p in parts:
            graph.take_out(p)
        graph.insert(Node("nbtrt.conv", inputs, outputs, attrs, name="+".join(p.name for p in parts)), at)


def _merge_scales(graph, weights, merged) -> None:
    """Per-output-channel scales of ``merged`` when every part has per-tensor or axis-0 scales."""
    scales, channels = getattr(graph, "weight_scales", {}), []
    for w in weights:
        s = scales.get(w.name)
        if s is None or not (s.size == 1 or (s.ndim and s.shape[0] == s.size == w.const.shape[0])):
            return
        channels.append(np.broadcast_to(s.reshape(-1), (w.const.shape[0],)))
    scales[merged.name] = np.concatenate(channels).reshape((-1,) + (1,) * (merged.const.ndim - 1))


def run(graph, config, report) -> None:
    apply_rule(graph, MergeParallelConvs(), report, NAME)
