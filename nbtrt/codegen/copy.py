"""Data-movement kernels: Transpose, Concat, Split, Slice, Gather, Expand (kernel kind ``copy``).

One thread per element with a grid-stride loop, every element moved exactly once. The thread
unravels its flat index into coordinates ``c0..`` of the iteration space and maps them to the
coordinates ``x0..`` of the tensor on the other side; all shapes, strides and offsets are baked:

- Transpose   output coordinate ``k`` is input coordinate ``perm[k]``
- Concat      over the output; an ``if/elif`` on ``c<axis>`` picks the input, shifted by its offset
              (one kernel writes all inputs: the not-in-place case)
- Split       over the input; an ``if/elif`` on ``c<axis>`` picks the output it belongs to
- Slice       ``x = start + c * step`` on sliced axes, bounds clamped by ``ops.slicing.slice_bounds``
- Gather      ``x<axis> = indices[c<axis>..]``: constant indices are baked (normalized, range-checked),
              runtime ones are read from their tensor, negatives count from the back (then clamped)
- Expand      numpy broadcasting: the input's size-1 dims read index 0 (``kernel.index_of``)

An element moves from one float dtype to another (float32 <-> float16) by a conversion on the way.

Tactic space: threads per block.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import Node
from ..ops.reshape import norm_axes, transpose_perm
from ..ops.schema import const_input, const_ints, has_input, shape_error
from ..ops.slicing import slice_bounds, slice_params
from .kernel import (KernelSpec, TensorArg, contiguous_strides, convert, element_order, header, identifier, indent,
                     index_of, unravel)

TACTICS = [{"threads": t} for t in (128, 256, 512)]
DEFAULT = {"threads": 256}
MAX_BLOCKS = 132 * 32
BAKE_LIMIT = 64  # constant Gather indices up to this many are baked into the source


def coords(rank: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{k}" for k in range(rank)]


def at(arg: TensorArg, xs) -> str:
    """``arg`` indexed at its own coordinates ``xs`` (one per dim)."""
    return f"{arg.param}[{index_of(arg, arg.shape, xs)}]"


def loop_kernel(kind: str, node: Node, tactic: dict, outputs, inputs, shape, body: list[str],
                prelude: list[str] = (), order=None) -> KernelSpec:
    """A grid-stride kernel over ``shape``: ``body`` runs with ``i`` and ``c0..`` set per element.
    Parameters are ``outputs`` then ``inputs`` (TensorArgs the kernel touches); ``prelude`` holds
    module-level constants. Elements are enumerated in ``order`` (dims outermost first, as
    :func:`unravel` takes it), by default the memory order of the first tensor shaped like ``shape``
    (the output, or a Split's input)."""
    tactic = dict(tactic or DEFAULT)
    n = int(np.prod(shape, dtype=np.int64))
    name = f"{kind}_{identifier(node.name)}"
    args = list(outputs) + list(inputs)
    like = next((a for a in args if a.shape == tuple(shape)), None)
    params = [a.param for a in args]
    lines = header(kind, node, tactic, outputs, inputs) + list(prelude)
    lines += [f"def {name}({', '.join(params)}):",
              "    i = cuda.grid(1)",
              "    step = cuda.gridsize(1)",
              f"    while i < {n}:"]
    order = order if order is not None else like and element_order(like)
    lines += indent(unravel("i", shape, order=order) + body + ["i += step"], 2)
    threads = tactic["threads"]
    blocks = max(1, min(-(-n // threads), MAX_BLOCKS))
    return KernelSpec(name, "\n".join(lines) + "\n", params, (blocks, 1, 1), (threads, 1, 1),
                      [a.dtype for a in args], tactic)


def shifted(axis: int, offset: int, rank: int) -> tuple[list[str], list[str]]:
    """(line setting ``x<axis> = c<axis> - offset``, coordinates using it) — no line when offset is 0."""
    cs = coords(rank)
    if offset == 0:
        return [], cs
    return [f"x{axis} = c{axis} - {offset}"], cs[:axis] + [f"x{axis}"] + cs[axis + 1:]


def branches(axis: int, sizes: list[int], make) -> list[str]:
    """An ``if/elif/else`` chain on ``c<axis>`` over consecutive pieces of the given sizes; ``make(k,
    offset)`` gives the lines of piece ``k``. Empty pieces are skipped."""
    pieces, offset = [], 0
    for k, size in enumerate(sizes):
        if size:
            pieces.append((k, offset, offset + size))
        offset += size
    lines = []
    for j, (k, lo, hi) in enumerate(pieces):
        if len(pieces) > 1:
            lines.append("else:" if j == len(pieces) - 1 else f"{'if' if j == 0 else 'elif'} c{axis} < {hi}:")
        lines += indent(make(k, lo), 1 if len(pieces) > 1 else 0)
    return lines


def _transpose(node, out, ins):
    x = ins[0]
    perm = transpose_perm(node, len(x.shape))
    xs = [""] * len(perm)
    for k, p in enumerate(perm):
        xs[p] = f"c{k}"
    return [x], [f"{at(out, coords(len(perm)))} = {convert(at(x, xs), x.dtype, out.dtype)}"], ()


def _concat(node, out, ins):
    ins = [a for a in ins if a is not None]
    rank = len(out.shape)
    axis = norm_axes(node, [node.attrs["axis"]], rank)[0]

    def piece(k, offset):
        shift, xs = shifted(axis, offset, rank)
        return shift + [f"v = {convert(at(ins[k], xs), ins[k].dtype, out.dtype)}"]
    body = branches(axis, [a.shape[axis] for a in ins], piece)
    return ins, body + [f"{at(out, coords(rank))} = v"], ()


def _split(node, outs, x):
    rank = len(x.shape)
    axis = norm_axes(node, [node.attrs["axis"]], rank)[0]

    def piece(k, offset):
        shift, xs = shifted(axis, offset, rank)
        return shift + [f"{at(outs[k], xs)} = {convert('v', x.dtype, outs[k].dtype)}"]
    return [f"v = {at(x, coords(rank))}"] + branches(axis, [o.shape[axis] for o in outs], piece)


def _slice(node, out, ins):
    x, rank = ins[0], len(ins[0].shape)
    values = [const_ints(node, i) for i in range(1, 5)]
    if any(v is None and has_input(node, i + 1) for i, v in enumerate(values)):
        raise UnsupportedOpError([(node.name, "Slice with runtime starts/ends/axes/steps")])
    xs, lines = coords(rank), []
    for axis, start, end, step in slice_params(node, rank, *values):
        start, _, length = slice_bounds(x.shape[axis], start, end, step)
        if length != out.shape[axis]:
            raise shape_error(node, f"slice of axis {axis} has {length} elements, "
                              f"the output {out.shape[axis]}")
        c = f"c{axis}" if abs(step) == 1 else f"c{axis} * {abs(step)}"
        expr = f"{start} {'+' if step > 0 else '-'} {c}" if start or step < 0 else c
        if expr != f"c{axis}":
            lines.append(f"x{axis} = {expr}")
            xs[axis] = f"x{axis}"
    return [x], lines + [f"{at(out, coords(rank))} = {convert(at(x, xs), x.dtype, out.dtype)}"], ()


def _gather(node, out, ins):
    data, idx = ins[0], ins[1] if len(ins) > 1 else None
    axis = norm_axes(node, [node.attrs["axis"]], len(data.shape))[0]
    n = data.shape[axis]
    const = const_input(node, 1)
    q = np.ndim(const) if const is not None else len(idx.shape)
    cs = coords(len(out.shape))
    ics = cs[axis:axis + q]
    xs = cs[:axis] + [f"x{axis}"] + cs[axis + q:]
    prelude, used = (), [data]
    if const is not None and (const.size <= BAKE_LIMIT or idx is None):
        values = np.asarray(const, dtype=np.int64).reshape(-1)
        if values.size and (values.min() < -n or values.max() >= n):
            raise shape_error(node, f"indices out of range [-{n}, {n - 1}] for axis {axis}")
        values = np.where(values < 0, values + n, values)
        if q == 0:
            lines = [f"x{axis} = {int(values[0])}"]
        else:
            shape = np.shape(const)
            flat = " + ".join(c if s == 1 else f"{c} * {s}"
                              for c, s, d in zip(ics, contiguous_strides(shape), shape) if d != 1)
            baked = ", ".join(str(int(v)) for v in values) + ("," if values.size == 1 else "")
            prelude = [f"INDICES = ({baked})  # normalized indices along axis {axis}"]
            lines = [f"x{axis} = INDICES[{flat or '0'}]"]
    else:
        used.append(idx)
        lines = [f"x{axis} = int64({at(idx, ics)})",
                 f"if x{axis} < 0:",
                 f"    x{axis} += {n}",
                 f"x{axis} = min(max(x{axis}, 0), {n - 1})  # out of range is undefined: stay in bounds"]
    return used, lines + [f"{at(out, cs)} = {convert(at(data, xs), data.dtype, out.dtype)}"], prelude


def _expand(node, out, ins):
    x, cs = ins[0], coords(len(out.shape))
    return [x], [f"{at(out, cs)} = {convert(f'{x.param}[{index_of(x, out.shape, cs)}]', x.dtype, out.dtype)}"], ()


EMITTERS = {"Transpose": _transpose, "Concat": _concat, "Slice": _slice, "Gather": _gather, "Expand": _expand}


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    if node.op == "Split":
        x = inputs[0]
        return loop_kernel("copy", node, tactic, outputs, [x], x.shape, _split(node, outputs, x))
    if node.op not in EMITTERS:
        raise UnsupportedOpError([(node.name, f"{node.op} (no copy kernel template)")])
    out = outputs[0]
    used, body, prelude = EMITTERS[node.op](node, out, list(inputs))
    return loop_kernel("copy", node, tactic, [out], used, out.shape, body, prelude)
