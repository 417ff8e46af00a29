"""Direct (one thread per output element) Conv and ConvTranspose kernels.

The thread for output (n, m, o) of group z = m // Mg sums over the Cg input channels of its group and
the kernel taps j:

    Conv            acc += X[n, z·Cg + c, o·s − pad + j·d] · W[m, c, j]          (inside the input)
    ConvTranspose   acc += X[n, z·Cg + c, i] · W[z·Cg + c, m − z·Mg, j]   where o + crop = i·s + j·d

then runs the owning output's epilogue and stores. Consecutive threads take consecutive output
positions along the last spatial axis, so loads and stores coalesce. This is the path for depthwise
and grouped convs with few channels per group (MobileNet, ShuffleNet), the gather-form ConvTranspose,
and a fallback for any conv. Bounds checks that cannot fail for the baked shapes are left out.
"""

from __future__ import annotations

from ..ir import Node
from .conv_geom import ConvGeom, store_lines
from .kernel import TensorArg, element_order, indent, load, unravel

MAX_BLOCKS = 132 * 32


def _mul(name: str, k: int) -> str:
    return "0" if k == 0 else name if k == 1 else f"{name} * {k}"


def _sum(terms: list[str]) -> str:
    """``a + b - c`` from terms (a term may start with ``-``), zeros dropped."""
    out = ""
    for t in (t for t in terms if t != "0"):
        out += (t if not out else f" - {t[1:]}" if t.startswith("-") else f" + {t}")
    return out or "0"


def _chan(g: ConvGeom) -> str:
    return "c" if g.cg > 1 else "0"


def _taps(g: ConvGeom, w: TensorArg) -> list[str]:
    return [_mul(f"j{a}", w.strides[2 + a]) for a in range(g.nsp) if g.kernel[a] > 1]


def _accumulate(g: ConvGeom, xi: str, wi: str, x: TensorArg, w: TensorArg) -> list[str]:
    """The innermost loop: the group's input channels, for one kernel tap."""
    body = [f"acc += {load(x, xi, 'float32')} * {load(w, wi, 'float32')}"]
    return body if g.cg == 1 else [f"for c in range({g.cg}):"] + indent(body, 1)


def _conv_taps(g: ConvGeom, x: TensorArg, w: TensorArg) -> list[str]:
    """Nested loops over the kernel taps of a Conv (the padding skipped), channels innermost."""
    lines, depth = [], 0
    for a in range(g.nsp):
        k, s, d, p, n = g.kernel[a], g.strides[a], g.dilations[a], g.pads[a], g.sizes[a]
        pos = _sum([_mul(f"o{a}", s), str(-p) if p else "0"] + ([_mul(f"j{a}", d)] if k > 1 else []))
        if k > 1:
            lines.append("    " * depth + f"for j{a} in range({k}):")
            depth += 1
        lines.append("    " * depth + f"h{a} = {pos}")
        past_end = (g.out[a] - 1) * s - p + (k - 1) * d >= n
        checks = ([f"0 <= h{a}"] if p > 0 else []) + ([f"h{a} < {n}"] if past_end else [])
        if checks:
            lines.append("    " * depth + f"if {' and '.join(checks)}:")
            depth += 1
    xi = _sum(["xb", _mul(_chan(g), x.strides[1])] + [_mul(f"h{a}", x.strides[2 + a]) for a in range(g.nsp)])
    wi = _sum(["wb", _mul(_chan(g), w.strides[1])] + _taps(g, w))
    return lines + indent(_accumulate(g, xi, wi, x, w), depth)


def _transpose_taps(g: ConvGeom, x: TensorArg, w: TensorArg) -> list[str]:
    """Nested loops over the kernel taps of a ConvTranspose: tap j receives input i = (o + crop − j·d) / s
    when that is a whole number inside the input."""
    lines, depth = [], 0
    for a in range(g.nsp):
        k, s, d, crop, n = g.kernel[a], g.strides[a], g.dilations[a], g.pads[a], g.sizes[a]
        if k > 1:
            lines.append("    " * depth + f"for j{a} in range({k}):")
            depth += 1
        f = _sum([f"o{a}", str(crop)] + (["-" + _mul(f"j{a}", d)] if k > 1 else []))
        lines.append("    " * depth + f"f{a} = {f}")
        checks = [f"f{a} >= 0"] + ([f"f{a} % {s} == 0"] if s > 1 else [])
        lines.append("    " * depth + f"if {' and '.join(checks)}:")
        depth += 1
        lines.append("    " * depth + f"i{a} = f{a}" + (f" // {s}" if s > 1 else ""))
        lines.append("    " * depth + f"if i{a} < {n}:")
        depth += 1
    xi = _sum(["xb", _mul(_chan(g), x.strides[1])] + [_mul(f"i{a}", x.strides[2 + a]) for a in range(g.nsp)])
    wi = _sum(["wb", _mul(_chan(g), w.strides[0])] + _taps(g, w))
    return lines + indent(_accumulate(g, xi, wi, x, w), depth)


def _elements(g: ConvGeom, out: TensorArg) -> list[str]:
    """Lines setting ``img``, ``ch`` and ``o0..`` of output element ``i``: row-major (a pixel row of one
    channel after another), or in the output's memory order (channels-last: channels fastest)."""
    order = element_order(out)
    if order is None:
        return [f"img = i // {g.m * g.pixels}" if g.n > 1 else "img = 0",
                f"ch = (i // {g.pixels}) % {g.m}" if g.pixels > 1 else f"ch = i % {g.m}",
                f"pix = i % {g.pixels}"] + unravel("pix", g.out, "o")
    return unravel("i", (g.n, g.m) + tuple(g.out), ["img", "ch"] + [f"o{a}" for a in range(g.nsp)], order)


def kernel(name: str, node: Node, g: ConvGeom, outputs: list[TensorArg], inputs: list[TensorArg | None],
           params: list[str], threads: int, transpose: bool = False):
    """(source lines, grid, block) of a direct kernel over every output element."""
    x, w = inputs[0], inputs[1]
    total = g.n * g.m * g.pixels
    lines = [f"def {name}({', '.join(params)}):",
             "    i = cuda.grid(1)",
             "    step = cuda.gridsize(1)",
             f"    while i < {total}:"]
    body = _elements(g, outputs[0])
    zb = "ch" if g.mg == 1 else f"(ch // {g.mg})"
    grouped = lambda stride: _mul(zb, g.cg * stride) if g.groups > 1 else "0"
    body.append(f"xb = {_sum([str(x.offset), _mul('img', x.strides[0]) if g.n > 1 else '0', grouped(x.strides[1])])}")
    if transpose:
        mi = "ch" if g.groups == 1 else f"(ch % {g.mg})"
        body.append(f"wb = {_sum([str(w.offset), grouped(w.strides[0]), _mul(mi, w.strides[1])])}")
    else:
        body.append(f"wb = {_sum([str(w.offset), _mul('ch', w.strides[0])])}")
    body.append("acc = float32(0.0)")
    body += (_transpose_taps if transpose else _conv_taps)(g, x, w)
    body += store_lines(node, outputs, inputs, "ch", ["img"] + [f"o{a}" for a in range(g.nsp)], "acc")
    body.append("i += step")
    lines += indent(body, 2)
    blocks = max(1, min(-(-total // threads), MAX_BLOCKS))
    return lines, (blocks, 1, 1), (threads, 1, 1)
