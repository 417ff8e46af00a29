"""Explicit quantization: the Q/DQ nodes of an ONNX QDQ model become scales the int8 build reuses.

ONNX QDQ models (``onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ)``) say
where and how to quantize with ``QuantizeLinear`` (``q = saturate(round_half_even(x / s) + zp)``) and
``DequantizeLinear`` (``x' = (q - zp) * s``) nodes. Two patterns are folded:

- **activation pair** ``x -> QuantizeLinear(s, zp) -> DequantizeLinear(s, zp) -> readers``: the readers
  read the float ``x`` itself and ``graph.quant_scales[x.name] = s``. The scale must be per-tensor and
  symmetric: an int8 zero point 0, or uint8 with zero point 128 (``q_u8 = q_i8 + 128``, the same
  values). The float graph then drops the activation rounding: ``|x' - x| <= s/2`` inside
  ``[-128 s, 127 s]``, and values outside that range are no longer clipped; an int8 engine quantizes
  ``x`` with exactly ``s`` again. A pair whose DQ output is a graph output keeps that name (``x`` is
  renamed, or an Identity copies ``x`` when ``x`` is itself a graph input or output).
- **weight** ``DequantizeLinear(W_q, s_w, zp)`` with a constant ``W_q`` (int8, uint8 with zero point
  128, or an int32 bias with zero point 0), per-tensor or per-axis: it becomes the float constant
  ``(W_q - zp) * s_w`` (exact: the values the quantized model means) of the DQ output's name, and
  ``graph.weight_scales[name] = s_w`` shaped to broadcast against the weight (the axis dim, 1
  elsewhere; shape () per tensor), so ``rint(W / weight_scales[name])`` gives back the integers.
  ``QuantizeLinear`` of a constant (float weights kept beside their Q/DQ pair) is evaluated first.

A weight whose quantization an int8 kernel cannot reuse (asymmetric, blocked, int4, float8, ...) is
left to ``fold_constants``, which evaluates it exactly in float; the report says why and it gets no
weight scale. Anything else (asymmetric or per-axis activations, a requantizing pair with two scales, a
Q output read by a non-DQ node, a DQ of a non-constant tensor no Q produced) raises
:class:`UnsupportedOpError` naming every such node. Runs before ``fold_constants``, which would
otherwise evaluate the weight DQs and lose their scales and names. A graph without Q/DQ nodes is
untouched (both dicts exist, empty); a graph with them is marked ``graph.explicit_quantization``.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import Node, Value
from ..reference import run_node
from .rules import Rule, apply_rule, is_output

NAME = "fold_qdq"
QDQ = ("QuantizeLinear", "DequantizeLinear")
ZERO = {"int8": 0, "uint8": 128, "int32": 0}  # the zero point that makes each type symmetric


def run(graph, config, report) -> None:
    for attr in ("quant_scales", "weight_scales"):
        if not isinstance(getattr(graph, attr, None), dict):
            setattr(graph, attr, {})
    if not any(n.op in QDQ for n in graph.nodes):
        return
    graph.explicit_quantization = True  # the model says which kernels are int8 (passes/int8.py)
    apply_rule(graph, FoldWeight(), report, NAME)  # a refused weight stays for fold_constants (float)
    first = len(report.decisions)
    apply_rule(graph, FoldPair(), report, NAME)
    refused = [(d.nodes[0], d.reason) for d in report.decisions[first:] if not d.applied]
    named = {name for d in report.decisions[first:] if not d.applied for name in d.nodes}
    refused += [(n.name, "not part of a QuantizeLinear -> DequantizeLinear pair nor a constant weight")
                for n in graph.nodes if n.op in QDQ and n.name not in named and n not in _foldable(graph)]
    if refused:
        raise UnsupportedOpError([(name, f"explicit quantization: {why}") for name, why in refused])


def _foldable(graph) -> set[Node]:
    """The Q/DQ nodes fold_constants will evaluate: each input a constant or a foldable node's output."""
    nodes: set[Node] = set()
    for n in graph.nodes:
        if n.op in QDQ and all(v is None or v.is_constant or v.producer() in nodes for v in n.inputs):
            nodes.add(n)
    return nodes


def _const(node: Node, i: int) -> np.ndarray | int | None:
    """Input ``i`` of ``node`` as an array; None when absent, the int -1 when not a constant."""
    v = node.inputs[i] if i < len(node.inputs) else None
    return None if v is None else (v.const if v.is_constant else -1)


def _scale_reason(node: Node, dtype: str, per_axis: bool) -> str | None:
    """Why ``node``'s scale / zero point are not symmetric quantization of ``dtype``, or None."""
    scale, zp = _const(node, 1), _const(node, 2)
    if isinstance(scale, int) or isinstance(zp, int):
        return f"{node.op} with a scale or zero point computed at run time"
    if node.attrs["block_size"]:
        return f"blocked quantization (block_size {node.attrs['block_size']})"
    if dtype not in ZERO:
        return f"{dtype} quantization (only int8, uint8 with zero point 128, int32 biases)"
    if not per_axis and scale.size != 1:
        return f"a per-axis activation scale ({scale.size} values); activations need one scale"
    zero = np.zeros(scale.shape, np.int64) if zp is None else zp.astype(np.int64)
    if np.any(zero != ZERO[dtype]):
        return f"asymmetric {dtype} zero point {np.unique(zero)[:4].tolist()} (need {ZERO[dtype]})"
    if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
        return "a scale that is not positive and finite"
    return None


class FoldWeight(Rule):
    """``DequantizeLinear`` / ``QuantizeLinear`` of a constant become constants (see module doc)."""

    name = "fold_qdq_weight"

    def match(self, graph, node):
        return node if node.op in QDQ and node.inputs[0].is_constant else None

    def involved(self, node):
        return [node]

    def check(self, graph, node):
        dtype = node.outputs[0].type.dtype if node.op == "QuantizeLinear" else node.inputs[0].type.dtype
        return _scale_reason(node, dtype, per_axis=True)

    def rewrite(self, graph, node):
        out = node.outputs[0]
        value = run_node(node, [None if v is None else v.const for v in node.inputs])[0]
        if node.op == "DequantizeLinear":
            graph.weight_scales[out.name] = _broadcast_scale(node)
        const = graph.add_constant(out.name + "_qdq", value)
        graph.replace_uses(out, const)
        graph.remove_node(node)
        del graph.constants[const.name]
        const.name = out.name  # the weight keeps the name readers and weight_scales know it by
        graph.constants[const.name] = const


def _broadcast_scale(node: Node) -> np.ndarray:
    scale, rank = np.asarray(node.inputs[1].const, np.float32), node.inputs[0].type.rank
    if scale.size == 1:
        return scale.reshape(())
    shape = [1] * rank
    shape[node.attrs["axis"] % rank] = scale.size
    return scale.reshape(shape)


class FoldPair(Rule):
    """``x -> QuantizeLinear -> DequantizeLinear`` pairs: readers read ``x`` (see module doc)."""

    name = "fold_qdq_pair"

    def match(self, graph, node):
        return node if node.op == "QuantizeLinear" and not node.inputs[0].is_constant else None

    def involved(self, node):
        return [node] + [n for n, _ in node.outputs[0].uses()]

    def check(self, graph, q):
        reason = _scale_reason(q, q.outputs[0].type.dtype, per_axis=False)
        if reason and reason.startswith("asymmetric"):
            return reason + ("; quantize activations symmetric int8 (onnxruntime: activation_type=QuantType."
                             "QInt8, extra_options={'ActivationSymmetric': True})")
        if reason:
            return reason
        x, scale, zp = q.inputs[0], _const(q, 1).item(), _zero_point(q)
        if is_output(graph, q.outputs[0]) or not q.outputs[0].uses():
            return "its quantized output is a graph output or unread"
        for dq, _ in q.outputs[0].uses():
            if dq.op != "DequantizeLinear" or _scale_reason(dq, q.outputs[0].type.dtype, per_axis=False):
                return f"its output is read by {dq.op} {dq.name!r}, not by a symmetric per-tensor DequantizeLinear"
            if _const(dq, 1).item() != scale or _zero_point(dq) != zp:
                return f"{dq.name!r} dequantizes with another scale or zero point (requantization)"
            if dq.outputs[0].type.dtype != x.type.dtype:
                return f"{dq.name!r} returns {dq.outputs[0].type.dtype}, the quantized tensor is {x.type.dtype}"
        known = graph.quant_scales.get(x.name)
        if known is not None and known != scale:
            return f"{x.name!r} is also quantized with scale {known}"
        return None

    def rewrite(self, graph, q):
        x = q.inputs[0]
        for dq, _ in q.outputs[0].uses():
            y = dq.outputs[0]
            if not is_output(graph, y):
                graph.replace_uses(y, x)
                graph.remove_node(dq)
            elif x.producer() is None or is_output(graph, x):
                _to_identity(graph, dq)
            else:
                graph.replace_uses(y, x)
                graph.remove_node(dq)
                _rename(graph, x, y.name)
        graph.quant_scales[x.name] = float(_const(q, 1).item())
        graph.remove_node(q)


def _zero_point(node: Node) -> int:
    zp = _const(node, 2)
    return 0 if zp is None else int(zp.item())


def _rename(graph, value: Value, name: str) -> None:
    """Give ``value`` the name of a graph output it now is (its scale, if any, follows it)."""
    if value.name in graph.quant_scales:
        graph.quant_scales[name] = graph.quant_scales.pop(value.name)
    graph._names.discard(value.name)
    value.name = name


def _to_identity(graph, dq: Node) -> None:
    """Replace ``dq`` by an Identity from the float tensor, keeping its output (a graph output)."""
    x, y = dq.inputs[0].producer().inputs[0], dq.outputs[0]
    index = graph.nodes.index(dq)
    dq.detach()
    graph.nodes.remove(dq)
    graph.insert(Node("Identity", [x], [y], name=dq.name), index)
