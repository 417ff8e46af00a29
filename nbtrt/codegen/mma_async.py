"""The pipelined tensor-core matrix-product core: K-contiguous operands, ``cp.async`` stages, ``ldmatrix``.

Same problem as ``mma_tiled.py`` — per grid z a block computes the BM×BN tile at (m0, n0) of
``C[m, n] = Σ_k A[m, k] · B[k, n]`` — for operands whose K axis is contiguous in memory in runs of 16
bytes: A as rows ``A[m, :]`` and B as rows ``Bᵀ[n, :]``. Math "f16": float16 operands (8 per 16-byte
chunk), ``mma m16n8k16``, float32 accumulators; math "s8": int8 operands (16 per chunk), ``mma
m16n8k32``, int32 accumulators (exact). For a conv this means channels-last activations and (tap,
channel)-ordered weights (the memory plan's NHWC / OHWI layouts), K ordered (tap, channel) and Cg a
multiple of a chunk's elements, so that a chunk is consecutive channels of one tap: 16 bytes at one
address.

Everything below is in bytes and the same for both maths: an s8 fragment is an f16 fragment's
registers with four int8 where there were two halves (``ptx.mma_s8``), so the tiles, swizzle and
``ldmatrix`` addresses do not change; a tile row's 64 bytes are BK = 32 halves or 64 int8, two mma
k-steps either way.

- Copies: each K slice of BK elements is BM + BN rows of four 16-byte chunks. Every thread owns fixed
  (row, chunk) pairs and issues ``cp.async`` for them, 16 bytes each, straight from global to shared
  memory (no registers, no per-element arithmetic); a chunk outside the operand (padding, a row or k
  past the end) is zero-filled by the copy itself. The operand supplies per-row setup, per-slice lines
  (e.g. the kernel tap of this thread's chunk) and each chunk's address and validity (``Rows``).
- Pipeline: STAGES shared-memory buffers; slices 0..S−2 are in flight before the loop; iteration kt
  waits for slice kt (``cp.async.wait_group S−2``), syncs (which also frees the buffer multiplied in
  iteration kt−1), issues slice kt+S−1 into that buffer and multiplies slice kt.
- Tiles are ``[row][k]``, 64 bytes per row, with the 16-byte chunks XOR-swizzled (chunk c of row r
  sits at ``c ^ ((r >> 1) & 3)``) so that both the copies and the eight rows each ``ldmatrix`` phase
  reads hit distinct banks without padding. Fragments are ``ldmatrix.x4`` (not transposed): one per
  16×16 A block and one per pair of 16×8 B blocks.
- Split K (``splits`` S > 1, for layers with too few tiles to fill the GPU, e.g. batch 1): grid z
  is (group, part); part p multiplies K slices [p·per, (p+1)·per) of its tile, stores its partial
  sums in the context's ``work`` scratch (each thread its registers: coalesced), fences, and counts
  itself in ``flags[tile]`` (an atomic add). The tile's last part to arrive reads all S partial sums
  back in part order (deterministic; through L2: ``ld_cg``), sets the counter back to zero for the
  next launch and runs the epilogue; the others leave.
- Epilogue: the pipeline's buffer is reused to stage one warp row's accumulators at a time as
  ``stage[n][m]`` (float32, int32 sums converted: a short-K s8 sum started at ``int8.MAGIC_BITS``, so
  one subtraction makes it a float; rows padded by 4 words: conflict-free writes), then
  every thread stores runs of 8 consecutive m of one column — coalesced for channels-last outputs —
  through the template's ``store(value, m)`` after ``columns(n)`` defined that column's variables
  (once per run: the column's coordinates cost integer divisions). What a run store loads of its
  column (a residual's words: ``fetch``) is loaded for the whole band before the band's first store.
  Split K with s8 keeps the partial sums int32 (their bits in the float32 scratch: ``st_s32`` /
  ``ld_cg_s32``), so the sum stays exact.
- Registers: every tactic carries launch bounds (``min_blocks``) capping them at REGISTERS per thread,
  two 256-thread blocks per SM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import int8
from .mma_tiled import MmaTile, products
from .tiled import MAX_SHARED

CHUNKS = 4  # 16-byte chunks per tile row
ROW_BYTES = 16 * CHUNKS
ELEMS = {"f16": 8, "s8": 16}  # elements per 16-byte chunk
BK = CHUNKS * ELEMS["f16"]  # K per slice of f16 (of s8: twice that)
MMA = {"f16": "mma_f16", "s8": "mma_s8"}
SHAPES = [  # bm, bn, wm, wn (warps along M and N), stages; in the heuristic's order of preference
    (128, 128, 2, 4, 3), (128, 128, 2, 4, 2), (128, 64, 2, 2, 3), (64, 128, 2, 2, 3), (64, 64, 2, 2, 4),
    (64, 32, 2, 1, 4), (32, 64, 1, 2, 4),
]
SPLITS = (2, 4, 8, 16)  # split-K parts (SPLIT_SHAPES only)
SPLIT_SHAPES = [(64, 64, 2, 2, 4), (128, 64, 2, 2, 3)]


REGISTERS = 128  # per thread at most (65536 per SM): 2 blocks of 256 threads, 4 of 128 resident per SM


def _tactics(math: str) -> list[dict]:
    bk = CHUNKS * ELEMS[math]
    bounded = lambda wm, wn: 65536 // (32 * wm * wn * REGISTERS)
    return ([dict(math=math, bm=bm, bn=bn, bk=bk, wm=wm, wn=wn, stages=s, min_blocks=bounded(wm, wn))
             for bm, bn, wm, wn, s in SHAPES]
            + [dict(math=math, bm=bm, bn=bn, bk=bk, wm=wm, wn=wn, stages=s, min_blocks=bounded(wm, wn), splits=k)
               for bm, bn, wm, wn, s in SPLIT_SHAPES for k in SPLITS])


TACTICS = _tactics("f16") + _tactics("s8")
# min_blocks: launch bounds asking for that many resident blocks per SM, which caps the registers at
# REGISTERS (ptxas -v: no s8 tile spills under the cap; f16 128-row tiles with a residual spill 4 bytes
# since their bias is read as vectors, and still ran faster), so that one block's copies overlap
# another's epilogue; without them the 128x128 tiles took 136 registers (one block per SM)
STAGE_PAD = 4  # words of padding per row of the epilogue's staging tile


@dataclass(frozen=True)
class AsyncTile(MmaTile):
    """``mma_tiled``'s block and warp tile (threads, fm × fn mma tiles per warp) plus the pipeline depth
    and the split-K parts."""

    stages: int = 3
    splits: int = 1

    @staticmethod
    def of(tactic: dict) -> "AsyncTile":
        return AsyncTile(tactic["math"], tactic["bm"], tactic["bn"], tactic["bk"], tactic["wm"], tactic["wn"],
                         stages=tactic["stages"], splits=tactic.get("splits", 1))

    @property
    def stage_bytes(self) -> int:
        return (self.bm + self.bn) * ROW_BYTES

    @property
    def elems(self) -> int:
        """Elements per 16-byte chunk."""
        return ELEMS[self.math]

    @property
    def acc(self) -> str:
        return "int32" if self.math == "s8" else "float32"

    @property
    def band(self) -> int:
        """Rows (m) of one warp row: the epilogue stages one band at a time."""
        return self.bm // self.wm

    def shared_bytes(self) -> int:
        return max(self.stages * self.stage_bytes, 4 * self.bn * (self.band + STAGE_PAD))

    def problems(self) -> list[str]:
        why = []
        if self.math not in ELEMS:
            return [f"math {self.math!r}: the pipelined tensor-core kernel is f16 or s8"]
        if self.bk != CHUNKS * self.elems:
            why.append(f"BK must be {CHUNKS * self.elems}")
        if self.bm % (16 * self.wm) or self.bn % (16 * self.wn):
            why.append("warp tile is not a whole number of 16x16 blocks")
        for rows in (self.bm, self.bn):
            if (rows * CHUNKS) % self.threads:
                why.append(f"{rows} rows of {CHUNKS} chunks do not split over {self.threads} threads")
        if self.band % 8 or self.threads % (self.band // 8) or self.bn % (self.threads // (self.band // 8)):
            why.append(f"{self.threads} threads do not store a band of {self.band}x{self.bn} in runs of 8 rows")
        if self.stages < 2 or self.stages > 4:
            why.append("2 to 4 stages")
        if self.splits not in (1,) + SPLITS:
            why.append(f"split K into one of {(1,) + SPLITS} parts")
        if self.shared_bytes() > MAX_SHARED:
            why.append(f"{self.shared_bytes()} bytes of shared memory")
        return why


@dataclass
class Rows:
    """One operand as rows of K-contiguous halves (A: row m; B: row n).

    ``setup(x, p)``: lines run once per thread defining variables ``p...`` for row ``x`` (an expression),
    among them ``p + "ok"`` when the row may lie past ``extent`` (the core adds that check).
    ``per_slice()``: lines run at every K slice, after ``kq`` (this thread's chunk's first k) is set.
    ``chunk(p)``: (lines, conditions, element index) of the chunk at k = kq of row ``p``."""

    extent: int
    array: str
    setup: Callable[[str, str], list[str]]
    chunk: Callable[[str], tuple[list[str], list[str], str]]
    per_slice: Callable[[], list[str]] = lambda: []


def swizzled(row: str, chunk: str) -> str:
    return f"({row}) * {ROW_BYTES} + ((({chunk}) ^ ((({row}) >> 1) & 3)) << 4)"


class _Copier:
    """One operand's share of a K slice's copies: ``count`` rows per thread, one chunk column."""

    def __init__(self, rows: Rows, name: str, x0: str, x_tile: int, t: AsyncTile, k_total: int, offset: int):
        self.rows, self.name, self.x0, self.x_tile, self.t = rows, name, x0, x_tile, t
        self.k_total, self.offset = k_total, offset
        self.count = x_tile * CHUNKS // t.threads
        self.step = t.threads // CHUNKS  # rows between a thread's copies

    def setup(self) -> list[str]:
        n, lines = self.name, []
        for r in range(self.count):
            row = f"tid // {CHUNKS} + {r * self.step}" if r else f"tid // {CHUNKS}"
            lines.append(f"{n}{r}_dst = {self.offset} + {swizzled(row, 'kc')}  # its place in a stage")
            lines.append(f"{n}{r}_x = {self.x0} + {row}")
            if self.rows.extent % self.x_tile:
                lines.append(f"{n}{r}_ok = {n}{r}_x < {self.rows.extent}")
            lines += self.rows.setup(f"{n}{r}_x", f"{n}{r}_")
        return lines

    def copies(self, slot: str) -> list[str]:
        lines = []
        for r in range(self.count):
            p = f"{self.name}{r}_"
            body, conds, index = self.rows.chunk(p)
            conds = ([f"{p}ok"] if self.rows.extent % self.x_tile else []) + ["k_ok"] + conds
            lines += body + [f"cp_async16(smem0 + {slot} + {p}dst, {self.rows.array}, {index}, {' and '.join(conds)})"]
        return lines


def kernel(name: str, params: list[str], t: AsyncTile, mnk: tuple[int, int, int], a: Rows, b: Rows,
           prologue: list[str], store: Callable[[str, str], str], columns: Callable[[str], list[str]],
           store_run: Callable[..., str] | None = None, fetch: Callable[[str], str] | None = None) -> list[str]:
    """Source lines of the kernel ``name``: ``store(value, m)`` stores the element of row ``m`` (an
    expression) of the column whose variables ``columns(n)`` defined; ``store_run(values, m)``, when
    given, stores rows m..m+7 of it at once; with ``fetch(m)`` (an expression: what the run store
    loads of that column, e.g. a residual's words) as ``store_run(values, m, words)``, every run of
    a band fetched before the band's first store. With ``t.splits`` > 1, ``params`` end with
    ``SCRATCH``'s."""
    _, _, k_total = mnk
    ca = _Copier(a, "a", "m0", t.bm, t, k_total, 0)
    cb = _Copier(b, "b", "n0", t.bn, t, k_total, t.bm * ROW_BYTES)
    slices = slices_per_part(t, k_total)
    words = t.shared_bytes() // 4
    if t.splits > 1:
        where = [f"z = cuda.blockIdx.z // {t.splits}  # the group", f"part = cuda.blockIdx.z % {t.splits}  # of K",
                 f"k_first = part * {slices * t.bk}", f"k_end = min({k_total}, k_first + {slices * t.bk})"]
    else:
        where = ["z = cuda.blockIdx.z", "k_first = 0", f"k_end = {k_total}"]
    body = ["tid = cuda.threadIdx.x"] + where + [f"m0 = cuda.blockIdx.y * {t.bm}",
            f"n0 = cuda.blockIdx.x * {t.bn}", "lane = tid % 32", "warp = tid // 32",
            f"wm = (warp // {t.wn}) * {t.band}  # this warp's tile: rows wm.., columns wn..",
            f"wn = (warp % {t.wn}) * {t.bn // t.wn}",
            f"smem = cuda.shared.array({words}, float32, alignment=16)  # {t.stages} stages of A and B tiles; "
            "then the epilogue (16-byte copies and ldmatrix rows need the alignment)",
            *(["arrived = cuda.shared.array(1, int32)  # parts of this tile done before this one"]
              if t.splits > 1 else []),
            "smem0 = shared_addr(smem)", f"kc = tid % {CHUNKS}  # the 16-byte chunk ({t.elems} k) this thread copies"]
    body += prologue + ca.setup() + cb.setup() + _lanes(t)
    zero = "float32(0.0)" if t.acc == "float32" else f"int32({int8.MAGIC_BITS})" if _biased(t, k_total) else "int32(0)"
    body += [f"c{i}_{j}_{e} = {zero}" for i in range(t.fm) for j in range(t.fn) for e in range(4)]

    def issue(k0: str, slot: str) -> list[str]:
        return ([f"kq = k_first + {k0} + kc * {t.elems}", "k_ok = kq < k_end"] + a.per_slice() + b.per_slice()
                + ca.copies(slot) + cb.copies(slot) + ["cp_async_commit()"])

    body.append(f"# the first {t.stages - 1} K slices in flight")
    for s in range(t.stages - 1):
        body += issue(str(s * t.bk), str(s * t.stage_bytes))
    loop = [f"cp_async_wait{t.stages - 2}()  # slice kt has landed (this thread's copies)",
            "cuda.syncthreads()  # everyone's; and the buffer multiplied in iteration kt-1 is free",
            f"ahead = (kt + {t.stages - 1}) % {t.stages}"]
    loop += issue(f"(kt + {t.stages - 1}) * {t.bk}", f"ahead * {t.stage_bytes}")
    loop += [f"slot = (kt % {t.stages}) * {t.stage_bytes}"] + _multiply(t)
    body += [f"for kt in range({slices}):"] + ["    " + line for line in loop]
    if t.splits > 1:
        body += _sum_parts(t)
    body += _finish(t, k_total, store, columns, store_run, fetch)
    return [f"def {name}({', '.join(params)}):"] + ["    " + line for line in body]


def _lanes(t: AsyncTile) -> list[str]:
    """ldmatrix row addresses: lane l gives row l % 8 of 8×8 matrix l // 8. A's matrices are (rows
    0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15); B's (n 0-7, k 0-7), (0-7, 8-15), (8-15, 0-7),
    (8-15, 8-15) (an 8×8 matrix of halves is 8 rows of 16 bytes: of int8, 8×16). Rows move in steps of
    16 later, which keeps the swizzle of the lane's row. One mma k-step is two chunks (32 bytes)."""
    lines = ["lr = lane % 8", "lm = lane // 8", "a_row = wm + lr + 8 * (lm % 2)", "b_row = wn + lr + 8 * (lm // 2)"]
    for s in range(CHUNKS // 2):
        lines.append(f"a_at{s} = smem0 + {swizzled('a_row', f'{2 * s} + lm // 2')}")
        lines.append(f"b_at{s} = smem0 + {t.bm * ROW_BYTES} + {swizzled('b_row', f'{2 * s} + lm % 2')}")
    return lines


def _multiply(t: AsyncTile) -> list[str]:
    lines = []
    for s in range(CHUNKS // 2):
        for i in range(t.fm):
            lines.append(f"a{i}_0, a{i}_1, a{i}_2, a{i}_3 = ldsm_x4(a_at{s} + slot + {i * 16 * ROW_BYTES})")
        for j in range(0, t.fn, 2):
            lines.append(f"b{j}_0, b{j}_1, b{j + 1}_0, b{j + 1}_1 = ldsm_x4(b_at{s} + slot + {j * 8 * ROW_BYTES})")
        lines += products(t.fm, t.fn, MMA[t.math])
    return lines


def slices_per_part(t: AsyncTile, k_total: int) -> int:
    """K slices each split-K part multiplies (the last may have fewer: the rest is zero-filled)."""
    slices = -(-k_total // t.bk)
    return -(-slices // t.splits)


def _sum_parts(t: AsyncTile) -> list[str]:
    """Split K: store this part's sums, count it in, and in the tile's last part add all parts up."""
    regs = [f"c{i}_{j}_{e}" for i in range(t.fm) for j in range(t.fn) for e in range(4)]
    size = t.bm * t.bn  # one part's partial sums: regs x threads
    lines = ["# split K: each part leaves its partial sums in `work`; the tile's last part adds them up",
             "cp_async_wait0()  # no copy may land in shared memory after a block left",
             "tile = (z * cuda.gridDim.y + cuda.blockIdx.y) * cuda.gridDim.x + cuda.blockIdx.x",
             f"tile_at = tile * {t.splits * size} + tid"]
    put = "st_s32(work, {}, {})" if t.acc == "int32" else "work[{}] = {}"  # int32 sums keep their bits
    get = "ld_cg_s32" if t.acc == "int32" else "ld_cg"
    lines += [put.format(f"tile_at + part * {size} + {r * t.threads}", c) for r, c in enumerate(regs)]
    lines += ["cuda.threadfence()  # the sums are visible GPU-wide before the count says so",
              "cuda.syncthreads()", "if tid == 0:", "    arrived[0] = cuda.atomic.add(flags, tile, 1)",
              "cuda.syncthreads()", f"if arrived[0] != {t.splits - 1}:", "    return  # not the last part",
              "cuda.threadfence()"]
    lines += [f"{c} = {get}(work, tile_at + {r * t.threads})" for r, c in enumerate(regs)]
    lines += [f"for p in range(1, {t.splits}):  # in part order: the same sums whichever part is last"]
    add = "    {c} = int32({c} + {v})" if t.acc == "int32" else "    {c} += {v}"  # (Numba widens int32 sums)
    lines += [add.format(c=c, v=f"{get}(work, tile_at + p * {size} + {r * t.threads})") for r, c in enumerate(regs)]
    return lines + ["if tid == 0:", "    flags[tile] = 0  # ready for the next launch"]


def scratch_words(t: AsyncTile, grid: tuple[int, int, int]) -> tuple[int, int]:
    """(work words, flags) a split-K launch of ``grid`` needs: all parts' sums of every tile."""
    tiles = grid[0] * grid[1] * grid[2] // t.splits
    return tiles * t.splits * t.bm * t.bn, tiles


def _short(k_total: int) -> bool:
    """Whether an s8 sum of ``k_total`` int8 products stays below ``int8.EXACT`` (|product| <= 128²):
    its float conversion then needs no conversion instruction."""
    return k_total * 128 * 128 < int8.EXACT


def _biased(t: AsyncTile, k_total: int) -> bool:
    """Whether the int32 sums start at ``int8.MAGIC_BITS``: short K, no split; their bits are then the
    float MAGIC + sum (``int8.biased_float``)."""
    return t.acc == "int32" and t.splits == 1 and _short(k_total)


def _finish(t: AsyncTile, k_total: int, store: Callable[[str, str], str], columns: Callable[[str], list[str]],
            store_run: Callable[..., str] | None, fetch: Callable[[str], str] | None) -> list[str]:
    """Per warp row: its warps stage their accumulators as stage[n][m]; then each thread stores runs of
    8 consecutive m of one column n (``columns(n)`` once per run; a warp covers whole 16-byte pieces
    of consecutive m: coalesced for channels-last outputs). Shared memory is addressed through 32-bit
    shared-window addresses with constant offsets (``sts_f32`` / ``lds_v4_f32``): Numba's 64-bit
    array indexing kept the 64 staging addresses in registers (216 per thread, one block per SM)."""
    width, runs = t.band + STAGE_PAD, t.band // 8
    per = t.threads // runs
    to_float = (int8.biased_float if _biased(t, k_total) else int8.exact_float if _short(k_total)
                else lambda c: f"float32({c})")
    lines = ["# the accumulators leave through shared memory, one warp row (band of rows) at a time",
             "cp_async_wait0()", "cuda.syncthreads()",
             "g = lane // 4", "q = lane % 4", f"mine = warp // {t.wn}",
             f"stage_at = smem0 + ((wn + 2 * q) * {width} + g) * 4  # this thread's first accumulator",
             f"sm = (tid % {runs}) * 8  # this thread stores rows sm..sm+7 of the band", f"sn = tid // {runs}",
             f"run_at = smem0 + (sn * {width} + sm) * 4  # and reads them from here",
             f"for band in range({t.wm}):"]
    m = f"m0 + band * {t.band} + sm"
    column = lambda r: ([f"    n = n0 + sn + {r * per}" if r else "    n = n0 + sn"]
                        + ["    " + ln for ln in columns("n")])
    if fetch:  # loads first: each would wait for the stores before it (memory order)
        for r in range(t.bn // per):
            lines += column(r) + [f"    words{r} = {fetch(m)}"]
    lines.append("    if band == mine:")
    for i in range(t.fm):
        for j in range(t.fn):
            for e in range(4):
                at = ((j * 8 + e % 2) * width + i * 16 + 8 * (e // 2)) * 4
                c = f"c{i}_{j}_{e}" if t.acc == "float32" else to_float(f"c{i}_{j}_{e}")
                lines.append(f"        sts_f32(stage_at + {at}, {c})")
    lines.append("    cuda.syncthreads()")
    values = [f"v{e}" for e in range(8)]
    for r in range(t.bn // per):
        at = r * per * width * 4
        lines += column(r) + [f"    v0, v1, v2, v3 = lds_v4_f32(run_at + {at})",
                              f"    v4, v5, v6, v7 = lds_v4_f32(run_at + {at + 16})"]
        if store_run:
            lines.append("    " + (store_run(values, m, f"words{r}") if fetch else store_run(values, m)))
        else:
            lines += ["    " + store(v, f"{m} + {e}" if e else m) for e, v in enumerate(values)]
    lines.append("    cuda.syncthreads()")
    return lines


MIN_SLICES = 4  # K slices a split-K part should have at least


def pick(m: int, n: int, z: int, k: int, math: str = "f16") -> dict | None:
    """A tile without tuning. Of the tiles that fill the SMs once, the LARGE one of least ``_load`` (an
    earlier shape on a tie), else the first; else a 64×64 tile with K split into as many parts (of at
    least MIN_SLICES slices) as fill the SMs about once; else the smallest tile, but for f16 None when
    that leaves most SMs idle (``mma_tiled`` does better then; s8 has no other tensor-core kernel)."""
    from .tiled import SMS
    blocks = lambda t: -(-m // t["bm"]) * -(-n // t["bn"]) * z
    tactics = [t for t in TACTICS if t["math"] == math]
    shapes = tactics[:len(SHAPES)]
    fill = [t for t in shapes if blocks(t) >= SMS and t["bm"] <= max(32, 1 << (m - 1).bit_length())]
    large = [t for t in fill if t["bm"] * t["bn"] >= LARGE]
    if large:
        return dict(min(large, key=lambda t: _load(blocks(t), t)))
    if fill:
        return dict(fill[0])
    split = next(t for t in tactics if t.get("splits") and t["bm"] == t["bn"] == 64)
    bk = split["bk"]
    parts = [s for s in SPLITS if blocks(split) * s <= SMS * 5 // 4 and -(-k // bk) >= MIN_SLICES * s]
    if parts:
        return dict(split, splits=parts[-1])
    return dict(shapes[-1]) if blocks(shapes[-1]) >= SMS // 2 or math == "s8" else None


LARGE = 64 * 128  # outputs per tile of the tiles the pick weighs by load: 2 of 256 threads or 4 of 128 per SM


def _load(blocks: int, t: dict) -> int:
    """Outputs the busiest SM computes. Large tiles keep an SM equally busy, so less of this finishes
    first: it counts rows past M (GoogLeNet's M = 176–320 take 64×128) and a partial last wave
    (ResNet-50 layer3: 196 blocks of 128×128 on 132 SMs, so 128×64; tuned builds chose both). At
    batch 64 (H100): GoogLeNet 1.72 -> 1.55 ms fp16, 1.12 -> 1.05 int8; ResNet-50 3.24 -> 3.19, 2.09 -> 1.95."""
    from .tiled import SMS
    return -(-blocks // SMS) * t["bm"] * t["bn"]


def launch(t: AsyncTile, m_total: int, n_total: int, z: int):
    return (-(-n_total // t.bn), -(-m_total // t.bm), z * t.splits), (t.threads, 1, 1)
