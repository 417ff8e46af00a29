"""Conv kernels (``nbtrt.conv`` groups): implicit GEMM, a plain GEMM for 1×1 convs, and a direct path.

Implicit GEMM, per group z (grid z): ``Y[n·P + p, m] = Σ_k W[z·Mg + m, k] · cols[k, n·P + p]`` with
M = Mg output channels, N = batch·P output positions and K = Cg·taps, where
``cols[(c, j), (n, o)] = X[n, z·Cg + c, o·s − pad + j·d]`` (zero in the padding) is never built:
each thread decodes its own (n, o) once and (c, j) per K slice while copying the input tile (see
``tiled.py`` for the blocking). A 1×1, stride-1, unpadded conv is a plain GEMM: ``cols[c, (n, p)] =
X[n, z·Cg + c, p]`` (``gemm_1x1``, no window arithmetic). Depthwise and few-channel grouped convs go
to ``conv_direct.py``.

Every finished element goes through ``store_<name>``: bounds check, the owning output's epilogue
(bias, activation, residual...), store through the output's strides (maybe a concat slice).

Tactic space: algorithm (implicit_gemm | gemm_1x1 | direct | mma); for the CUDA-core GEMM algorithms
the block tile BM×BN×BK, the micro-tile TM×TN per thread, split_k (threads of a block splitting K, for
the few-block layers of batch 1) and unroll (the BK loop written out); for direct the threads per
block; for mma (tensor cores, ``mma_tiled.py``: implicit GEMM, or a plain GEMM for 1×1 convs) the math
(f16 | tf32), block tile and warps per block; for mma_async (``mma_async.py``, channels-last operands)
the math (f16 | s8), tile, stages and split-K parts. A conv with math "int8" (``int8.py``) runs
implicit_gemm or gemm_1x1 on CUDA cores, or mma_async with math s8 when X is stored as int8
channels-last (int8 storage), whatever its channel count (no int8 direct kernel).
"""

from __future__ import annotations

import dataclasses

from ..errors import UnsupportedOpError
from ..ir import Node
from . import conv_direct, int8, mma_async, mma_tiled, tiled
from .conv_direct import _mul, _sum
from .conv_geom import ConvGeom, check_float32, geometry, run_operands, run_storable
from .conv_store import column_vars, columns, flat_views, store_function, words_function
from .kernel import (SCRATCH, KernelSpec, Scratch, TensorArg, contiguous_strides, header, identifier, load,
                     same_strides, unravel)

TACTICS = ([dict(algorithm="implicit_gemm", **t) for t in tiled.TACTICS]
           + [dict(algorithm="gemm_1x1", **t) for t in tiled.TACTICS]
           + [dict(algorithm="direct", threads=t) for t in (128, 256)]
           + [dict(algorithm="mma", **t) for t in mma_tiled.TACTICS]
           + [dict(algorithm="mma_async", **t) for t in mma_async.TACTICS])
DEFAULT = dict(algorithm="implicit_gemm", bm=64, bn=64, bk=8, tm=8, tn=8, split_k=1, unroll=True)
MAX_DIRECT_K = 32  # Cg·taps below which the default is the direct kernel


def _operand_args(node: Node) -> list[TensorArg | None]:
    return [None if v is None else TensorArg.contiguous(f"in{k}", v.type.dtype, v.type.shape)
            for k, v in enumerate(node.inputs)]


def is_1x1(g: ConvGeom) -> bool:
    return g.taps == 1 and all(s == 1 for s in g.strides) and all(p == 0 for p in g.pads) and g.out == g.sizes


def problems(g: ConvGeom, tactic: dict, node: Node | None = None, x: TensorArg | None = None,
             w: TensorArg | None = None) -> list[str]:
    """Why ``tactic`` cannot run this conv (empty if it can) with input ``x`` and weights ``w`` laid
    out as given (contiguous NCHW / OIHW when not given)."""
    algo = tactic.get("algorithm")
    if int8.is_int8(node) and algo not in int8.ALGORITHMS:
        return [f"int8 math runs on {', '.join(int8.ALGORITHMS)} only"]
    if algo == "direct":
        return [] if 32 <= tactic.get("threads", 0) <= 1024 else ["threads"]
    if algo == "mma":
        t = mma_tiled.MmaTile.of(tactic)
        why = mma_tiled.allowed(t.math, node.attrs.get("math") if node is not None else None)
        return ([why] if why else []) + t.problems(True, False) + tiled.grid_problems(t, g.mg, g.n * g.pixels, g.groups)
    if algo == "mma_async":
        t = mma_async.AsyncTile.of(tactic)
        why = mma_tiled.allowed(t.math, node.attrs.get("math") if node is not None else None)
        return (([why] if why else []) + t.problems() + async_layout_problems(g, x, w, t.elems)
                + tiled.grid_problems(t, g.mg, g.n * g.pixels, g.groups))
    if algo not in ("implicit_gemm", "gemm_1x1"):
        return [f"unknown algorithm {algo!r}"]
    if algo == "gemm_1x1" and not is_1x1(g):
        return ["gemm_1x1 needs a 1x1 kernel, stride 1 and no padding"]
    t = tiled.Tile.of(tactic, int8.pack(node))
    return t.problems(True, _k_contiguous(g, x, t)) + tiled.grid_problems(t, g.mg, g.n * g.pixels, g.groups)


def _k_contiguous(g: ConvGeom, x: TensorArg | None, t) -> bool:
    """Whether consecutive k of the input operand are adjacent in memory (channels-last input, K a
    channel or (tap, channel) with one tap per slice): the tile copies then run along k."""
    return x is not None and x.strides[1] == 1 and g.c > 1 and (g.taps == 1 or g.cg % t.k_step == 0)


def async_layout_problems(g: ConvGeom, x: TensorArg | None, w: TensorArg | None, elems: int = 8) -> list[str]:
    """Why the pipelined tensor-core kernel cannot copy these operands in 16-byte chunks of ``elems``
    elements (8: float16, 16: int8): X must be channels-last and W have each filter's (tap, channel)
    elements contiguous (OHWI), both of the chunk's dtype, with every stride, offset and Cg a multiple
    of ``elems``."""
    if x is None or w is None:
        return ["needs the input and weight layouts"]
    why, dtype = [], "float16" if elems == 8 else "int8"
    if x.dtype != dtype or w.dtype != dtype:
        why.append(f"{dtype} input and weights")
    if x.strides[1] != 1 or any(s % elems for s in x.strides[:1] + x.strides[2:]) or x.offset % elems:
        why.append(f"channels-last input with strides and offset in multiples of {elems}")
    if g.cg % elems:
        why.append(f"{g.cg} channels per group (not a multiple of {elems})")
    tap_major = (1,) + contiguous_strides(g.kernel + (g.cg,))[:-1]
    if w.strides[1:] != tap_major or w.strides[0] % elems or w.offset % elems:
        why.append("weights not laid out (tap, channel) per filter (OHWI)")
    return why


def valid(node: Node, tactic: dict, outputs: list[TensorArg] | None = None,
          inputs: list[TensorArg | None] | None = None) -> bool:
    """Whether ``tactic`` can run ``node`` with these tensor layouts (contiguous when not given)."""
    inputs = inputs or _operand_args(node)
    try:
        return not problems(geometry(node, inputs), tactic, node, inputs[0], inputs[1])
    except (KeyError, TypeError, ValueError):
        return False


def prefers_direct(g: ConvGeom) -> bool:
    """Depthwise and few-channel convs: too little K (or M) per group for a GEMM tile."""
    return g.cg * g.taps < MAX_DIRECT_K or g.mg < 8


def pick(g: ConvGeom, node: Node, x: TensorArg | None = None, w: TensorArg | None = None) -> dict:
    """A reasonable tactic without tuning: direct for few channels per group; tensor cores when the
    precision allows them (the pipelined kernel when the layouts allow it); else the largest tile that
    still fills the GPU (132 SMs), splitting K when even small tiles leave it mostly idle."""
    if prefers_direct(g) and not int8.is_int8(node):
        return dict(algorithm="direct", threads=128)
    tile = mma_async.pick(g.mg, g.n * g.pixels, g.groups, g.cg * g.taps, "s8" if int8.is_int8(node) else "f16")
    if tile and not problems(g, dict(algorithm="mma_async", **tile), node, x, w):
        return dict(algorithm="mma_async", **tile)
    for math in ("f16", "tf32"):
        tile = mma_tiled.pick(g.mg, g.n * g.pixels, g.groups, math)
        if tile and mma_tiled.allowed(math, node.attrs.get("math")) is None:
            tactic = dict(algorithm="mma", **tile)
            if not problems(g, tactic, node):
                return tactic
    algo = "gemm_1x1" if is_1x1(g) else "implicit_gemm"
    return dict(algorithm=algo, **tiled.pick(g.mg, g.n * g.pixels, g.groups))


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    check_float32(node, outputs, inputs)
    g = geometry(node, inputs)
    tactic = dict(tactic or pick(g, node, inputs[0], inputs[1]))
    why = problems(g, tactic, node, inputs[0], inputs[1])
    if why:
        raise UnsupportedOpError([(node.name, f"conv tactic {tactic}: {'; '.join(why)}")])
    name = "conv_" + identifier(node.name)
    used = [a for a in inputs if a is not None]
    params = [o.param for o in outputs] + [a.param for a in used]
    dtypes = [o.dtype for o in outputs] + [a.dtype for a in used]
    if tactic.get("splits", 1) > 1:  # split K: partial sums and arrival counts in the context's scratch
        params += [p for p, _ in SCRATCH]
        dtypes += [d for _, d in SCRATCH]
    lines = header("conv", node, tactic, outputs, used)
    if int8.is_int8(node):
        lines += int8.header(node, inputs)
    if int8.is_int8(node) or any(o.dtype == "int8" for o in outputs):  # quantize on load; int8 storage
        lines += int8.quantize_function()
    lines.append(f"# group {g.groups}, kernel {list(g.kernel)}, strides {list(g.strides)}, pads {list(g.pads)}, "
                 f"dilations {list(g.dilations)}; GEMM per group: M={g.mg} N={g.n * g.pixels} K={g.cg * g.taps}")
    if tactic["algorithm"] == "direct":
        body, grid, block = conv_direct.kernel(name, node, g, outputs, inputs, params, tactic["threads"])
    elif tactic["algorithm"] == "mma_async":
        body, grid, block = _async_kernel(name, node, g, outputs, inputs, params, tactic)
    else:
        body, grid, block = _gemm_kernel(name, node, g, outputs, inputs, params, tactic)
    scratch = None
    if tactic.get("splits", 1) > 1:
        scratch = Scratch(*mma_async.scratch_words(mma_async.AsyncTile.of(tactic), grid))
    return KernelSpec(name, "\n".join(lines + body) + "\n", params, grid, block, dtypes, tactic, scratch)


def _gemm_kernel(name, node, g: ConvGeom, outputs, inputs, params, tactic):
    mma = tactic["algorithm"] == "mma"
    t = mma_tiled.MmaTile.of(tactic) if mma else tiled.Tile.of(tactic, int8.pack(node))
    read = mma_tiled.reader(t.math) if mma else (lambda arg, index: load(arg, index, "float32"))
    quantized = int8.is_int8(node)
    read = int8.reader(node) if quantized else read
    x, w = inputs[0], inputs[1]
    k_total, n_total = g.cg * g.taps, g.n * g.pixels
    prologue, rows = _group_prologue(g, x, w), _filter_rows(g, w)
    a = tiled.Operand(g.mg, True, rows, lambda p, k, tmp: _weight(g, w, p, k, tmp, read))
    b = _pixels(g, x, read) if tactic["algorithm"] == "gemm_1x1" or (mma and is_1x1(g)) else _im2col(g, x, read)
    slices = ()
    if tactic["algorithm"] != "gemm_1x1" and g.taps > 1 and g.cg % t.k_step == 0:  # K as (tap, channel): a tap a slice
        a = tiled.Operand(g.mg, True, rows, lambda p, k, tmp: ([], [], read(w, _tap_weight(g, w, p, k))))
        b, slices = _tap_major(g, x, read), _tap_lines(g, x, w)
    if not mma and _k_contiguous(g, x, t):
        b = dataclasses.replace(b, k_major=True)
    store = "store_" + identifier(node.name)
    extra = [o.param for o in outputs] + [i.param for i in inputs[2:] if i is not None]
    cols = column_vars(g, n_total % t.bn != 0)
    call = lambda v, m: f"{store}({', '.join(extra)}, z, {m}, {', '.join(cols)}, {v})"
    lines = store_function(store, node, g, outputs, inputs, extra, cols, t)
    column = lambda n: columns(g, n, n_total % t.bn != 0)
    if quantized:
        lines += tiled.kernel(name, params, t, (g.mg, n_total, k_total), a, b, prologue, call, column, slices,
                              acc=int8.ACC)
    else:
        lines += (mma_tiled if mma else tiled).kernel(name, params, t, (g.mg, n_total, k_total), a, b, prologue,
                                                      call, column, slices)
    grid, block = tiled.launch(t, g.mg, n_total, g.groups)
    return lines, grid, block


def _group_prologue(g: ConvGeom, x: TensorArg, w: TensorArg) -> list[str]:
    if g.groups == 1:
        return []
    return [f"xz = z * {g.cg * x.strides[1]}  # this group's first input channel",
            f"wz = z * {g.mg * w.strides[0]}  # and its first filter"]


def _filter_rows(g: ConvGeom, w: TensorArg):
    """A's row setup: where filter ``xm`` of this group starts in W (``p``row)."""
    wz = "wz" if g.groups > 1 else "0"
    return lambda xm, p: [f"{p}row = {_sum([str(w.offset), wz, _mul(xm, w.strides[0])])}"]


def _async_kernel(name, node, g: ConvGeom, outputs, inputs, params, tactic):
    """The pipelined tensor-core kernel (``mma_async.py``): A = each filter's (tap, channel) halves,
    B = the input's channels at each output position's window tap; chunks of 8 channels."""
    t = mma_async.AsyncTile.of(tactic)
    x, w = inputs[0], inputs[1]
    k_total, n_total = g.cg * g.taps, g.n * g.pixels
    prologue = _group_prologue(g, x, w)
    a = mma_async.Rows(g.mg, w.param, _filter_rows(g, w), lambda p: ([], [], f"{p}row + kq"))

    def setup(xn: str, p: str) -> list[str]:
        lines = [f"{p}img = {xn} // {g.pixels}", f"{p}pix = {xn} % {g.pixels}"] if g.n > 1 else [f"{p}pix = {xn}"]
        lines += unravel(f"{p}pix", g.out, f"{p}o")
        lines += [f"{p}i{a} = {_sum([_mul(f'{p}o{a}', g.strides[a]), str(-g.pads[a])])}" for a in range(g.nsp)]
        terms = [str(x.offset), _mul(f"{p}img", x.strides[0]) if g.n > 1 else "0", "xz" if g.groups > 1 else "0"]
        return lines + [f"{p}base = {_sum(terms)}"]

    def per_slice() -> list[str]:  # this thread's chunk: kernel tap and first channel
        if g.taps == 1:
            return []
        return [f"tap = kq // {g.cg}", f"chan = kq - tap * {g.cg}"] + unravel("tap", g.kernel, "tap_j")

    def chunk(p: str):
        lines, conds, terms = _window(g, x, p, "tap_j", f"{p}h")
        return lines, conds, _sum([f"{p}base", "chan" if g.taps > 1 else "kq"] + terms)

    b = mma_async.Rows(n_total, x.param, setup, chunk, per_slice)
    store = "store_" + identifier(node.name)
    extra = [o.param for o in outputs] + [i.param for i in inputs[2:] if i is not None]
    vectors = (int(node.attrs["int8_multiplier"]),) if int8.is_int8(node) else ()
    views = flat_views(g, outputs, inputs, vectors)  # column n's elements at n * stride: no decoding
    if views:
        outputs, inputs = views
    check, flat = n_total % t.bn != 0, views is not None
    cols = column_vars(g, check, flat)
    call = lambda v, m: f"{store}({', '.join(extra)}, z, {m}, {', '.join(cols)}, {v})"
    lines = store_function(store, node, g, outputs, inputs, extra, cols, t, flat=flat)
    run = fetch = None
    if run_storable(node, g, outputs, inputs):  # eight channels per 16-byte store; residual runs loaded ahead
        ahead = bool(run_operands(node, outputs, inputs))
        lines += store_function(store + "_run", node, g, outputs, inputs, extra, cols, t, run=True, flat=flat,
                                words=ahead)
        head = f"{', '.join(extra)}, z, {{}}, {', '.join(cols)}"
        run = lambda vs, m, words=None: f"{store}_run({head.format(m)}, {', '.join(([words] if words else []) + vs)})"
        if ahead:
            lines += words_function(store + "_words", node, g, outputs, inputs, extra, cols, t, flat=flat)
            fetch = lambda m: f"{store}_words({head.format(m)})"
    lines += mma_async.kernel(name, params, t, (g.mg, n_total, k_total), a, b, prologue, call,
                              lambda n: columns(g, n, check, flat), run, fetch)
    grid, block = mma_async.launch(t, g.mg, n_total, g.groups)
    return lines, grid, block


def _pixels(g: ConvGeom, x: TensorArg, read) -> tiled.Operand:
    """B of a 1×1 conv: column (n, p) of channel row c is X[n, z·Cg + c, p]."""
    flat = x.strides[2:] == contiguous_strides(g.sizes)

    def setup(xn: str, p: str) -> list[str]:
        lines = [f"{p}img = {xn} // {g.pixels}" if g.n > 1 else None,
                 f"{p}pix = {xn} % {g.pixels}" if g.n > 1 else f"{p}pix = {xn}"]
        lines = [ln for ln in lines if ln]
        if flat:
            spatial = [f"{p}pix"]
        else:
            lines += unravel(f"{p}pix", g.sizes, f"{p}o")
            spatial = [_mul(f"{p}o{a}", x.strides[2 + a]) for a in range(g.nsp)]
        terms = [str(x.offset), _mul(f"{p}img", x.strides[0]) if g.n > 1 else "0",
                 "xz" if g.groups > 1 else "0"] + spatial
        return lines + [f"{p}base = {_sum(terms)}"]

    return tiled.Operand(g.n * g.pixels, False, setup,
                         lambda p, k, tmp: ([], [], read(x, f"{p}base + {_mul(k, x.strides[1])}")))


def _im2col(g: ConvGeom, x: TensorArg, read) -> tiled.Operand:
    """B of the implicit GEMM: column (n, o), row (c, j) reads X[n, z·Cg + c, o·s − pad + j·d]."""

    def setup(xn: str, p: str) -> list[str]:
        lines = [f"{p}img = {xn} // {g.pixels}"] if g.n > 1 else []
        lines.append(f"{p}pix = {xn} % {g.pixels}" if g.n > 1 else f"{p}pix = {xn}")
        lines += unravel(f"{p}pix", g.out, f"{p}o")
        for a in range(g.nsp):  # the window's corner in the input (may lie in the padding)
            lines.append(f"{p}i{a} = {_sum([_mul(f'{p}o{a}', g.strides[a]), str(-g.pads[a])])}")
        terms = [str(x.offset), _mul(f"{p}img", x.strides[0]) if g.n > 1 else "0", "xz" if g.groups > 1 else "0"]
        return lines + [f"{p}base = {_sum(terms)}"]

    def load(p: str, k: str, t: str):
        lines, conds = [], []
        if g.taps > 1:
            lines += [f"{t}c = {k} // {g.taps}", f"{t}j = {k} % {g.taps}"]
            lines += [ln for ln in unravel(f"{t}j", g.kernel, f"{t}j") if not ln.endswith(" = 0")]
        chan = f"{t}c" if g.taps > 1 else k
        more, conds, terms = _window(g, x, p, f"{t}j", f"{t}h")
        return lines + more, conds, read(x, _sum([f"{p}base", _mul(chan, x.strides[1])] + terms))

    return tiled.Operand(g.n * g.pixels, False, setup, load)


def _window(g: ConvGeom, x: TensorArg, p: str, j: str, h: str) -> tuple[list[str], list[str], list[str]]:
    """(lines, in-bounds conditions, address terms) of the input position ``p``i + ``j``·d of a column
    whose window corner is ``p``i<axis>, for the kernel offsets ``j``<axis> (named ``h``<axis>)."""
    lines, conds, terms = [], [], []
    for a in range(g.nsp):
        pos = f"{p}i{a}"
        if g.kernel[a] > 1:
            lines.append(f"{h}{a} = {p}i{a} + {_mul(f'{j}{a}', g.dilations[a])}")
            pos = f"{h}{a}"
        if g.pads[a] > 0:
            conds.append(f"{pos} >= 0")
        if (g.out[a] - 1) * g.strides[a] - g.pads[a] + (g.kernel[a] - 1) * g.dilations[a] >= g.sizes[a]:
            conds.append(f"{pos} < {g.sizes[a]}")
        terms.append(_mul(pos, x.strides[2 + a]))
    return lines, conds, terms


def _tap_lines(g: ConvGeom, x: TensorArg, w: TensorArg) -> tuple[str, ...]:
    """Per K slice of the (tap, channel) order: the slice's tap (Cg is a multiple of BK, so a slice
    never spans two taps), its kernel offsets, and the shifts that turn k = tap·Cg + c into channel c
    of the input (``tapc``) and into the weight element (m, c, tap) (``wshift``, for any W strides)."""
    lines = [f"tap = k0 // {g.cg}  # this K slice's kernel tap"] + unravel("tap", g.kernel, "tap_j")
    tap_at = _sum([_mul(f"tap_j{a}", w.strides[2 + a]) for a in range(g.nsp)])
    return tuple(lines + [f"tapc = tap * {g.cg * x.strides[1]}", f"wshift = tap * {g.cg * w.strides[1]} - ({tap_at})"])


def _weight(g: ConvGeom, w: TensorArg, p: str, k: str, tmp: str, read):
    """Element (m, k) of A in the (channel, tap) K order: W[m, c, j] at k = c·taps + j; one add when
    each filter is contiguous (OIHW), else c and j decoded through W's strides (e.g. OHWI)."""
    if same_strides(w.shape[1:], w.strides[1:], contiguous_strides(w.shape[1:])):
        return [], [], read(w, f"{p}row + {k}")
    lines = [f"{tmp}c = {k} // {g.taps}", f"{tmp}j = {k} % {g.taps}"] + unravel(f"{tmp}j", g.kernel, f"{tmp}j")
    at = _sum([f"{p}row", _mul(f"{tmp}c", w.strides[1])] + [_mul(f"{tmp}j{a}", w.strides[2 + a]) for a in range(g.nsp)])
    return lines, [], read(w, at)


def _tap_weight(g: ConvGeom, w: TensorArg, p: str, k: str) -> str:
    return f"{p}row + {_mul(k, w.strides[1])} - wshift"


def _tap_major(g: ConvGeom, x: TensorArg, read) -> tiled.Operand:
    """B of the implicit GEMM with K ordered (tap, channel): row k = tap·Cg + c of column (n, o) reads
    X[n, z·Cg + c, o·s − pad + tap·d]. Window position and bounds are worked out once per column and
    K slice (``per_slice``), so an element costs one multiply-add: the address at c = 0 plus c·stride."""
    base = _im2col(g, x, read)

    def per_slice(p: str) -> list[str]:
        lines, conds, terms = [], [], [f"{p}base", "-tapc"]
        for a in range(g.nsp):
            lines.append(f"{p}h{a} = {p}i{a} + {_mul(f'tap_j{a}', g.dilations[a])}")
            conds += ([f"{p}h{a} >= 0"] if g.pads[a] > 0 else []) + [f"{p}h{a} < {g.sizes[a]}"]
            terms.append(_mul(f"{p}h{a}", x.strides[2 + a]))
        return lines + [f"{p}inside = {' and '.join(conds)}", f"{p}at = {_sum(terms)}"]

    return tiled.Operand(base.extent, False, base.setup,
                         lambda p, k, tmp: ([], [f"{p}inside"], read(x, f"{p}at + {_mul(k, x.strides[1])}")), per_slice)
