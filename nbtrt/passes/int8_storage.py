"""INT8 storage: which activations of an int8 build are stored as int8 between kernels. A helper of
``passes/precision.py`` and ``passes/int8.py`` (not a pipeline pass of its own).

An int8 kernel quantizes its input X with the input's scale s (``q = clip(rint(x / s), -127, 127)``,
``codegen/int8.py``). When X's producer can do that in its epilogue instead, X is stored as int8:
half the bytes of float16, quantized once, and the tensor-core int8 kernel (whose 16-byte copies
move bytes and cannot quantize) can read it.

Values are decided in *groups* that must be stored alike:

- a max pool without an epilogue passes int8 through (input 0 and output in one group): max
  commutes with quantization (a monotone map), ``max q(x) = q(max x)``, so it pools the integers;
- an in-place concat (``eliminate_concat.py``) joins its inputs and its output (one buffer).

A group is stored as int8 with scale s when

- every value in it is a float activation, no graph output, and made by a conv kernel (fp16 or int8
  math; the epilogue quantizes: attribute ``out_scales``, one entry per output), by a SpaceToDepth
  (the edge copy of ``space_to_depth.py``, which quantizes the same way) or by the group's own max
  pools and concats;
- every read of a value in it is by the group's max pools and concats, by an int8 conv/gemm as its
  input 0 (once), or by a conv kernel's epilogue (a residual: input 2 or later, once), which
  dequantizes it, ``float32(q) · s`` (attribute ``in_scales``: s per input, None for the others).

s is the largest of the int8 readers' calibrated input scales (through a max pool the input's and the
output's calibrations differ; the largest clips none of them), and every reader takes it as its
input scale (``int8.assign``); a group only residuals read takes its values' own calibrated scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..groups import is_group, kernel_kind
from ..ir import Graph, Node, TensorType, Value
from .rules import is_output

FLOATS = ("float16", "float32")
QUANTIZERS = ("conv", "space_to_depth")  # kernels that can quantize what they store (``out_scales``)


@dataclass
class Group:
    values: list[Value]
    scale: float


def passes_through(node: Node, index: int) -> bool:
    """Whether ``node`` carries its input ``index`` over to int8 unchanged: a max pool with no epilogue
    (input 0), or an in-place concat (any input)."""
    if node.op == "Concat" and node.attrs.get("in_place"):
        return True
    if kernel_kind(node) != "pool" or index != 0 or len(node.outputs) != 1:
        return False
    base, programs = (node.attrs["base"], tuple(node.attrs["epilogues"])) if is_group(node) else (node.op, ((),))
    return base in ("MaxPool", "GlobalMaxPool") and programs == ((),)


def groups(graph: Graph, labels: dict, scales: dict) -> list[Group]:
    """The groups of values to store as int8, given the kernels' precision ``labels`` (id(node) ->
    (precision, why)) and the activation ``scales`` (value name -> s)."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.get(i, i) != i:
            i = parent[i]
        return i

    values = {id(v): v for v in graph.values()}
    for node in graph.nodes:
        for i, x in enumerate(node.inputs):
            if x is not None and passes_through(node, i):
                parent[find(id(x))] = find(id(node.outputs[0]))
    members: dict[int, list[Value]] = {}
    for i, v in values.items():
        members.setdefault(find(i), []).append(v)
    found = []
    for vs in members.values():
        scale = _scale(graph, vs, labels, scales)
        if scale is not None:
            found.append(Group(vs, scale))
    return found


def _scale(graph: Graph, vs: list[Value], labels: dict, scales: dict) -> float | None:
    """The group's scale: the largest input scale of its int8 readers (they may differ through a max
    pool; the largest clips none of them); without any, the largest calibrated scale of the values
    residuals read; None when the group cannot be int8."""
    ids, found, residual = {id(v) for v in vs}, set(), set()
    for v in vs:
        p = v.producer()
        if v.is_constant or v.type.dtype not in FLOATS or is_output(graph, v) or p is None:
            return None
        through = any(passes_through(p, i) and id(x) in ids for i, x in enumerate(p.inputs) if x is not None)
        if not through and not (kernel_kind(p) in QUANTIZERS and labels.get(id(p), (None,))[0] in ("fp16", "int8")):
            return None
        for r, i in v.uses():
            if passes_through(r, i) and id(r.outputs[0]) in ids:
                continue
            if _residual(r, i, v):
                residual.add(scales.get(v.name))
                continue
            if i != 0 or labels.get(id(r), (None,))[0] != "int8" or sum(x is v for x in r.inputs) != 1:
                return None
            found.add(float(r.attrs.get("int8_scale", scales[v.name])))
    if found:
        return max(found)
    return max(residual) if residual and None not in residual else None


def _residual(node: Node, index: int, v: Value) -> bool:
    """Whether ``v`` is read once by a conv kernel's epilogue (input 2 or later: not X, not W)."""
    return kernel_kind(node) == "conv" and index >= 2 and sum(x is v for x in node.inputs) == 1


def store(graph: Graph, labels: dict, scales: dict) -> list[Node]:
    """Make the groups' values int8 tensors, give their producers (convs, SpaceToDepths) ``out_scales`` (the scale of
    each int8 output, None for the others); return the kernels that now write int8."""
    writers: list[Node] = []
    for group in groups(graph, labels, scales):
        for v in group.values:
            v.type = TensorType("int8", v.type.shape)
            p = v.producer()
            if kernel_kind(p) in QUANTIZERS:
                out = p.attrs.setdefault("out_scales", [None] * len(p.outputs))
                out[next(k for k, o in enumerate(p.outputs) if o is v)] = group.scale
            if kernel_kind(p) is not None and all(w is not p for w in writers):
                writers.append(p)
            for r, i in v.uses():
                if _residual(r, i, v):
                    r.attrs.setdefault("in_scales", [None] * len(r.inputs))[i] = group.scale
    return writers
