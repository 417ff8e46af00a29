"""Pad kernels (kernel kind ``pad``): constant, reflect, edge and wrap, with constant pads.

One thread per output element (grid-stride loop); on a GPU, a constant pad into a float16
channels-last output (the fp16 stem's RGB input padded to 8 channels) writes 8 channels per thread
(one 16-byte store).

As in the reference, negative pads crop first: along an axis of input size ``d`` with pads
``(b, e)``, the kept input range is ``[lo, lo + L)`` with
``lo = max(-b, 0)`` and ``L = d - lo - max(-e, 0)``; output coordinate ``c`` is position
``p = c - max(b, 0)`` of that range, mapped into ``[0, L)`` by the mode (numpy's, for any pad size)::

    constant  outside [0, L) the output is constant_value
    edge      p = min(max(p, 0), L - 1)
    wrap      p = p mod L
    reflect   p = p mod 2(L - 1), then 2(L - 1) - p where p >= L   (L == 1: p = 0)

then the input coordinate is ``x = lo + p``. Pads, axes and constant_value are baked.

Tactic space: threads per block.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import Node
from ..ops.schema import const_input, const_ints, has_input, shape_error
from ..ops.slicing import pad_widths
from .copy import DEFAULT, TACTICS, at, coords, loop_kernel
from .kernel import KernelSpec, TensorArg, convert, element_order, index_of, literal, runs_of_8
from .numba_env import simulated

__all__ = ["emit", "TACTICS", "DEFAULT"]


def _axis_lines(k: int, d: int, b: int, e: int, mode: str, c: str = "",
                x: str = "") -> tuple[list[str], list[str]]:
    """(lines setting ``x`` (default ``x<k>``), conditions for "inside the data" in constant mode) for
    one axis whose output coordinate is ``c`` (default ``c<k>``); no lines when the input coordinate
    is ``c`` itself."""
    c, x = c or f"c{k}", x or f"x{k}"
    lo, pb, pe = max(-b, 0), max(b, 0), max(e, 0)
    size = d - lo - max(-e, 0)
    p = f"({c} - {pb})" if pb else c
    add = f" + {lo}" if lo else ""
    if mode == "constant" or pb == pe == 0:
        shift = lo - pb
        conds = ([f"{x} >= {lo}"] if pb else []) + ([f"{x} < {lo + size}"] if pe else [])
        if shift == 0 and not conds:
            return [], []
        moved = f"{c} + {shift}" if shift > 0 else f"{c} - {-shift}" if shift else c
        return [f"{x} = {moved}"], conds
    if mode == "edge":
        return [f"{x} = min(max({p.strip('()')}, 0), {size - 1}){add}"], []
    if mode == "wrap":
        return [f"{x} = {p} % {size}{add}"], []
    if size == 1:
        return [f"{x} = {lo}"], []
    period = 2 * (size - 1)
    return [f"{x} = {p} % {period}", f"if {x} >= {size}:", f"    {x} = {period} - {x}"] + (
        [f"{x} += {lo}"] if lo else []), []


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    x, out = inputs[0], outputs[0]
    rank, mode = len(x.shape), node.attrs["mode"]
    pads, axes = const_ints(node, 1), const_ints(node, 3)
    value = const_input(node, 2)
    if pads is None or (axes is None and has_input(node, 3)) or (value is None and has_input(node, 2)):
        raise UnsupportedOpError([(node.name, "Pad with runtime pads/constant_value/axes")])
    widths = pad_widths(node, rank, pads, axes)
    for k, (d, (b, e)) in enumerate(zip(x.shape, widths)):
        if out.shape[k] != d + b + e:
            raise shape_error(node, f"padded axis {k} has {d + b + e} elements, output has {out.shape[k]}")
        if mode != "constant" and d + min(b, 0) + min(e, 0) <= 0 and (b > 0 or e > 0):
            raise shape_error(node, f"{mode} padding of axis {k}, which is empty after cropping")
    fill = np.asarray(0 if value is None else np.asarray(value).reshape(-1)[0]).astype(out.dtype)
    if mode == "constant" and runs_of_8(out) and not simulated():
        return _channel_runs(node, tactic, x, out, widths, mode, fill)
    lines, conds, xs = [], [], coords(rank)
    for k, (d, (b, e)) in enumerate(zip(x.shape, widths)):
        axis_lines, axis_conds = _axis_lines(k, d, b, e, mode)
        lines += axis_lines
        conds += axis_conds
        if axis_lines:
            xs[k] = f"x{k}"
    store, moved = at(out, coords(rank)), convert(at(x, xs), x.dtype, out.dtype)
    if conds:
        lines += [f"if {' and '.join(conds)}:", f"    {store} = {moved}",
                  "else:", f"    {store} = {literal(fill.item(), out.dtype)}"]
    else:
        lines.append(f"{store} = {moved}")
    return loop_kernel("pad", node, tactic, [out], [x], out.shape, lines)


def _channel_runs(node, tactic, x: TensorArg, out: TensorArg, widths, mode: str, fill) -> KernelSpec:
    """A float16 channels-last output written 8 channels (16 bytes) per thread: the other axes are
    mapped once, the channel axis per channel of the run; outside the data the value is ``fill``."""
    rank = len(x.shape)
    lines, conds, xs = ["c1 = c1 * 8  # the first of this thread's 8 channels"], [], coords(rank)
    for k, (d, (b, e)) in enumerate(zip(x.shape, widths)):
        if k != 1:
            axis_lines, axis_conds = _axis_lines(k, d, b, e, mode)
            lines, conds = lines + axis_lines, conds + axis_conds
            xs[k] = f"x{k}" if axis_lines else xs[k]
    values = []
    for j in range(8):
        chan, src = f"ch{j}", f"xc{j}"
        axis_lines, axis_conds = _axis_lines(1, x.shape[1], *widths[1], mode, c=chan, x=src)
        at_j = xs[:1] + [src if axis_lines else chan] + xs[2:]
        lines += [f"{chan} = c1 + {j}"] + axis_lines + [f"v{j} = {literal(float(fill), 'float32')}"]
        load = f"v{j} = {convert(at(x, at_j), x.dtype, 'float32')}"
        inside = conds + axis_conds
        lines += [f"if {' and '.join(inside)}:", f"    {load}"] if inside else [load]
        values.append(f"v{j}")
    words = ", ".join(f"pack_f16({values[j]}, {values[j + 1]})" for j in range(0, 8, 2))
    lines.append(f"st_v4({out.param}, {index_of(out, out.shape, coords(rank))}, {words})")
    runs = (out.shape[0], out.shape[1] // 8) + tuple(out.shape[2:])
    return loop_kernel("pad", node, tactic, [out], [x], runs, lines, order=element_order(out))

