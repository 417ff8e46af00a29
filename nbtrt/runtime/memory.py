"""Memory plan: where every tensor lives, and one arena shared by liveness.

Aliasing first. A value's *root* is the buffer it lives in, at an element offset with element strides
(row-major, or channels-last where ``layout.py`` says so):
- a view (Reshape, Flatten, Squeeze, Unsqueeze, Identity) lives where its input lives;
- input i of an in-place Concat lives in the concat's buffer: offset ``o_i · inner`` along the axis,
  with the concat output's strides (its producer writes there directly).
Then placement. Each root that is no constant gets a lifetime, from the first node that writes any of
its aliases to the last node that reads one (graph inputs from the start, graph outputs to the end),
and roots are placed in one arena, largest first, each at the lowest 256-byte-aligned offset that no
root with an overlapping lifetime occupies. The arena's size is the peak; the sum of all activation
buffers is what an allocator without reuse would need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..codegen.kernel import contiguous_strides, same_strides
from ..errors import NbtrtError
from ..groups import VIEW_OPS
from ..ir import Graph, Value
from .layout import plan_strides

ALIGN = 256


@dataclass(frozen=True)
class Layout:
    """Where a value lives: its root value, element offset in the root and element strides."""

    root: Value
    offset: int
    strides: tuple[int, ...]


@dataclass
class MemoryPlan:
    layouts: dict[int, Layout]             # id(value) -> layout
    offsets: dict[int, int]                # id(root) -> byte offset in the arena (non-constant roots)
    roots: list[Value] = field(default_factory=list)
    arena_bytes: int = 0                   # peak activation memory
    total_bytes: int = 0                   # sum of every activation buffer

    def layout(self, v: Value) -> Layout:
        return self.layouts[id(v)]


def strided(flat: np.ndarray, layout: Layout, shape) -> np.ndarray:
    """A copy of the tensor that ``layout`` places in ``flat`` (its root buffer as a 1-D array)."""
    return np.lib.stride_tricks.as_strided(flat[layout.offset:], tuple(shape),
                                           [s * flat.itemsize for s in layout.strides]).copy()


def physical(array: np.ndarray, strides) -> np.ndarray:
    """The flat buffer that holds ``array`` at element ``strides`` (the inverse of :func:`strided`;
    e.g. a conv weight laid out OHWI for the device)."""
    array = np.asarray(array)
    if tuple(strides) == contiguous_strides(array.shape):
        return np.ascontiguousarray(array).reshape(-1)
    flat = np.empty(array.size, array.dtype)
    if array.size:
        np.lib.stride_tricks.as_strided(flat, array.shape, [s * flat.itemsize for s in strides])[...] = array
    return flat


def nbytes(v: Value) -> int:
    if not v.type.is_static:
        raise NbtrtError(f"tensor {v.name!r} has no static shape ({v.type}); build with fixed input shapes")
    return int(np.prod(v.type.shape, dtype=np.int64)) * np.dtype(v.type.dtype).itemsize


def _layouts(graph: Graph, layout: str) -> dict[int, Layout]:
    layouts: dict[int, Layout] = {}
    strides = plan_strides(graph, layout)

    def get(v: Value) -> Layout:
        return layouts.setdefault(id(v), Layout(v, 0, strides.get(id(v)) or contiguous_strides(v.type.shape)))

    for node in reversed(graph.nodes):
        if node.op == "Concat" and node.attrs.get("in_place"):
            out = get(node.outputs[0])
            shape = node.outputs[0].type.shape
            axis = node.attrs["axis"] % len(shape)
            start = 0
            for x in node.inputs:
                layouts[id(x)] = Layout(out.root, out.offset + start * out.strides[axis], out.strides)
                start += x.type.shape[axis]
    for node in graph.nodes:
        if node.op in VIEW_OPS:
            src = get(node.inputs[0])
            shape = node.inputs[0].type.shape
            if not same_strides(shape, src.strides, contiguous_strides(shape)):
                raise NbtrtError(f"view {node.name!r} ({node.op}) of a non-contiguous tensor")
            layouts[id(node.outputs[0])] = Layout(src.root, src.offset, contiguous_strides(node.outputs[0].type.shape))
    for v in graph.values():
        get(v)
    return layouts


def _lifetimes(graph: Graph, layouts: dict[int, Layout]) -> dict[int, list[int]]:
    """id(root) -> [first step that writes it, last step that reads it]."""
    end = len(graph.nodes)
    life: dict[int, list[int]] = {}

    def touch(v: Value, step: int) -> None:
        span = life.setdefault(id(layouts[id(v)].root), [step, step])
        span[0], span[1] = min(span[0], step), max(span[1], step)

    for v in graph.inputs:
        touch(v, -1)
    for step, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v is not None:
                touch(v, step)
        for v in node.outputs:
            touch(v, step)
    for v in graph.outputs:
        touch(v, end)
    return life


def plan_memory(graph: Graph, layout: str = "nchw") -> MemoryPlan:
    """The memory plan; ``layout`` "nhwc" stores activations channels-last where it may (``layout.py``)."""
    layouts = _layouts(graph, layout)
    life = _lifetimes(graph, layouts)
    roots = {id(l.root): l.root for l in layouts.values() if not l.root.is_constant and id(l.root) in life}
    order = sorted(roots.values(), key=lambda r: (-nbytes(r), life[id(r)][0]))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    offsets: dict[int, int] = {}
    for r in order:
        size = -(-nbytes(r) // ALIGN) * ALIGN
        first, last = life[id(r)]
        busy = sorted((o, e) for o, e, f, l in placed if f <= last and first <= l)
        offset = 0
        for o, e in busy:
            if offset + size <= o:
                break
            offset = max(offset, e)
        offsets[id(r)] = offset
        placed.append((offset, offset + size, first, last))
    peak = max((e for _, e, _, _ in placed), default=0)
    total = sum(nbytes(r) for r in roots.values())
    return MemoryPlan(layouts, offsets, list(roots.values()), peak, total)
