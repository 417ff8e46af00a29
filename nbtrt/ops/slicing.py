"""Schemas of Concat, Split, Slice and Pad, and the index arithmetic their kernels share.

- ``Concat(x0, x1, ...){axis}``: same rank and dtype, equal dims except along ``axis``.
- ``Split(input, split?){axis=0, num_outputs}``: ``split`` lists the output sizes (they sum to the dim);
  without it the dim is cut into ``len(outputs)`` chunks of ``ceil(dim / n)``, the last one smaller.
- ``Slice(data, starts, ends, axes?, steps?)``: per listed axis, a negative start/end counts from the
  back; then for ``step > 0`` both clamp to ``[0, dim]``, for ``step < 0`` start clamps to
  ``[0, dim-1]`` and end to ``[-1, dim-1]`` (-1: before the first element); the length is
  ``max(0, ceil((end - start) / step))``.
- ``Pad(data, pads, constant_value?, axes?){mode}``: ``pads = [b_0.., e_0..]`` for the listed axes (all by
  default); a negative pad crops. ``mode``: constant, reflect, edge, wrap.
"""

from __future__ import annotations

import math

from ..ir import Dim, Node, TensorType
from .reshape import norm_axes, unknown_dims
from .schema import (REQUIRED, OpSchema, attr_error, const_ints, has_input, in_type, norm_axis, same_dim,
                     shape_error)

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _merge_dim(a: Dim, b: Dim) -> Dim:
    """The better known of two dims that may be equal."""
    if isinstance(a, int) or b is None:
        return a
    if isinstance(b, int) or a is None:
        return b
    return a


def _infer_concat(node: Node) -> list[TensorType]:
    types = [v.type for v in node.inputs]
    dtype = types[0].dtype
    for v in node.inputs:
        if v.type.dtype != dtype:
            raise shape_error(node, f"inputs mix dtypes {dtype} and {v.type.dtype} ({v.name!r})")
    known = [t.shape for t in types if t.shape is not None]
    if not known:
        return [unknown_dims(dtype, None)]
    rank = len(known[0])
    if any(len(s) != rank for s in known):
        raise shape_error(node, f"inputs have different ranks: {[list(s) for s in known]}")
    axis = norm_axis(node, node.attrs["axis"], rank)
    out = list(known[0])
    for s in known[1:]:
        for k in range(rank):
            if k != axis and not same_dim(out[k], s[k]):
                raise shape_error(node, f"inputs {list(known[0])} and {list(s)} differ in dim {k}, "
                                  f"which is not the concat axis {axis}")
            out[k] = _merge_dim(out[k], s[k])
    sizes = [None if t.shape is None else t.shape[axis] for t in types]
    out[axis] = sum(sizes) if all(isinstance(d, int) for d in sizes) else None
    return [TensorType(dtype, tuple(out))]


def split_sizes(node: Node, dim: int, split: list[int] | None) -> list[int]:
    """The sizes of Split's outputs along a static dim."""
    n = len(node.outputs)
    if split is not None:
        if len(split) != n:
            raise shape_error(node, f"split {split} has {len(split)} entries for {n} outputs")
        if any(s < 0 for s in split) or sum(split) != dim:
            raise shape_error(node, f"split {split} does not add up to the dim size {dim}")
        return split
    chunk = -(-dim // n)
    sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    if sizes[-1] < 0:
        raise shape_error(node, f"cannot split a dim of size {dim} into {n} outputs")
    return sizes


def _infer_split(node: Node) -> list[TensorType]:
    data = in_type(node)
    n = len(node.outputs)
    num_outputs = node.attrs["num_outputs"]
    if num_outputs is not None and (has_input(node, 1) or num_outputs != n):
        raise attr_error(node, f"num_outputs={num_outputs} needs no split input and {num_outputs} "
                         f"outputs (the node has {n})")
    if data.shape is None:
        return [unknown_dims(data.dtype, None)] * n
    axis = norm_axis(node, node.attrs["axis"], len(data.shape))
    dim = data.shape[axis]
    split = const_ints(node, 1)
    if not isinstance(dim, int):
        sizes = split if split is not None and len(split) == n else [None] * n
    elif has_input(node, 1) and split is None:
        sizes = [None] * n
    else:
        sizes = split_sizes(node, dim, split)
    return [TensorType(data.dtype, data.shape[:axis] + (s,) + data.shape[axis + 1:]) for s in sizes]


def slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """ONNX's clamped (start, end, length) of one sliced axis of static size ``dim``."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, end, max(0, math.ceil((end - start) / step))


def slice_params(node: Node, rank: int, starts, ends, axes, steps) -> list[tuple[int, int, int, int]]:
    """Validated (axis, start, end, step) per sliced axis; the arguments are lists of ints or None."""
    if len(starts) != len(ends):
        raise shape_error(node, f"starts {starts} and ends {ends} differ in length")
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(axes) == len(steps) == len(starts):
        raise shape_error(node, f"starts, ends, axes {axes} and steps {steps} differ in length")
    if 0 in steps:
        raise shape_error(node, f"steps {steps} contain 0")
    axes = norm_axes(node, axes, rank)
    return list(zip(axes, starts, ends, steps))


def _slice_dim(dim: Dim, start: int, end: int, step: int) -> Dim:
    if isinstance(dim, int):
        return slice_bounds(dim, start, end, step)[2]
    big = 2**31 - 1  # "to the end" in exported models: INT_MAX or INT64_MAX
    forward = step == 1 and (start == 0 or start <= -big) and end >= big
    backward = step == -1 and (start == -1 or start >= big) and end <= -big
    return dim if forward or backward else None


def _infer_slice(node: Node) -> list[TensorType]:
    data = in_type(node)
    if data.shape is None:
        return [unknown_dims(data.dtype, None)]
    starts, ends = const_ints(node, 1), const_ints(node, 2)
    axes, steps = const_ints(node, 3), const_ints(node, 4)
    if starts is None or ends is None or (has_input(node, 3) and axes is None) or \
            (has_input(node, 4) and steps is None):
        if axes is None:
            return [unknown_dims(data.dtype, len(data.shape))]
        sliced = set(norm_axes(node, axes, len(data.shape)))
        return [TensorType(data.dtype, tuple(None if k in sliced else d for k, d in enumerate(data.shape)))]
    out = list(data.shape)
    for axis, start, end, step in slice_params(node, len(out), starts, ends, axes, steps):
        out[axis] = _slice_dim(out[axis], start, end, step)
    return [TensorType(data.dtype, tuple(out))]


def pad_widths(node: Node, rank: int, pads: list[int], axes: list[int] | None) -> list[tuple[int, int]]:
    """Per-dim (begin, end) pads from ONNX's ``pads`` and ``axes``."""
    axes = list(range(rank)) if axes is None else norm_axes(node, axes, rank)
    if len(pads) != 2 * len(axes):
        raise shape_error(node, f"pads {pads} must hold 2 x {len(axes)} values")
    widths = [(0, 0)] * rank
    for i, a in enumerate(axes):
        widths[a] = (pads[i], pads[i + len(axes)])
    return widths


def _infer_pad(node: Node) -> list[TensorType]:
    data = in_type(node)
    if node.attrs["mode"] not in PAD_MODES:
        raise attr_error(node, f"mode {node.attrs['mode']!r} is not one of {', '.join(PAD_MODES)}")
    if data.shape is None:
        return [unknown_dims(data.dtype, None)]
    pads, axes = const_ints(node, 1), const_ints(node, 3)
    if pads is None or (has_input(node, 3) and axes is None):
        return [unknown_dims(data.dtype, len(data.shape))]
    out = []
    for d, (b, e) in zip(data.shape, pad_widths(node, len(data.shape), pads, axes)):
        if isinstance(d, int):
            if d + b + e < 0:
                raise shape_error(node, f"pads {pads} crop more than the dim size {d}")
            out.append(d + b + e)
        else:
            out.append(d if b == e == 0 else None)
    return [TensorType(data.dtype, tuple(out))]


SCHEMAS = {
    "Concat": OpSchema("Concat", _infer_concat, inputs=(1, None), attrs={"axis": REQUIRED}),
    "Split": OpSchema("Split", _infer_split, inputs=(1, 2), outputs=(1, 2**31 - 1),
                      attrs={"axis": 0, "num_outputs": None}),
    "Slice": OpSchema("Slice", _infer_slice, inputs=(3, 5)),
    "Pad": OpSchema("Pad", _infer_pad, inputs=(2, 4), attrs={"mode": "constant"}),
}
