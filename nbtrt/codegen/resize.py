"""Resize kernels (kernel kind ``resize``): nearest, linear and cubic over any set of axes.

One thread per output element (grid-stride loop). Scales or sizes (and the roi) must be constant; the
output sizes and per-axis scales come from ``ops.resize.resize_target``, exactly as the reference. For
each resized axis ``k`` the thread computes the source coordinate ``u<k>`` in float64 with the
reference's formula and operation order (``reference.resize.source_coords``), so nearest rounding and
extrapolation decisions agree bit for bit:

- nearest: ``x<k> = round(u<k>)`` by ``nearest_mode``, clamped to ``[0, n-1]``; the element is copied.
- linear / cubic: ``b<k> = ceil(u<k>) - 1``, ``r<k> = u<k> - b<k>``; taps ``b<k> + j`` for ``j`` in the
  reference's offset range weigh ``kernel((j - r<k>) * a)`` (triangle or Keys cubic, ``a = min(s, 1)``
  with antialias, else 1), taps outside ``[0, n-1]`` read the edge pixel or, with ``exclude_outside``,
  weigh 0; with antialias or exclude_outside each axis's weights are divided by their sum. The weights
  are separable: nested loops over the resized axes accumulate ``w0 * w1 * ... * x[...]`` (float32,
  float64 for float64 and integer data; integers round half to even and saturate).
- tf_crop_and_resize: an element whose ``u<k>`` lies outside ``[0, n-1]`` on any axis is
  extrapolation_value.

Axes the reference skips (same size, scale ~1, trivial roi) are copied.

Tactic space: threads per block.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import Node
from ..ops.resize import given, resize_axes, resize_target
from ..ops.schema import const_input, has_input, shape_error
from ..reference.resize import _cast_back, _full_roi, _values
from .copy import DEFAULT, TACTICS, at, coords, loop_kernel
from .kernel import KernelSpec, TensorArg, convert, literal

__all__ = ["emit", "TACTICS", "DEFAULT"]


def f64(v) -> str:
    return literal(v, "float64")


def coordinate(node: Node, k: int, n: int, m: int, s: float, roi) -> str:
    """The float64 source-coordinate expression for output index ``c<k>`` (as source_coords)."""
    mode = node.attrs["coordinate_transformation_mode"]
    y, m_float = f"float64(c{k})", s * n
    half = f"({y} + {f64(0.5)}) / {f64(s)} - {f64(0.5)}"
    if mode == "half_pixel" or (mode == "pytorch_half_pixel" and m_float != 1):
        return half
    if mode == "half_pixel_symmetric":
        return f"{f64(n / 2 * (1 - m / m_float))} + {half}"
    if mode == "pytorch_half_pixel":
        return f64(-0.5)
    if mode == "align_corners":
        return f64(0.0) if m_float == 1 else f"{y} * {f64(n - 1)} / {f64(m_float - 1)}"
    if mode == "asymmetric":
        return f"{y} / {f64(s)}"
    r0, r1 = roi
    if m_float == 1:
        return f64((r1 - r0) * (n - 1) / 2 + r0 * (n - 1))
    return f"{y} * {f64(r1 - r0)} * {f64(n - 1)} / {f64(m_float - 1)} + {f64(r0 * (n - 1))}"


# Numba's CUDA math.floor/ceil return floats: cast the rounded coordinate to int64
NEAREST = {"round_prefer_floor": "int64(math.ceil(u{k} - float64(0.5)))",
           "round_prefer_ceil": "int64(math.floor(u{k} + float64(0.5)))",
           "floor": "int64(math.floor(u{k}))", "ceil": "int64(math.ceil(u{k}))"}


def _weight(node: Node, k: int, a: float) -> list[str]:
    """Lines setting ``w<k>`` to the kernel weight of tap ``j<k>`` (t = |j - r| * a)."""
    scale = f" * {f64(a)}" if a != 1.0 else ""
    lines = [f"t{k} = abs(float64(j{k}) - r{k}){scale}"]
    if node.attrs["mode"] == "linear":
        return lines + [f"w{k} = max({f64(0.0)}, {f64(1.0)} - t{k})"]
    c, t = float(node.attrs["cubic_coeff_a"]), f"t{k}"
    return lines + [f"if {t} <= {f64(1.0)}:",
                    f"    w{k} = ({f64(c + 2)} * {t} - {f64(c + 3)}) * {t} * {t} + {f64(1.0)}",
                    f"elif {t} < {f64(2.0)}:",
                    f"    w{k} = (({f64(c)} * {t} - {f64(5 * c)}) * {t} + {f64(8 * c)}) * {t} - {f64(4 * c)}",
                    "else:",
                    f"    w{k} = {f64(0.0)}"]


def _taps(node: Node, k: int, n: int, s: float) -> tuple[list[str], list[str]]:
    """(lines before the tap loops: base, ratio and weight sum; the tap loop header and its lines)."""
    radius = 1 if node.attrs["mode"] == "linear" else 2
    antialias = bool(node.attrs["antialias"])
    exclude = bool(node.attrs["exclude_outside"])
    a = min(s, 1.0) if antialias else 1.0
    start = math.floor(-radius / a) + 1
    weight = _weight(node, k, a)
    if exclude:
        weight += [f"if b{k} + j{k} < 0 or b{k} + j{k} > {n - 1}:", f"    w{k} = {f64(0.0)}"]
    before = [f"b{k} = int64(math.ceil(u{k})) - 1", f"r{k} = u{k} - float64(b{k})"]
    if antialias or exclude:
        before += [f"z{k} = {f64(0.0)}", f"for j{k} in range({start}, {2 - start}):"]
        before += [f"    {line}" for line in weight] + [f"    z{k} += w{k}",
                                                       f"if z{k} == {f64(0.0)}:", f"    z{k} = {f64(1.0)}"]
        weight += [f"w{k} = w{k} / z{k}"]
    loop = [f"for j{k} in range({start}, {2 - start}):"]
    loop += [f"    {line}" for line in weight + [f"x{k} = min(max(b{k} + j{k}, 0), {n - 1})"]]
    return before, loop


def _interpolate(node: Node, x: TensorArg, plan, xs: list[str]) -> list[str]:
    """Lines accumulating ``acc`` over the taps of every resized axis (nested loops)."""
    acc = "float64" if x.dtype == "float64" or np.dtype(x.dtype).kind in "iu" else "float32"
    taps = [_taps(node, k, n, s) for k, n, m, s, roi in plan]
    lines = [line for before, _ in taps for line in before] + [f"acc = {literal(0.0, acc)}"]
    for depth, (_, loop) in enumerate(taps):
        lines += ["    " * depth + line for line in loop]
    weights = " * ".join(f"w{k}" for k, *_ in plan)
    return lines + ["    " * len(taps) + f"acc += {acc}({weights}) * {acc}({at(x, xs)})"]


def _result(x: TensorArg, out: TensorArg) -> str:
    if np.dtype(x.dtype).kind in "iu":
        info = np.iinfo(x.dtype)
        return f"{x.dtype}(min(max(round(acc), {info.min}), {info.max}))"
    return f"{out.dtype}(acc)"


def _plan(node: Node, x: TensorArg, out: TensorArg) -> list[tuple[int, int, int, float, tuple]]:
    """(axis, in size, out size, scale, roi) of every axis the reference resizes."""
    for i, what in ((2, "scales"), (3, "sizes")):
        if given(node, i) and const_input(node, i) is None:
            raise UnsupportedOpError([(node.name, f"Resize with runtime {what}")])
    crop = node.attrs["coordinate_transformation_mode"] == "tf_crop_and_resize"
    if crop and has_input(node, 1) and const_input(node, 1) is None:
        raise UnsupportedOpError([(node.name, "Resize with a runtime roi")])
    scales = _values(const_input(node, 2), float) if given(node, 2) else None
    sizes = _values(const_input(node, 3), int) if given(node, 3) else None
    dims, factors = resize_target(node, x.shape, scales, sizes)
    if tuple(dims) != tuple(out.shape):
        raise shape_error(node, f"resized shape {list(dims)} differs from the output's {list(out.shape)}")
    axes = resize_axes(node, len(x.shape))
    rois = _full_roi(node, const_input(node, 1), len(x.shape), axes)
    plan = []
    for k in axes:  # the reference's skip rule (reference.resize.resize)
        trivial_roi = not crop or rois[k] == (0.0, 1.0)
        if not (dims[k] == x.shape[k] and math.isclose(factors[k], 1.0) and trivial_roi):
            plan.append((k, x.shape[k], dims[k], factors[k], rois[k]))
    return plan


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    x, out = inputs[0], outputs[0]
    plan = _plan(node, x, out)
    xs = coords(len(x.shape))
    lines = [f"u{k} = {coordinate(node, k, n, m, s, roi)}" for k, n, m, s, roi in plan]
    body = []
    for k, *_ in plan:
        xs[k] = f"x{k}"
    if node.attrs["mode"] == "nearest" or not plan:  # nothing resized: a copy
        body += [f"x{k} = min(max({NEAREST[node.attrs['nearest_mode']].format(k=k)}, 0), {n - 1})"
                 for k, n, *_ in plan]
        body.append(f"{at(out, coords(len(xs)))} = {convert(at(x, xs), x.dtype, out.dtype)}")
    else:
        body += _interpolate(node, x, plan, xs) + [f"{at(out, coords(len(xs)))} = {_result(x, out)}"]
    if node.attrs["coordinate_transformation_mode"] == "tf_crop_and_resize" and plan:
        outside = " or ".join(f"u{k} < {f64(0.0)} or u{k} > {f64(n - 1)}" for k, n, *_ in plan)
        value = _cast_back(np.asarray(node.attrs["extrapolation_value"]), np.dtype(x.dtype)).item()
        body = [f"if {outside}:", f"    {at(out, coords(len(xs)))} = {literal(value, out.dtype)}",
                "else:"] + ["    " + line for line in body]
    return loop_kernel("resize", node, tactic, [out], [x], out.shape, lines + body)
