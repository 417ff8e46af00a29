"""The tensor-core tiled matrix-product core (``mma.sync``), beside the CUDA-core one in ``tiled.py``.

Same problem and interface as ``tiled.kernel`` — per grid z a block computes the BM×BN tile at
(m0, n0) of ``C[m, n] = Σ_k A[m, k] · B[k, n]``, the template supplies each operand as a
:class:`tiled.Operand` and a store per finished element — with the multiply done by warps of tensor
cores (``ptx.py``):

- math "f16": operands rounded to half precision, products accumulated in float32 by
  ``mma m16n8k16``; math "tf32": operands rounded to tf32 (10-bit mantissa), ``mma m16n8k8``.
- Copies to shared memory are ``tiled``'s (``_Loader``: coalesced along each operand's contiguous
  axis, register prefetch of the next K slice while the current one is multiplied), into tiles laid
  out ``tile[k, x]``. For f16 the tiles hold the halves' bits and each warp reads its fragments with
  ``ldmatrix.x4.trans`` (one instruction per 16×16 A block or pair of 16×8 B blocks; rows padded by
  8 halves so that the eight rows an ldmatrix phase reads fall in distinct banks). For tf32 the tiles
  hold float32 and fragments are single loads (rows padded by 8 words: the 32 lanes of a fragment
  load hit 32 banks), rounded with ``cvt.rna.tf32``.
- The block's WM×WN warps each own a (BM/WM)×(BN/WN) warp tile: FM×FN mma tiles of 16×8, whose
  accumulators are scalar registers ``c<i>_<j>_<e>``.
- Finished accumulators leave through shared memory, one band of 16 rows per warp row at a time, so
  the store (bounds, epilogue, write) appears once in the source and consecutive threads write
  consecutive columns (coalesced), each thread keeping one column throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .kernel import TensorArg, load
from .tiled import MAX_SHARED, Operand, _Loader, copy_problems

SHAPES = [  # bm, bn, wm, wn (warps along M and N), in the heuristic's order of preference
    (128, 128, 2, 4), (64, 128, 2, 4), (128, 64, 4, 2), (64, 64, 2, 2), (64, 32, 2, 1), (32, 64, 1, 2),
]
TACTICS = ([dict(math="f16", bm=bm, bn=bn, bk=32, wm=wm, wn=wn) for bm, bn, wm, wn in SHAPES]
           + [dict(math="tf32", bm=bm, bn=bn, bk=16, wm=wm, wn=wn) for bm, bn, wm, wn in SHAPES])
PAD = 8  # elements of padding per shared tile row


@dataclass(frozen=True)
class MmaTile:
    math: str
    bm: int
    bn: int
    bk: int
    wm: int
    wn: int
    split_k: int = 1  # (the loader's interface)

    @staticmethod
    def of(tactic: dict) -> "MmaTile":
        return MmaTile(tactic["math"], tactic["bm"], tactic["bn"], tactic["bk"], tactic["wm"], tactic["wn"])

    @property
    def threads(self) -> int:
        return 32 * self.wm * self.wn

    slice_threads = threads
    pack = 1  # one K element per tile entry (the loader's interface)

    @property
    def k_step(self) -> int:
        return self.bk

    @property
    def mma_k(self) -> int:
        return 16 if self.math == "f16" else 8

    @property
    def fm(self) -> int:
        return self.bm // self.wm // 16

    @property
    def fn(self) -> int:
        return self.bn // self.wn // 8

    def shared_bytes(self) -> int:
        elem = 2 if self.math == "f16" else 4
        return elem * self.bk * (self.bm + self.bn + 2 * PAD) + 4 * 16 * self.wm * (self.bn + 4)

    def problems(self, a_k_major: bool, b_k_major: bool) -> list[str]:
        why = []
        if self.math not in ("f16", "tf32"):
            return [f"unknown math {self.math!r}"]
        if self.bm % (16 * self.wm) or self.bn % (8 * self.wn) or (self.math == "f16" and self.fn % 2):
            why.append("warp tile is not a whole number of mma tiles")
        if self.bk % self.mma_k:
            why.append(f"BK={self.bk} is not a multiple of the mma's K")
        ts = self.threads
        why += copy_problems(self.bk, self.bm, self.bn, ts, a_k_major, b_k_major)
        if ts % self.bn:
            why.append(f"{ts} threads do not keep one column each in the store")
        if self.shared_bytes() > MAX_SHARED:
            why.append(f"{self.shared_bytes()} bytes of shared memory")
        return why


def reader(math: str) -> Callable[[TensorArg, str], str]:
    """How an operand element enters a tile under ``math``: ``read(arg, index)`` -> expression. f16
    tiles hold half bits (a float32 operand is rounded on the way), tf32 tiles float32."""
    def read(arg: TensorArg, index: str) -> str:
        if math == "tf32":
            return load(arg, index, "float32")
        if arg.dtype == "float16":
            return f"bits16({arg.param}, {index})"
        return f"pack_f16({load(arg, index, 'float32')}, float32(0.0))"
    return read


def zero(math: str) -> str:
    """What an out-of-range element loads as."""
    return "uint32(0)" if math == "f16" else "float32(0.0)"


def allowed(math: str, node_math: str | None) -> str | None:
    """Why tensor cores may not run this product (None if they may): the node's precision (its
    ``math`` attribute, set by ``passes/precision.py``) must be "fp16" for f16, "tf32" for tf32 and
    "int8" for s8;
    never in the simulator, which has no tensor cores."""
    from .numba_env import simulated
    if simulated():
        return "the CUDA simulator has no tensor cores"
    need = {"f16": "fp16", "tf32": "tf32", "s8": "int8"}.get(math)
    if node_math != need:
        return f"{math} tensor cores need precision {need} (this kernel: {node_math or 'fp32'})"
    return None


def pick(m: int, n: int, z: int, math: str) -> dict | None:
    """A tile without tuning: the largest that fills the GPU's SMs once; None when even the
    smallest leaves most SMs idle (few-block layers: the CUDA-core tiles split K instead)."""
    from .tiled import SMS
    shapes = [t for t in TACTICS if t["math"] == math]
    blocks = lambda t: -(-m // t["bm"]) * -(-n // t["bn"]) * z
    for t in shapes:
        if blocks(t) >= SMS and t["bm"] <= max(32, 1 << (m - 1).bit_length()):
            return dict(t)
    return dict(shapes[-1]) if blocks(shapes[-1]) >= SMS // 2 else None


def kernel(name: str, params: list[str], t: MmaTile, mnk: tuple[int, int, int], a: Operand, b: Operand,
           prologue: list[str], store: Callable[[str, str], str], columns: Callable[[str], list[str]],
           slice_lines: tuple[str, ...] = ()) -> list[str]:
    """Source lines of the kernel ``name`` (arguments as ``tiled.kernel``; the operands' loads must
    use :func:`reader`; ``slice_lines`` run at every K slice before the operands' loads)."""
    _, _, k_total = mnk
    la = _Loader(a, "a", "m0", t.bm, t, k_total, zero(t.math))
    lb = _Loader(b, "b", "n0", t.bn, t, k_total, zero(t.math))
    tile_type = "uint16, alignment=16" if t.math == "f16" else "float32"
    body = ["tid = cuda.threadIdx.x", "z = cuda.blockIdx.z", f"m0 = cuda.blockIdx.y * {t.bm}",
            f"n0 = cuda.blockIdx.x * {t.bn}", "st = tid", "lane = tid % 32", "warp = tid // 32",
            f"wm = (warp // {t.wn}) * {t.bm // t.wm}  # this warp's tile: rows wm.., columns wn..",
            f"wn = (warp % {t.wn}) * {t.bn // t.wn}",
            f"a_tile = cuda.shared.array(({t.bk}, {t.bm + PAD}), {tile_type})",
            f"b_tile = cuda.shared.array(({t.bk}, {t.bn + PAD}), {tile_type})"]
    body += prologue + ["# what this thread copies into the tiles"] + la.setup() + lb.setup()
    body += _lanes(t)
    body += [f"c{i}_{j}_{e} = float32(0.0)" for i in range(t.fm) for j in range(t.fn) for e in range(4)]
    loads = list(slice_lines) + la.loads() + lb.loads()
    body += ["k0 = 0"] + loads + [f"for step in range({-(-k_total // t.bk)}):"]
    loop = la.stores() + lb.stores() + ["cuda.syncthreads()", f"k0 += {t.bk}",
                                         "# prefetch the next K slice while this one is multiplied"]
    loop += loads + _multiply(t) + ["cuda.syncthreads()"]
    body += ["    " + line for line in loop] + _finish(t, store, columns)
    return [f"def {name}({', '.join(params)}):"] + ["    " + line for line in body]


def _lanes(t: MmaTile) -> list[str]:
    """Per-lane fragment coordinates (g = lane // 4, q = lane % 4) or ldmatrix row addresses."""
    lines = ["g = lane // 4", "q = lane % 4"]
    if t.math == "f16":  # ldmatrix: lane l addresses row l % 8 of matrix l // 8
        lines += ["lm = lane // 8", "lr = lane % 8",
                  f"a_lane = shared_addr(a_tile) + ((lr + 8 * (lm // 2)) * {t.bm + PAD} + wm + 8 * (lm % 2)) * 2",
                  f"b_lane = shared_addr(b_tile) + ((lr + 8 * (lm % 2)) * {t.bn + PAD} + wn + 8 * (lm // 2)) * 2"]
    return lines


def _multiply(t: MmaTile) -> list[str]:
    lines = []
    for kk in range(0, t.bk, t.mma_k):
        if t.math == "f16":
            for i in range(t.fm):
                lines.append(f"a{i}_0, a{i}_1, a{i}_2, a{i}_3 = ldsm_x4_t(a_lane + {(kk * (t.bm + PAD) + i * 16) * 2})")
            for j in range(0, t.fn, 2):
                lines.append(f"b{j}_0, b{j}_1, b{j + 1}_0, b{j + 1}_1 = "
                             f"ldsm_x4_t(b_lane + {(kk * (t.bn + PAD) + j * 8) * 2})")
        else:
            for i in range(t.fm):
                lines += [f"a{i}_{e} = tf32(a_tile[{kk} + q + {4 * (e // 2)}, wm + g + {i * 16 + 8 * (e % 2)}])"
                          for e in range(4)]
            for j in range(t.fn):
                lines += [f"b{j}_{e} = tf32(b_tile[{kk} + q + {4 * e}, wn + g + {j * 8}])" for e in range(2)]
        lines += products(t.fm, t.fn, "mma_f16" if t.math == "f16" else "mma_tf32")
    return lines


def products(fm: int, fn: int, op: str) -> list[str]:
    """A warp tile's mma calls: accumulators c<i>_<j>_<e> += fragments a<i>_<e> · b<j>_<e>."""
    lines = []
    for i in range(fm):
        for j in range(fn):
            c = ", ".join(f"c{i}_{j}_{e}" for e in range(4))
            a = ", ".join(f"a{i}_{e}" for e in range(4))
            lines.append(f"{c} = {op}({a}, b{j}_0, b{j}_1, {c})")
    return lines


def _finish(t: MmaTile, store: Callable[[str, str], str], columns: Callable[[str], list[str]]) -> list[str]:
    """Stage each warp row's i-th band of 16 rows in shared memory, then store it column-wise."""
    rows = 16 * t.wm
    lines = ["# the accumulators leave through shared memory, 16 rows per warp row at a time",
             f"stage = cuda.shared.array(({rows}, {t.bn + 4}), float32)",
             f"srow = (warp // {t.wn}) * 16 + g", "scol = wn + 2 * q",
             f"col = tid % {t.bn}", f"row0 = tid // {t.bn}", "n = n0 + col"] + columns("n")
    lines += [f"for i in range({t.fm}):"]
    for i in range(t.fm):
        lines.append(f"    {'if' if i == 0 else 'elif'} i == {i}:")
        for j in range(t.fn):
            lines += [f"        stage[srow + {8 * (e // 2)}, scol + {j * 8 + e % 2}] = c{i}_{j}_{e}" for e in range(4)]
    lines += ["    cuda.syncthreads()", f"    for r in range({rows * t.bn // t.threads}):",
              f"        row = row0 + r * {t.threads // t.bn}",
              "        " + store("stage[row, col]", f"m0 + (row // 16) * {t.bm // t.wm} + i * 16 + row % 16"),
              "    cuda.syncthreads()"]
    return lines
