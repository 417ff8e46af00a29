"""The tiled matrix-product core shared by the conv (implicit GEMM) and gemm templates.

For one grid z (a conv group, a MatMul batch) a block computes the BM×BN tile at (m0, n0) of
``C[m, n] = Σ_k A[m, k] · B[k, n]`` (M×N×K), stepping over K in BK slices:

- each thread copies BK·BM/T elements of A and BK·BN/T of B from global memory into shared tiles
  ``a_tile[k, m]`` / ``b_tile[k, n]``, consecutive threads along the operand's contiguous axis
  (coalesced); the loads of the next slice are issued into registers before the current slice is
  multiplied (a register prefetch), so their latency hides behind the FMAs;
- each thread multiplies a TM×TN micro-tile held in scalar registers ``c<i>_<j>``: rows
  ``ty + i·BM/TM``, columns ``tx + j·BN/TN`` (strided, so the shared reads are conflict-free and the
  final stores coalesce);
- with split_k = S > 1 the block's threads form S slices that take every S-th K slice; their
  partial tiles are summed (in a fixed order) through shared memory before the store;
- finished micro-tiles go through shared memory (one row of micro-tiles at a time), so the store —
  bounds check, epilogue, write — appears once in the source, as a loop in which consecutive threads
  take consecutive columns (coalesced), and Numba compiles it once instead of TM·TN times;
- ``unroll`` writes the BK loop out: constant shared-memory offsets (no per-load address arithmetic)
  at 2–3× the compile time;
- int8 operands (``pack`` = 4, ``int8.py``) go into the tiles as 32-bit words of four K-consecutive
  int8 values (``pack_s8``: byte d holds k = 4·w + d, each element loaded and bounds-checked on its
  own), so a tile row is a word of K and a slice covers 4·BK of it; the multiply is
  ``c = dp4a(a, b, c)``, four products and their sum into the int32 accumulator in one instruction
  (inline PTX ``dp4a.s32.s32``; in the simulator a plain-integer stand-in, ``sim_intrinsics.py``).

The template supplies each operand as an :class:`Operand` (how a thread finds element (x, k): setup
outside the K loop, the load inside it), the per-column variables of the store (its output
coordinates) and a store call applied to every finished element (bounds
checks, epilogue, write). Out-of-range elements load as zero, so no tile size has to divide anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

MAX_SHARED = 48 * 1024
MAX_THREADS = 1024
SMS = 132  # H100 SXM

TILES = [  # bm, bn, bk, tm, tn, split_k: big tiles for batched layers, split-K for few-block ones
    (128, 128, 8, 8, 8, 1), (128, 64, 8, 8, 8, 1), (64, 128, 8, 8, 8, 1), (64, 64, 8, 8, 8, 1),
    (64, 64, 16, 4, 4, 1), (64, 32, 16, 4, 4, 1), (32, 64, 16, 4, 4, 1), (32, 32, 16, 4, 4, 1),
    (64, 32, 8, 4, 4, 4), (32, 32, 8, 4, 4, 4), (32, 16, 8, 2, 2, 4), (16, 16, 8, 2, 2, 4),
]
# The BK loop written out (constant shared-memory offsets: ~1.4x fewer instructions per FMA in the
# SASS, 2-3x the compile time); the looped form of the three main tiles stays in the space too.
TACTICS = ([dict(bm=bm, bn=bn, bk=bk, tm=tm, tn=tn, split_k=sk, unroll=True) for bm, bn, bk, tm, tn, sk in TILES]
           + [dict(bm=bm, bn=bn, bk=bk, tm=tm, tn=tn, split_k=sk, unroll=False) for bm, bn, bk, tm, tn, sk in TILES[:3]])


def pick(m: int, n: int, z: int) -> dict:
    """A tile without tuning: the largest (first listed) that gives two waves of blocks and is not
    much taller than M; else the first split-K tile that fills one wave; else the smallest."""
    for t in TACTICS[:len(TILES)]:
        blocks = -(-n // t["bn"]) * -(-m // t["bm"]) * z
        if blocks >= SMS * (1 if t["split_k"] > 1 else 2) and t["bm"] <= max(16, 1 << (m - 1).bit_length()):
            return dict(t)
    return dict(TACTICS[len(TILES) - 1])


@dataclass(frozen=True)
class Tile:
    bm: int
    bn: int
    bk: int
    tm: int
    tn: int
    split_k: int = 1
    unroll: bool = False
    pack: int = 1  # K elements per tile entry: 4 for int8 operands (dp4a words)

    @staticmethod
    def of(tactic: dict, pack: int = 1) -> "Tile":
        return Tile(tactic["bm"], tactic["bn"], tactic["bk"], tactic["tm"], tactic["tn"],
                    tactic.get("split_k", 1), bool(tactic.get("unroll", False)), pack)

    @property
    def k_step(self) -> int:
        """K elements per slice: BK tile rows of ``pack`` elements."""
        return self.bk * self.pack

    @property
    def slice_threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def threads(self) -> int:
        return self.split_k * self.slice_threads

    def pad(self, x: int, k_major: bool) -> int:
        """Row padding of a k-major tile so that the transposing stores hit distinct banks."""
        return 32 // self.bk if k_major and x % 32 == 0 and self.bk <= 32 else 0

    def shared_bytes(self, a_k_major: bool, b_k_major: bool) -> int:
        tiles = self.split_k * self.bk * (self.bm + self.pad(self.bm, a_k_major) + self.bn + self.pad(self.bn, b_k_major))
        reduce = self.split_k * self.bm * self.bn if self.split_k > 1 else (self.bm // self.tm) * self.bn
        return 4 * (tiles + reduce)

    def problems(self, a_k_major: bool, b_k_major: bool) -> list[str]:
        """Why this tile cannot be generated (empty if it can)."""
        why = []
        if self.bm % self.tm or self.bn % self.tn:
            why.append("micro-tile does not divide the block tile")
            return why
        if not 32 <= self.threads <= MAX_THREADS:
            why.append(f"{self.threads} threads")
        why += copy_problems(self.bk, self.bm, self.bn, self.slice_threads, a_k_major, b_k_major)
        if (self.tm * self.tn) % self.split_k:
            why.append(f"split_k {self.split_k} does not divide the micro-tile")
        if self.shared_bytes(a_k_major, b_k_major) > MAX_SHARED:
            why.append(f"{self.shared_bytes(a_k_major, b_k_major)} bytes of shared memory")
        return why


def copy_problems(bk: int, bm: int, bn: int, threads: int, a_k_major: bool, b_k_major: bool) -> list[str]:
    """Why ``threads`` cannot share the copies of a BK×BM and a BK×BN tile (see ``_mapping``)."""
    why = []
    for x, k_major in ((bm, a_k_major), (bn, b_k_major)):
        if (bk * x) % threads:
            why.append(f"{bk}x{x} tile does not split over {threads} threads")
        elif k_major and threads % bk:
            why.append(f"{threads} threads do not cover BK={bk}")
        elif not k_major and threads % x and x % threads:
            why.append(f"{threads} threads and a {x}-wide tile do not nest")
    return why


@dataclass
class Operand:
    """One side of the product. ``x`` is its free index (m for A, n for B).

    ``setup(x, p)``: lines run once per thread that define variables named ``p...`` for global free
    index ``x`` (an expression). ``load(p, k, t)``: (lines, extra conditions, element expression) of
    element (x, k) using the setup variables ``p...`` and temporaries named ``t...``. ``per_slice(p)``
    (optional): lines run at every K slice (after ``k0`` moved on) before the loads of free index p.
    """

    extent: int
    k_major: bool
    setup: Callable[[str, str], list[str]]
    load: Callable[[str, str, str], tuple[list[str], list[str], str]]
    per_slice: Callable[[str], list[str]] | None = None


def _mapping(op: Operand, x_tile: int, t: Tile, r: int):
    """(x base, x const, k base, k const) of the r-th element a thread copies into a tile."""
    ts, bk = t.slice_threads, t.bk
    if op.k_major:  # element e = st + r·T: k = e % BK, x = e // BK
        return f"st // {bk}", r * (ts // bk), f"st % {bk}", 0
    if ts % x_tile == 0:  # x = e % X, k = e // X
        return f"st % {x_tile}", 0, f"st // {x_tile}", r * (ts // x_tile)
    q = x_tile // ts
    return "st", (r % q) * ts, None, r // q


def _plus(base: str | None, const: int) -> str:
    if base is None:
        return str(const)
    return f"{base} + {const}" if const else base


class _Loader:
    """Code for one operand's share of the tile copies."""

    def __init__(self, op: Operand, name: str, x0: str, x_tile: int, t: Tile, k_total: int,
                 zero: str = "float32(0.0)"):
        self.op, self.name, self.t, self.k_total, self.zero, self.pack = op, name, t, k_total, zero, t.pack
        self.count = t.bk * x_tile // t.slice_threads
        self.maps = [_mapping(op, x_tile, t, r) for r in range(self.count)]
        self.x0, self.x_tile = x0, x_tile
        self.slot = "ks, " if t.split_k > 1 else ""

    def setup(self) -> list[str]:
        n, lines = self.name, []
        xb, _, kb, _ = self.maps[0]
        lines.append(f"{n}xl = {xb}")
        if kb is not None:
            lines.append(f"{n}kl = {kb}")
        for u, xc in enumerate(self.xconsts()):
            lines.append(f"{n}x{u} = {self.x0} + {_plus(f'{n}xl', xc)}")
            if self.op.extent % self.x_tile:
                lines.append(f"{n}{u}_ok = {n}x{u} < {self.op.extent}")
            lines += self.op.setup(f"{n}x{u}", f"{n}{u}_")
        return lines

    def xconsts(self) -> list[int]:
        return list(dict.fromkeys(m[1] for m in self.maps))

    def loads(self) -> list[str]:
        """Global -> registers ``<name>r<r>`` for the K slice starting at k0."""
        n, lines, xcs, pack = self.name, [], self.xconsts(), self.pack
        kcs = list(dict.fromkeys(m[3] for m in self.maps))
        for v, kc in enumerate(kcs):
            base = f"{n}kl" if self.maps[0][2] is not None else None
            word = _plus(base, kc) if pack == 1 else _plus(base and f"{pack} * {base}", pack * kc)
            lines.append(f"{n}k{v} = k0 + {word}")
            lines += [f"{n}k{v}_{d} = {n}k{v} + {d}" for d in range(1, pack)]
        if self.op.per_slice:
            lines += [ln for u in range(len(xcs)) for ln in self.op.per_slice(f"{n}{u}_")]
        for r, (_, xc, kb, kc) in enumerate(self.maps):
            u, v = xcs.index(xc), kcs.index(kc)
            if pack == 1:
                lines += self._guarded(f"{n}r{r}", u, f"{n}k{v}", self.op.load(f"{n}{u}_", f"{n}k{v}", f"{n}t{r}_"))
                continue
            ks = [f"{n}k{v}"] + [f"{n}k{v}_{d}" for d in range(1, pack)]
            lines += self._word(f"{n}r{r}", u, ks, [f"{n}t{r}_{d}_" for d in range(pack)])
        return lines

    def _word(self, reg: str, u: int, ks: list[str], tmps: list[str]) -> list[str]:
        """``reg`` = the word of elements (x, ``ks``), packed. When they share their conditions (K a
        multiple of the pack, no per-element window), one condition guards the word (fewer branches:
        Numba's compile time grows with them); else each element has its own."""
        loads = [self.op.load(f"{self.name}{u}_", k, tmp) for k, tmp in zip(ks, tmps)]
        if self.k_total % self.pack == 0 and all(not b and c == loads[0][1] for b, c, _ in loads):
            return self._guarded(reg, u, ks[0], ([], loads[0][1], f"pack_s8({', '.join(e for _, _, e in loads)})"))
        regs = [f"{reg}_{d}" for d in range(self.pack)]
        lines = [ln for r, k, load in zip(regs, ks, loads) for ln in self._guarded(r, u, k, load)]
        return lines + [f"{reg} = pack_s8({', '.join(regs)})"]

    def _guarded(self, reg: str, u: int, k: str, load: tuple[list[str], list[str], str]) -> list[str]:
        """``reg`` = the value ``load`` (an ``Operand.load`` result) for free index u, zero when u lies
        outside the operand or ``k`` past K."""
        body, conds, expr = load
        conds = ([f"{self.name}{u}_ok"] if self.op.extent % self.x_tile else []) + [f"{k} < {self.k_total}"] + conds
        return body + [f"{reg} = {expr} if {' and '.join(conds)} else {self.zero}"]

    def stores(self) -> list[str]:
        n = self.name
        return [f"{n}_tile[{self.slot}{_plus(f'{n}kl' if kb is not None else None, kc)}, "
                f"{_plus(f'{n}xl', xc)}] = {n}r{r}" for r, (_, xc, kb, kc) in enumerate(self.maps)]


def kernel(name: str, params: list[str], t: Tile, mnk: tuple[int, int, int], a: Operand, b: Operand,
           prologue: list[str], store: Callable[[str, str], str], columns: Callable[[str], list[str]],
           slice_lines: tuple[str, ...] = (), acc: str = "float32") -> list[str]:
    """Source lines of the kernel ``name``. ``columns(n)``: lines that define the variables the store
    needs for column ``n`` (an expression); ``store(value, m)``: one store statement for row ``m`` of
    that column; ``slice_lines``: run at every K slice (after ``k0`` moved on) before the loads.
    ``acc``: the dtype of the tiles and accumulators ("float32", or "int32" for int8 operands: the
    reads give integers, products are summed exactly and the store receives the int32 sum; with
    ``t.pack`` = 4 the tiles hold dp4a words)."""
    _, _, k_total = mnk
    rx, sk = t.bn // t.tn, t.split_k
    zero = "int32(0)" if acc == "int32" else "float32(0.0)"
    la = _Loader(a, "a", "m0", t.bm, t, k_total, zero)
    lb = _Loader(b, "b", "n0", t.bn, t, k_total, zero)
    slices = -(-k_total // t.k_step)
    steps = -(-slices // sk)
    lead = (sk,) if sk > 1 else ()
    body = ["tid = cuda.threadIdx.x", "z = cuda.blockIdx.z",
            f"m0 = cuda.blockIdx.y * {t.bm}", f"n0 = cuda.blockIdx.x * {t.bn}"]
    body += [f"ks = tid // {t.slice_threads}  # split-K slice", f"st = tid % {t.slice_threads}"] if sk > 1 else ["st = tid"]
    body += [f"tx = st % {rx}", f"ty = st // {rx}",
             f"a_tile = cuda.shared.array({lead + (t.bk, t.bm + t.pad(t.bm, a.k_major))}, {acc})",
             f"b_tile = cuda.shared.array({lead + (t.bk, t.bn + t.pad(t.bn, b.k_major))}, {acc})"]
    body += prologue + ["# what this thread copies into the tiles"] + la.setup() + lb.setup()
    body += [f"c{i}_{j} = {zero}" for i in range(t.tm) for j in range(t.tn)]
    body += [f"k0 = ks * {t.k_step}" if sk > 1 else "k0 = 0"] + list(slice_lines) + la.loads() + lb.loads()
    body += [f"for step in range({steps}):"]
    loop = la.stores() + lb.stores() + ["cuda.syncthreads()", f"k0 += {t.k_step * sk}",
                                         "# prefetch the next K slice while this one is multiplied"]
    loop += list(slice_lines) + la.loads() + lb.loads() + _multiply(t) + ["cuda.syncthreads()"]
    body += ["    " + line for line in loop]
    body += _finish(t, store, columns, acc)
    return [f"def {name}({', '.join(params)}):"] + ["    " + line for line in body]


def _multiply(t: Tile) -> list[str]:
    ry, rx = t.bm // t.tm, t.bn // t.tn
    slot = "ks, " if t.split_k > 1 else ""

    def step(kk: str) -> list[str]:
        lines = [f"a{i} = a_tile[{slot}{kk}, {_plus('ty', i * ry)}]" for i in range(t.tm)]
        lines += [f"b{j} = b_tile[{slot}{kk}, {_plus('tx', j * rx)}]" for j in range(t.tn)]
        product = "c{i}_{j} = dp4a(a{i}, b{j}, c{i}_{j})" if t.pack > 1 else "c{i}_{j} += a{i} * b{j}"
        lines += ["; ".join(product.format(i=i, j=j) for j in range(t.tn)) for i in range(t.tm)]
        return lines

    if t.unroll:
        return [line for kk in range(t.bk) for line in step(str(kk))]
    return [f"for kk in range({t.bk}):"] + ["    " + line for line in step("kk")]


def _finish(t: Tile, store: Callable[[str, str], str], columns: Callable[[str], list[str]],
            acc: str = "float32") -> list[str]:
    """Store every finished element through ``store`` (one copy of it in the source: the
    micro-tiles go through shared memory, so the stores are a loop with consecutive threads on
    consecutive columns). When the block has a multiple of BN threads, each thread keeps one column
    throughout, so ``columns`` (e.g. the output coordinates of column n) runs once per thread."""
    ry, rx, sk = t.bm // t.tm, t.bn // t.tn, t.split_k
    fixed = t.threads % t.bn == 0
    head = [f"col = tid % {t.bn}", f"row0 = tid // {t.bn}", "n = n0 + col"] + columns("n") if fixed else []

    def element(r: str) -> list[str]:
        if fixed:
            return [f"row = row0 + {r} * {t.threads // t.bn}"]
        return [f"e = tid + {r} * {t.threads}", f"row = e // {t.bn}", f"col = e % {t.bn}", "n = n0 + col"] + columns("n")

    if sk == 1:
        lines = ["# stage the micro-tiles through shared memory, one row of them at a time",
                 f"stage = cuda.shared.array(({ry}, {t.bn}), {acc})"] + head + [f"for i in range({t.tm}):"]
        for i in range(t.tm):
            lines.append(f"    {'if' if i == 0 else 'elif'} i == {i}:")
            lines += [f"        stage[ty, {_plus('tx', j * rx)}] = c{i}_{j}" for j in range(t.tn)]
        lines += ["    cuda.syncthreads()", f"    for r in range({t.tn}):"]
        lines += ["        " + line for line in element("r") + [store("stage[row, col]", f"m0 + row + i * {ry}")]]
        return lines + ["    cuda.syncthreads()"]
    lines = ["# sum the split-K slices' partial tiles",
             f"partial = cuda.shared.array(({sk}, {t.bm}, {t.bn}), {acc})"]
    lines += [f"partial[ks, {_plus('ty', i * ry)}, {_plus('tx', j * rx)}] = c{i}_{j}"
              for i in range(t.tm) for j in range(t.tn)]
    total = " + ".join(f"partial[{s}, row, col]" for s in range(sk))
    lines += ["cuda.syncthreads()"] + head + [f"for r in range({t.bm * t.bn // t.threads}):"]
    return lines + ["    " + line for line in element("r") + [store(total, "m0 + row")]]


def launch(t: Tile, m_total: int, n_total: int, z: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return (-(-n_total // t.bn), -(-m_total // t.bm), z), (t.threads, 1, 1)


def grid_problems(t: Tile, m_total: int, n_total: int, z: int) -> list[str]:
    grid, _ = launch(t, m_total, n_total, z)
    return [f"grid {grid} exceeds the launch limits"] if grid[1] > 65535 or grid[2] > 65535 or grid[0] >= 2 ** 31 else []
