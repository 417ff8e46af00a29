"""Channels-last layouts: which tensors the memory plan stores NHWC, and which conv weights OHWI.

The IR and the reference stay logical (NCHW activations, OIHW weights); a layout is only a choice of
element strides in the memory plan (``memory.py``), which every kernel reads through its TensorArgs.
For a logical shape (N, C, H, W) channels-last strides are ``(H·W·C, 1, W·C, C)`` (physical NHWC);
for conv weights (O, I, KH, KW) the same formula gives ``(KH·KW·I, 1, KW·I, I)`` (physical OHWI: the
(kh, kw, c) elements of one output channel contiguous, c fastest).

The rule (``BuildConfig.memory_layout`` "nhwc": ``layout`` "nhwc", or "auto" for fp16 and int8 builds): a value is
channels-last when it is a non-constant 4-D float (or int8-stored, ``passes/int8_storage.py``) tensor
that is no graph input or output, no input or output of a plugin node (plugins get contiguous
tensors), and no input or output of a view
(Reshape, Flatten, ...) unless it is layout-neutral (the same strides either way, ignoring size-1 dims:
a [N, C, 1, 1] tensor). The inputs of an in-place Concat live in its output's buffer with the output's
strides, so a concat's output and inputs are channels-last together or not at all.

A conv weight (input 1 of a conv group, a constant) is OHWI when every use of it is as the weight of a
conv whose input is channels-last. Constants keep their logical values in the IR and in engine files;
``context.device_constant`` lays them out by these strides when they go to the device.
"""

from __future__ import annotations

from ..codegen.kernel import FLOATS, contiguous_strides, same_strides
from ..groups import VIEW_OPS, kernel_kind
from ..ir import Graph, Value


def channels_last_strides(shape) -> tuple[int, ...]:
    """Element strides of a 4-D tensor stored with axis 1 fastest, then axes 2, 3, with axis 0 outermost
    (NHWC for activations, OHWI for conv weights)."""
    _, c, h, w = (int(d) for d in shape)
    return (h * w * c, 1, w * c, c)


def neutral(v: Value) -> bool:
    """Whether ``v`` lies the same in memory channels-last or not (e.g. [N, C, 1, 1])."""
    shape = v.type.shape
    return same_strides(shape, channels_last_strides(shape), contiguous_strides(shape))


def plan_strides(graph: Graph, layout: str) -> dict[int, tuple[int, ...]]:
    """id(value) -> element strides for the values that are not row-major (``layout`` "nchw" or "nhwc")."""
    if layout != "nhwc":
        return {}
    last = _channels_last(graph)
    strides = {i: channels_last_strides(v.type.shape) for i, v in last.items()}
    strides.update((id(w), channels_last_strides(w.type.shape)) for w in _ohwi_weights(graph, last))
    return strides


def _channels_last(graph: Graph) -> dict[int, Value]:
    values = {id(v): v for v in graph.values()}
    fixed = {id(v) for v in list(graph.inputs) + list(graph.outputs)}
    for node in graph.nodes:
        touched = [v for v in list(node.inputs) + list(node.outputs) if v is not None]
        if kernel_kind(node) == "plugin":
            fixed.update(id(v) for v in touched)
        elif node.op in VIEW_OPS:
            fixed.update(id(v) for v in touched if not (_candidate(v) and neutral(v)))
    ok = {i for i, v in values.items() if i not in fixed and _candidate(v)}
    for group in _concat_groups(graph):
        if not all(id(v) in ok for v in group):
            ok.difference_update(id(v) for v in group)
    return {i: values[i] for i in ok}


def _candidate(v: Value) -> bool:
    t = v.type
    return not v.is_constant and t.is_static and len(t.shape) == 4 and (t.dtype in FLOATS or t.dtype == "int8")


def _concat_groups(graph: Graph) -> list[list[Value]]:
    """The values sharing one buffer through in-place concats (nested concats join one group)."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.get(i, i) != i:
            i = parent[i]
        return i

    members: dict[int, Value] = {}
    for node in graph.nodes:
        if node.op == "Concat" and node.attrs.get("in_place"):
            out = node.outputs[0]
            members[id(out)] = out
            for x in node.inputs:
                members[id(x)] = x
                parent[find(id(x))] = find(id(out))
    groups: dict[int, list[Value]] = {}
    for i, v in members.items():
        groups.setdefault(find(i), []).append(v)
    return list(groups.values())


def _ohwi_weights(graph: Graph, last: dict[int, Value]) -> list[Value]:
    """Constant conv weights all of whose uses are convs reading a channels-last input."""
    fits = lambda node, k: kernel_kind(node) == "conv" and k == 1 and id(node.inputs[0]) in last  # noqa: E731
    return [w for w in graph.constants.values()
            if len(w.type.shape or ()) == 4 and w.uses() and all(fits(node, k) for node, k in w.uses())]
