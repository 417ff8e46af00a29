"""Pooling kernels: ``nbtrt.pool`` groups (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool with
their fused epilogue), and plain MaxPool / AveragePool nodes (also MaxPool's ``Indices`` output).

Windowed pools: one thread per output element (grid-stride loop); on a GPU, for float16
channels-last tensors, one thread per run of 8 channels (16-byte loads widened to float32, one
16-byte store), which spends the index arithmetic once per 8 elements; an int8 max pool takes 16
channels (16 bytes) per thread where they align, two per ``max.s16x2``, else 8. Along spatial axis
i with kernel K, stride s, dilation d and begin pad pb, output o reads input positions
``o·s − pb + k·d`` (k < K); a position outside the input is skipped (MaxPool pads with −∞). Bounds
checks are emitted only on axes where some window leaves the input. AveragePool divides by the
number of counted cells, which is separable: the product over axes of the cells inside the input
(``count_include_pad`` = 0) or inside the input plus its explicit pads (= 1) — never the extra end
cells that ``ceil_mode`` adds.
Geometry is resolved exactly as the op schema and the reference do (``ops/window.py``).

Global pools reduce each (n, c) row over the spatial axes with the block-per-row skeleton of
``reduce.py`` (a shared-memory tree), so that 7×7 and 56×56 global pools both fill the GPU.

Each output applies its epilogue program (``acc``: the pooled value; ``in<k>``: node input k read at
the output's coordinates) and writes through its own strides (it may be a slice of a concat buffer).
Outputs of a group with several ``splits`` each own a channel range of the pooled result.

Tactic space: block size (``threads`` × ``rows``) for windowed pools; ``threads`` × ``rows`` of the
row skeleton for global pools (see :func:`space`).
"""

from __future__ import annotations

import numpy as np

from ..groups import is_group
from ..ir import Node
from ..ops.window import flag, forward_shape, window_attrs
from . import epilogue
from .kernel import (KernelSpec, TensorArg, element_order, header, identifier, indent, index_of, literal,
                     runs_of, runs_of_8, store, unravel)
from .numba_env import simulated
from .reduce import (ROW_TACTICS, RowCode, Rows, compute_dtype, element_tactic, grid_blocks, load, lowest,
                     resolve)
from .tiled import SMS

WINDOW_TACTICS = [{"threads": t, "rows": 1} for t in (64, 128, 256, 512)]
TACTICS = WINDOW_TACTICS + ROW_TACTICS
DEFAULT = {"threads": "auto", "rows": "auto"}
GLOBAL = ("GlobalAveragePool", "GlobalMaxPool")


def _anchor(node: Node):
    """(base op, base attrs, epilogue programs, splits) of a group or a plain pool node."""
    if is_group(node):
        a = node.attrs
        return a["base"], a["base_attrs"], a["epilogues"], tuple(a["splits"])
    return node.op, node.attrs, ((),), ()


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    base, attrs, programs, splits = _anchor(node)
    x = inputs[0]
    cd = compute_dtype(x.dtype)
    n_main = len(programs)
    name = f"{base.lower()}_{identifier(node.name)}"
    if base in GLOBAL:
        return _global(node, base, name, programs, splits, outputs[:n_main], inputs, cd, tactic)
    return _window(node, base, attrs, name, programs, splits, outputs, inputs, cd, tactic)


def _epilogues(programs, splits, outputs, inputs, coords, cd) -> list[str]:
    """Apply each output's program to ``acc`` at pooled coordinates ``coords`` and store it; with
    several outputs, output i owns channels [offset_i, offset_i + splits[i])."""
    if len(programs) == 1:
        return _store(programs[0], outputs[0], inputs, coords, cd, "e")
    lines, offset = [], 0
    for i, (program, out) in enumerate(zip(programs, outputs)):
        local = [coords[0], f"cl{i}"] + list(coords[2:])
        body = [f"cl{i} = {coords[1]} - {offset}"] + _store(program, out, inputs, local, cd, f"e{i}_")
        test = f"{coords[1]} < {offset + splits[i]}"
        lines += [f"{'if' if i == 0 else 'elif'} {test}:" if i < len(programs) - 1 else "else:"] + indent(body)
        offset += splits[i]
    return lines


def _store(program, out: TensorArg, inputs, coords, cd, prefix) -> list[str]:
    fetch = lambda k: load(inputs[k], index_of(inputs[k], out.shape, coords), cd)
    body, result = epilogue.emit(program, "acc", fetch, cd, prefix)
    return body + [store(out, index_of(out, out.shape, coords), result, cd)]


def _params(outputs, inputs, programs) -> list[str]:
    used = sorted({0} | {k for p in programs for k in epilogue.operands(p)})
    return [o.param for o in outputs] + [inputs[k].param for k in used]


# -- windowed pools -----------------------------------------------------------------------------------

def _geometry(node: Node, base: str, attrs: dict, x: TensorArg):
    """Per spatial axis: (size, kernel, stride, dilation, pad begin, pad end, out)."""
    stub = Node(base, [], [], dict(attrs), name=node.name)
    win = window_attrs(stub, tuple(int(k) for k in attrs["kernel_shape"]))
    out, pads = forward_shape(stub, win, x.shape[2:], flag(stub, "ceil_mode"))
    nsp = len(out)
    return [(x.shape[2 + i], win.kernel[i], win.strides[i], win.dilations[i], pads[i], pads[nsp + i], out[i])
            for i in range(nsp)]


def _window(node, base, attrs, name, programs, splits, outputs, inputs, cd, tactic) -> KernelSpec:
    x = inputs[0]
    geo = _geometry(node, base, attrs, x)
    nsp, is_max = len(geo), base == "MaxPool"
    acc_shape = tuple(x.shape[:2]) + tuple(g[6] for g in geo)
    indices = outputs[len(programs)] if is_max and len(outputs) > len(programs) else None
    lanes = _lanes(x, outputs[0], is_max, programs[0]) if indices is None and len(programs) == 1 else 1
    coords = [f"c{a}" for a in range(len(acc_shape))]
    space = (acc_shape[0], acc_shape[1] // lanes) + acc_shape[2:]  # a thread's channels: c1..c1+lanes-1
    total = int(np.prod(space, dtype=np.int64))
    lines = ["i = cuda.grid(1)", "step = cuda.gridsize(1)", f"while i < {total}:"]
    body = unravel("i", space, order=element_order(outputs[0]))
    if lanes > 1:
        body.append(f"c1 = c1 * {lanes}  # the first of this thread's {lanes} channels (one vector run)")
    nc = TensorArg(x.param, x.dtype, x.shape[:2] + (1,) * nsp, x.strides, x.offset)
    body.append(f"xb = {index_of(nc, acc_shape, coords)}  # X[n, c] starts here")
    for i, (n, k, s, d, pb, pe, o) in enumerate(geo):
        start = f"c{2 + i}" + (f" * {s}" if s != 1 else "") + (f" - {pb}" if pb else "")
        body.append(f"p{2 + i} = {start}  # window start, axis {2 + i}")
    accs = [f"acc{e}" for e in range(min(lanes, LANES))] if lanes > 1 else ["acc"]
    body += [f"{a} = {_first(x, lanes, is_max, cd)}" for a in accs]
    if indices is not None:
        body.append("arg = int64(-1)")
    inner = (_max_run_s8(x) if lanes == S8_LANES else _accumulate_run(x, is_max) if lanes > 1
             else _accumulate(geo, x, cd, is_max, indices, attrs))
    body += _window_loops(geo, x, inner)
    if not is_max:
        lines_n, divisor = _counts(geo, flag(Node(base, [], [], dict(attrs)), "count_include_pad"), cd)
        body += lines_n + [f"{a} = {a} / {divisor}" for a in accs]
    if lanes == S8_LANES:
        body += _store_run_s8(outputs[0], coords)
    elif lanes > 1:
        body += _store_run(programs[0], outputs[0], inputs, coords, cd)
    else:
        body += _epilogues(programs, splits, outputs, inputs, coords, cd)
    if indices is not None:
        body.append(f"{indices.param}[{index_of(indices, indices.shape, coords)}] = arg")
    lines += indent(body + ["i += step"])
    t = element_tactic(tactic)
    threads = t["threads"]
    params = _params(outputs[:len(programs)] + ([indices] if indices is not None else []), inputs, programs)
    src = header("pool", node, t, outputs, [inputs[0]] + [a for a in inputs[1:] if a is not None])
    src.append(f"# {base} " + "; ".join(f"axis {2 + i}: size {n} kernel {k} stride {s} dilation {d} "
                                        f"pads {pb},{pe} out {o}" for i, (n, k, s, d, pb, pe, o) in enumerate(geo)))
    if lanes > 1:
        src.append(f"# each thread pools {lanes} consecutive channels: vector loads and stores of {x.dtype}")
    src += [f"def {name}({', '.join(params)}):"] + indent(lines)
    blocks = grid_blocks(total, threads, t)
    dtypes = {a.param: a.dtype for a in outputs + [a for a in inputs if a is not None]}
    return KernelSpec(name, "\n".join(src) + "\n", params, (blocks, 1, 1), (threads, 1, 1),
                      [dtypes[p] for p in params], t)


LANES = 8  # channels per vector run: 16 bytes of float16, 8 of int8
S8_LANES = 16  # an int8 max pool's run where 16 int8 channels align: 16 bytes, two channels per max
PAIR_LOWEST = 0xFF80FF80  # -128 in both 16-bit halves
BUSY = SMS * 1024  # threads a pool needs to take 16 int8 channels per thread (see _lanes)


def _lanes(x: TensorArg, out: TensorArg, is_max: bool, program) -> int:
    """How many channels each thread pools at once (on a GPU: the simulator has no vector loads): 8 of
    float16; of an int8 max pool without epilogue (int8 storage), 16 where their runs are 16-byte
    aligned and the pool still has a thread for each of 1024 per SM, else 8 (a batch-1 pool would
    leave most SMs idle with half the threads); else 1."""
    if simulated():
        return 1
    if runs_of_8(x) and runs_of_8(out):
        return LANES
    if not (is_max and not program and runs_of_8(x, "int8") and runs_of_8(out, "int8")):
        return 1
    busy = int(np.prod(out.shape, dtype=np.int64)) // S8_LANES >= BUSY
    return S8_LANES if runs_of(x, S8_LANES, "int8") and runs_of(out, S8_LANES, "int8") and busy else LANES


def _first(x: TensorArg, lanes: int, is_max: bool, cd) -> str:
    """The accumulators' start: -128 for int8 runs (in both halves of a 16-channel run's words), else
    the lowest value (max) or 0 (average)."""
    if x.dtype == "int8" and lanes > 1:
        return f"uint32({PAIR_LOWEST})" if lanes == S8_LANES else "int32(-128)"
    return lowest(cd) if is_max else literal(0, cd)


def _max_run_s8(x: TensorArg) -> list[str]:
    """The innermost lines for 16 int8 channels: one 16-byte load, each word spread into its even and
    odd bytes as 16-bit halves, and ``max.s16x2`` into acc0..acc7 (acc2w: word w's bytes 0, 2; acc2w+1:
    bytes 1, 3)."""
    lines = [f"r0, r1, r2, r3 = ld_v4({x.param}, at)"]
    for w in range(4):
        lines += [f"e{w}, o{w} = spread_s8(r{w})", f"acc{2 * w} = max_s16x2(acc{2 * w}, e{w})",
                  f"acc{2 * w + 1} = max_s16x2(acc{2 * w + 1}, o{w})"]
    return lines


def _store_run_s8(out: TensorArg, coords) -> list[str]:
    """The 16 maxima back into 16 bytes (``gather_s8`` of each word's even and odd halves), one store."""
    packed = ", ".join(f"gather_s8(acc{2 * w}, acc{2 * w + 1})" for w in range(4))
    return [f"st_v4({out.param}, {index_of(out, out.shape, coords)}, {packed})"]


def _accumulate_run(x: TensorArg, is_max: bool) -> list[str]:
    """The innermost lines for 8 channels: one vector load at ``at``, widened (float16 to float32,
    int8 to int32), into acc0..acc7."""
    if x.dtype == "int8":
        lines = [f"r0, r1 = ld_v2({x.param}, at)"]
        lines += [f"v{4 * r}, v{4 * r + 1}, v{4 * r + 2}, v{4 * r + 3} = unpack_s8(r{r})" for r in range(2)]
    else:
        lines = [f"r0, r1, r2, r3 = ld_v4({x.param}, at)"]
        lines += [f"v{2 * r}, v{2 * r + 1} = unpack_f16(r{r})" for r in range(LANES // 2)]
    return lines + [f"acc{e} = max(acc{e}, v{e})" if is_max else f"acc{e} += v{e}" for e in range(LANES)]


def _store_run(program, out: TensorArg, inputs, coords, cd) -> list[str]:
    """Each of the 8 channels through the epilogue, then one vector store."""
    lines, results = [], []
    for e in range(LANES):
        at = [coords[0], f"c1 + {e}"] + coords[2:]
        fetch = lambda k, at=at: load(inputs[k], index_of(inputs[k], out.shape, at), cd)
        body, result = epilogue.emit(program, f"acc{e}", fetch, cd, f"e{e}_")
        lines += body
        results.append(result)
    at = index_of(out, out.shape, coords)
    if out.dtype == "int8":  # int32 maxima of int8 values: pack their low bytes
        words = [f"pack_s8({', '.join(results[e:e + 4])})" for e in (0, 4)]
        return lines + [f"st_v2({out.param}, {at}, {', '.join(words)})"]
    packed = ", ".join(f"pack_f16({results[2 * r]}, {results[2 * r + 1]})" for r in range(LANES // 2))
    return lines + [f"st_v4({out.param}, {at}, {packed})"]


def _accumulate(geo, x: TensorArg, cd, is_max, indices, attrs) -> list[str]:
    """The innermost lines of the window loops: element ``at`` into ``acc`` (and ``arg``)."""
    inner = [f"v = {load(x, 'at', cd)}"]
    if is_max and indices is not None:
        flat = _flat_index(geo, x.shape[1], bool(attrs.get("storage_order", 0)))
        return inner + ["if v > acc or arg < 0:", "    acc = v", f"    arg = {flat}"]
    return inner + ["acc = max(acc, v)" if is_max else "acc += v"]


def _window_loops(geo, x: TensorArg, inner: list[str]) -> list[str]:
    """Nested loops over the window, skipping positions outside the input; ``inner`` runs at each
    inside position with ``at`` = its element index in X."""
    nsp = len(geo)
    spatial = [f"x{2 + i}" if x.strides[2 + i] == 1 else f"x{2 + i} * {x.strides[2 + i]}" for i in range(nsp)]
    inner = [f"at = {' + '.join(['xb'] + spatial)}"] + inner
    for i in reversed(range(nsp)):
        n, k, s, d, pb, pe, o = geo[i]
        a = 2 + i
        pos = f"x{a} = p{a}" + (f" + k{a}" if d == 1 else f" + k{a} * {d}")
        low, high = pb > 0, (o - 1) * s - pb + (k - 1) * d >= n
        test = (f"0 <= x{a} < {n}" if low and high else f"x{a} >= 0" if low else f"x{a} < {n}" if high else "")
        inner = [f"for k{a} in range({k}):", "    " + pos] + indent([f"if {test}:"] + indent(inner) if test
                                                                   else inner)
    return inner


def _flat_index(geo, channels: int, column_major: bool) -> str:
    """MaxPool Indices: the flat position in X (row or column major over the spatial axes)."""
    nsp = len(geo)
    sizes = [g[0] for g in geo]
    terms, scale = [], 1
    for i in (range(nsp) if column_major else reversed(range(nsp))):
        terms.append(f"x{2 + i}" if scale == 1 else f"x{2 + i} * {scale}")
        scale *= sizes[i]
    return f"(c0 * {channels} + c1) * {scale} + " + " + ".join(terms)


def _counts(geo, include_pad: bool, cd) -> tuple[list[str], str]:
    """AveragePool's divisor: (lines counting each axis's cells of the window, their product)."""
    lines, factors = [], []
    for i, (n, k, s, d, pb, pe, o) in enumerate(geo):
        a = 2 + i
        lo, hi = (-pb, n + pe) if include_pad else (0, n)
        if -pb >= lo and (o - 1) * s - pb + (k - 1) * d < hi:
            factors.append(str(k))  # every window lies inside [lo, hi) along this axis
            continue
        if d == 1:
            lines.append(f"n{a} = min(p{a} + {k}, {hi}) - max(p{a}, {lo})")
        else:
            lines += [f"n{a} = 0", f"for k{a} in range({k}):",
                      f"    if {lo} <= p{a} + k{a} * {d} < {hi}:", f"        n{a} += 1"]
        factors.append(f"n{a}")
    return lines, f"{cd}({' * '.join(factors)})"


# -- global pools -------------------------------------------------------------------------------------

def _global(node, base, name, programs, splits, outputs, inputs, cd, tactic) -> KernelSpec:
    x = inputs[0]
    rows = Rows(x.shape, tuple(range(2, len(x.shape))))
    t = resolve(tactic, rows, x)
    code = RowCode(rows, t, cd)
    is_max = base == "GlobalMaxPool"
    per_row = [f"xb = {code.base(x)}"]
    per_row += code.fold(x, "acc", "max" if is_max else "sum", lowest(cd) if is_max else literal(0, cd))
    finish = [] if is_max else [f"acc = acc / {literal(rows.L, cd)}"]
    finish += _epilogues(programs, splits, outputs, inputs, rows.coords("0"), cd)
    per_row += [f"if {code.leader()}:"] + indent(finish)
    params = _params(outputs, inputs, programs)
    src = header("pool", node, t, outputs, [a for a in inputs if a is not None])
    src.append(f"# {base}: {rows.R} rows (n, c) x {rows.L} spatial elements, a block-level tree reduction")
    src += code.function(name, params, per_row)
    grid, block = code.launch()
    dtypes = {a.param: a.dtype for a in outputs + [a for a in inputs if a is not None]}
    return KernelSpec(name, "\n".join(src) + "\n", params, grid, block, [dtypes[p] for p in params], t)
