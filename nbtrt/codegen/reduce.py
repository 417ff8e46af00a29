"""Row reductions: ReduceSum / ReduceMean / ReduceMax over constant axes, and the block-per-row
skeleton that the global pools, Softmax and the normalizations share.

A tensor of shape S is split into R independent *rows* (the kept axes) of L elements each (the reduced
axes). A block of ``threads × rows`` threads (``cuda.threadIdx.x`` along a row, ``.y`` picks the row)
handles ``rows`` rows at a time in a block-uniform grid-stride loop: each thread folds its strided share
of the row (``for j in range(tx, L, threads)``) into a register, then the ``threads`` partials meet in a
shared-memory tree (``red[ty, tx]``, ``cuda.syncthreads()`` between levels; unrolled, since ``threads``
is baked). ``threads = 1`` is a thread per row with no shared memory at all: the right choice when
rows are short, or when adjacent rows are adjacent in memory and the row itself is strided (Softmax
over the channels of NCHW). Addresses use each tensor's own strides (broadcast dims have stride 0);
when a tensor's reduced dims form one affine run (the usual case) an element is ``base + j·σ`` and no
per-element division is needed. Float sums accumulate in float32 (float16 is widened on load and
rounded on store; float64 stays float64).

Tactic space: ``threads`` (a power of two) × ``rows``; ``"auto"`` picks by shape (see :func:`resolve`);
an optional ``blocks`` caps the grid (the loops over rows and elements cover the rest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import Node
from ..ops.reduce import reduce_axes
from ..ops.schema import const_ints
from .kernel import (KernelSpec, TensorArg, compute_dtype, contiguous_strides, header, identifier, indent,
                     index_of, literal, load, store)

ROW_TACTICS = [{"threads": t, "rows": r} for t, r in
               ((1, 128), (1, 256), (32, 4), (32, 8), (64, 4), (128, 2), (256, 1), (512, 1), (1024, 1))]
TACTICS = ROW_TACTICS
DEFAULT = {"threads": "auto", "rows": "auto"}
MAX_BLOCKS = 132 * 32


def lowest(dtype: str) -> str:
    """The identity of max as a typed literal."""
    if dtype == "bool":
        return "False"
    if np.issubdtype(np.dtype(dtype), np.integer):
        return literal(np.iinfo(np.dtype(dtype)).min, dtype)
    return literal(-math.inf, dtype)


@dataclass(frozen=True)
class Rows:
    """The rows of a tensor of ``shape`` reduced over ``red`` (ascending axes); ``keep`` the others."""

    shape: tuple[int, ...]
    red: tuple[int, ...]

    @property
    def keep(self) -> tuple[int, ...]:
        return tuple(a for a in range(len(self.shape)) if a not in self.red)

    @property
    def R(self) -> int:
        return int(np.prod([self.shape[a] for a in self.keep], dtype=np.int64))

    @property
    def L(self) -> int:
        return int(np.prod([self.shape[a] for a in self.red], dtype=np.int64))

    def coords(self, reduced: str | None = None) -> list[str]:
        """Names of the coordinates (``c<axis>``); reduced axes read ``reduced`` if given."""
        return [reduced if reduced is not None and a in self.red else f"c{a}" for a in range(len(self.shape))]


def resolve(tactic: dict | None, rows: Rows, x: TensorArg) -> dict:
    """Fill ``"auto"`` entries: a thread per row for short rows, and for strided rows whose neighbours
    are adjacent in memory (enough of them to fill the GPU); otherwise enough threads for ~4 elements
    each (32 to 512) and 256 threads per block."""
    t = dict(DEFAULT, **(tactic or {}))
    if t["threads"] == "auto":
        eff = effective_strides(x, rows.shape)
        inner = next((eff[a] for a in reversed(rows.red) if rows.shape[a] > 1), 1)
        step = next((eff[a] for a in reversed(rows.keep) if rows.shape[a] > 1), 1)
        if rows.L <= 16 or (inner != 1 and step == 1 and rows.R >= 2048):
            t["threads"] = 1
        else:
            t["threads"] = min(512, max(32, 1 << max(0, math.ceil(math.log2(max(1, rows.L / 4))))))
    if t["rows"] == "auto":
        t["rows"] = max(1, 256 // t["threads"])
    if t["threads"] & (t["threads"] - 1) or t["threads"] * t["rows"] > 1024:
        raise ValueError(f"bad row tactic {t}: threads must be a power of two, threads·rows <= 1024")
    return t


def element_tactic(tactic: dict | None) -> dict:
    """The block of a thread-per-element kernel: ``threads × rows`` threads (auto: 256)."""
    t = dict(DEFAULT, **(tactic or {}))
    threads = 256 if t["threads"] == "auto" else t["threads"] * (1 if t["rows"] == "auto" else t["rows"])
    return {"threads": threads, "rows": 1, **({"blocks": t["blocks"]} if "blocks" in t else {})}


def grid_blocks(work: int, per_block: int, t: dict) -> int:
    """Blocks for ``work`` items, ``per_block`` each, capped (grid-stride loops do the rest); the
    optional tactic entry ``blocks`` lowers the cap."""
    return max(1, min(-(-work // per_block), t.get("blocks", MAX_BLOCKS)))


def effective_strides(arg: TensorArg, shape) -> list[int]:
    """``arg``'s element stride along each axis of ``shape`` (right-aligned; 0 where it broadcasts)."""
    lead = len(shape) - len(arg.shape)
    eff = [0] * len(shape)
    for k, (d, s) in enumerate(zip(arg.shape, arg.strides)):
        eff[lead + k] = s if d != 1 else 0
    return eff


def _unravel(flat: str, shape, names) -> list[str]:
    """Lines setting each name to its coordinate of ``flat`` in ``shape`` (size-1 dims: 0)."""
    lines, strides = [], contiguous_strides(shape)
    for k, (d, s, name) in enumerate(zip(shape, strides, names)):
        q = flat if s == 1 else f"{flat} // {s}"
        if d == 1:
            lines.append(f"{name} = 0")
        elif k == 0 or s * d >= int(np.prod(shape, dtype=np.int64)):
            lines.append(f"{name} = {q}")
        else:
            lines.append(f"{name} = {q if s == 1 else f'({q})'} % {d}")
    return lines


class RowCode:
    """Source pieces of a block-per-row kernel over ``rows`` with a resolved tactic ``t``."""

    def __init__(self, rows: Rows, t: dict, cd: str):
        self.rows, self.t, self.cd = rows, t, cd
        self.T, self.Y = t["threads"], t["rows"]

    # -- addressing ----------------------------------------------------------------------------------
    def base(self, arg: TensorArg) -> str:
        """The index of ``arg``'s element at the row start (kept coordinates only)."""
        eff = effective_strides(arg, self.rows.shape)
        terms = [str(arg.offset)] if arg.offset else []
        terms += [f"c{a}" if eff[a] == 1 else f"c{a} * {eff[a]}" for a in self.rows.keep
                  if eff[a] and self.rows.shape[a] > 1]
        return " + ".join(terms) or "0"

    def step(self, arg: TensorArg) -> int | None:
        """σ when ``arg``'s element j of a row is ``base + j·σ`` (0: constant along the row), else None."""
        eff = effective_strides(arg, self.rows.shape)
        dims = [a for a in reversed(self.rows.red) if self.rows.shape[a] > 1]
        if all(eff[a] == 0 for a in dims):
            return 0
        sigma, run = eff[dims[0]], 1
        for a in dims:
            if eff[a] != sigma * run:
                return None
            run *= self.rows.shape[a]
        return sigma

    def element(self, arg: TensorArg, base_var: str) -> str:
        """``arg``'s index at element j of the row (``base_var`` holds :meth:`base`)."""
        sigma = self.step(arg)
        if sigma is not None:
            return base_var if sigma == 0 else f"{base_var} + j" + ("" if sigma == 1 else f" * {sigma}")
        eff = effective_strides(arg, self.rows.shape)
        terms = [f"c{a}" if eff[a] == 1 else f"c{a} * {eff[a]}" for a in self.rows.red
                 if eff[a] and self.rows.shape[a] > 1]
        return " + ".join([base_var] + terms)

    # -- structure ------------------------------------------------------------------------------------
    def function(self, name: str, params: list[str], per_row: list[str]) -> list[str]:
        """The kernel: the block-uniform loop over row groups around ``per_row`` (which sees ``r``,
        ``live`` and the kept coordinates ``c<axis>``)."""
        rows, keep = self.rows, self.rows.keep
        lines = [f"def {name}({', '.join(params)}):",
                 "    tx = cuda.threadIdx.x",
                 "    ty = cuda.threadIdx.y"]
        if self.T > 1:
            lines.append(f"    red = cuda.shared.array(({self.Y}, {self.T}), {self.cd})")
        lines += [f"    r0 = cuda.blockIdx.x * {self.Y}",
                  f"    while r0 < {rows.R}:  # every thread of the block runs the same iterations",
                  "        r = r0 + ty",
                  f"        live = r < {rows.R}"]
        body = _unravel("r", [rows.shape[a] for a in keep], [f"c{a}" for a in keep]) + per_row
        lines += indent(body, 2)
        lines.append(f"        r0 += cuda.gridDim.x * {self.Y}")
        return lines

    def loop(self, body: list[str], coords: bool = False, pre=()) -> list[str]:
        """``body`` for each element j of the row this thread owns (``coords``: set ``c<axis>`` of the
        reduced axes first), after the per-row lines ``pre`` (all under ``if live``)."""
        red = self.rows.red
        inner = _unravel("j", [self.rows.shape[a] for a in red], [f"c{a}" for a in red]) if coords else []
        rng = f"range({self.rows.L})" if self.T == 1 else f"range(tx, {self.rows.L}, {self.T})"
        return ["if live:"] + indent(list(pre)) + [f"    for j in {rng}:"] + indent(inner + body, 2)

    def combine(self, var: str, op: str) -> list[str]:
        """Lines leaving in ``var`` (every thread of the row) the ``op`` ("sum"/"max") of the row's
        partials; run by all threads of the block."""
        if self.T == 1:
            return []
        lines = [f"red[ty, tx] = {var}", "cuda.syncthreads()"]
        s = self.T // 2
        while s >= 1:
            pair = f"red[ty, tx] + red[ty, tx + {s}]" if op == "sum" else f"max(red[ty, tx], red[ty, tx + {s}])"
            lines += [f"if tx < {s}:" if s > 1 else "if tx == 0:", f"    red[ty, tx] = {pair}", "cuda.syncthreads()"]
            s //= 2
        return lines + [f"{var} = red[ty, 0]", "cuda.syncthreads()  # red is reused"]

    def leader(self) -> str:
        """The condition of the one thread that writes a row's results."""
        return "live" if self.T == 1 else "live and tx == 0"

    def fold(self, x: TensorArg, var: str, op: str, init: str, value=None) -> list[str]:
        """Declare ``var``, fold the row of ``x`` (index base in ``xb``) into it, each element ``v``
        mapped through ``value`` (source -> source) first, then combine across the row's threads."""
        v = value("v") if value else "v"
        step = f"{var} += {v}" if op == "sum" else f"{var} = max({var}, {v})"
        body = [f"v = {load(x, self.element(x, 'xb'), self.cd)}", step]
        return [f"{var} = {init}"] + self.loop(body, coords=self.step(x) is None) + self.combine(var, op)

    def launch(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        return (grid_blocks(self.rows.R, self.Y, self.t), 1, 1), (self.T, self.Y, 1)


# -- ReduceSum / ReduceMean / ReduceMax ---------------------------------------------------------------

def reduced_axes(node: Node, rank: int) -> tuple[int, ...]:
    """The node's reduced axes (from its constant ``axes`` input); () for a no-op."""
    listed = const_ints(node, 1) if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if len(node.inputs) > 1 and node.inputs[1] is not None and listed is None:
        raise UnsupportedOpError([(node.name, f"{node.op} with computed axes")])
    axes = reduce_axes(node, rank, listed)
    return () if axes is None else tuple(sorted(axes))


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    x, out = inputs[0], outputs[0]
    if node.op == "ReduceMean" and np.dtype(x.dtype).kind != "f":
        raise UnsupportedOpError([(node.name, f"ReduceMean of {x.dtype} (no kernel)")])
    rows = Rows(x.shape, reduced_axes(node, len(x.shape)))
    t = resolve(tactic, rows, x)
    cd = compute_dtype(x.dtype)
    code = RowCode(rows, t, cd)
    op = "max" if node.op == "ReduceMax" else "sum"
    init = lowest(cd) if op == "max" else literal(0, cd)
    result = "acc" if node.op != "ReduceMean" else f"acc / {literal(rows.L, cd)}"
    keep = bool(node.attrs.get("keepdims", 1)) or not rows.red
    coords = rows.coords("0") if keep else [f"c{a}" for a in rows.keep]
    per_row = [f"xb = {code.base(x)}"] + code.fold(x, "acc", op, init)
    per_row += [f"if {code.leader()}:", "    " + store(out, index_of(out, out.shape, coords), result, cd)]
    name = f"{node.op.lower()}_{identifier(node.name)}"
    params = [out.param, x.param]
    lines = header("reduce", node, t, outputs, [x])
    lines.append(f"# rows: {rows.R} x {rows.L} elements (reduced axes {list(rows.red)})")
    lines += code.function(name, params, per_row)
    grid, block = code.launch()
    return KernelSpec(name, "\n".join(lines) + "\n", params, grid, block, [out.dtype, x.dtype], t)
