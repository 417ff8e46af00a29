"""Gemm and MatMul kernels (``nbtrt.gemm`` groups): a tiled SGEMM (see ``tiled.py``).

Gemm:    Y[m, n] = α · Σ_k A'[m, k] · B'[k, n] (+ the epilogue: β·C arrives as an epilogue operand),
         A' = Aᵀ when transA, B' = Bᵀ when transB — a transpose is only a swap of the two strides.
MatMul:  numpy matmul: A [..., M, K] · B [..., K, N] with broadcast batch dims, one grid z per
         output batch element (each operand's size-1 batch dims read index 0); a 1-D A is one row
         (its M axis is dropped from the output), a 1-D B one column (its N axis is dropped).

Each tile of an operand is copied along whichever of its two axes is contiguous (coalesced). The
epilogue (bias [N] / [1, N] / [M, 1], activation, residual) runs per element through
``store_<name>``, its operands broadcast against the output through their strides.

Tactic space: block tile BM×BN×BK, micro-tile TM×TN, split_k (threads of a block splitting K: the
M = 1 layers of batch-1 classifiers) and unroll; or ``algorithm="mma"`` (tensor cores, ``mma_tiled.py``:
math f16 for float16 operands, tf32 when the build asked for it, block tile and warps). A node with
math "int8" (int8 weights, quantized activation, int32 sums: ``int8.py``) runs the CUDA-core kernel
(dp4a words).
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..ir import Node
from . import epilogue, int8, mma_tiled, tiled
from .conv_direct import _mul, _sum
from .kernel import KernelSpec, TensorArg, header, identifier, indent, index_of, literal, load, unravel
from .kernel import store as store_element

TACTICS = [dict(t) for t in tiled.TACTICS] + [dict(algorithm="mma", **t) for t in mma_tiled.TACTICS]
DEFAULT = dict(bm=64, bn=64, bk=8, tm=8, tn=8, split_k=1, unroll=True)


class Problem:
    """The product a gemm group computes: sizes, each operand's strides, output coordinates."""

    def __init__(self, node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None]):
        a, b, out = inputs[0], inputs[1], outputs[0]
        attrs = node.attrs["base_attrs"]
        self.alpha = 1.0
        if node.attrs["base"] == "Gemm":
            ta, tb = bool(attrs.get("transA") or 0), bool(attrs.get("transB") or 0)
            self.alpha = float(attrs.get("alpha", 1.0) if attrs.get("alpha") is not None else 1.0)
            self.m, self.k = (a.shape[1], a.shape[0]) if ta else a.shape
            self.n = b.shape[0] if tb else b.shape[1]
            self.sam, self.sak = (a.strides[1], a.strides[0]) if ta else a.strides
            self.sbk, self.sbn = (b.strides[1], b.strides[0]) if tb else b.strides
            self.batch, self.a_batch, self.b_batch = (), None, None
            self.row, self.col = True, True
        else:
            self.row, self.col = len(a.shape) > 1, len(b.shape) > 1
            self.m, self.k = (a.shape[-2], a.shape[-1]) if self.row else (1, a.shape[0])
            self.n = b.shape[-1] if self.col else 1
            self.sam, self.sak = (a.strides[-2], a.strides[-1]) if self.row else (0, a.strides[0])
            self.sbk, self.sbn = (b.strides[-2], b.strides[-1]) if self.col else (b.strides[0], 0)
            nb = len(out.shape) - int(self.row) - int(self.col)
            self.batch = tuple(out.shape[:nb])
            self.a_batch = TensorArg(a.param, a.dtype, a.shape[:-2], a.strides[:-2], 0) if self.row else None
            self.b_batch = TensorArg(b.param, b.dtype, b.shape[:-2], b.strides[:-2], 0) if self.col else None
        self.a, self.b, self.out = a, b, out
        self.z = 1
        for d in self.batch:
            self.z *= d

    @property
    def flops(self) -> int:
        return 2 * self.z * self.m * self.n * self.k

    def coords(self) -> list[str]:
        return [f"zb{i}" for i in range(len(self.batch))] + (["m"] if self.row else []) + (["n"] if self.col else [])


def _tile(tactic: dict, math: str | None = None):
    if tactic.get("algorithm") == "mma":
        return mma_tiled.MmaTile.of(tactic)
    return tiled.Tile.of(tactic, int8.PACK if math == "int8" else 1)


def problems(p: Problem, tactic: dict, math: str | None = None) -> list[str]:
    """Why ``tactic`` cannot compute ``p`` (``math``: the node's "tf32" or "int8" mark, if any)."""
    t = _tile(tactic, math)
    why = t.problems(_a_k_major(p), _b_k_major(p)) + tiled.grid_problems(t, p.m, p.n, p.z)
    if math == "int8" and isinstance(t, mma_tiled.MmaTile):
        return ["int8 math runs on the CUDA-core GEMM kernel only"] + why
    if isinstance(t, mma_tiled.MmaTile):
        reason = mma_tiled.allowed(t.math, math)
        why = ([reason] if reason else []) + why
    return why


def _a_k_major(p: Problem) -> bool:
    return p.sak == 1 or p.sam != 1


def _b_k_major(p: Problem) -> bool:
    return p.sbk == 1 and p.sbn != 1


def _args(node: Node):
    ins = [None if v is None else TensorArg.contiguous(f"in{k}", v.type.dtype, v.type.shape)
           for k, v in enumerate(node.inputs)]
    outs = [TensorArg.contiguous(f"out{i}", v.type.dtype, v.type.shape) for i, v in enumerate(node.outputs)]
    return outs, ins


def valid(node: Node, tactic: dict, outputs: list[TensorArg] | None = None,
          inputs: list[TensorArg | None] | None = None) -> bool:
    """Whether ``tactic`` can run ``node`` with these tensor layouts (contiguous when not given)."""
    outs, ins = _args(node)
    try:
        return not problems(Problem(node, outputs or outs, inputs or ins), tactic, node.attrs.get("math"))
    except (KeyError, TypeError, ValueError):
        return False


def pick(p: Problem, math: str | None = None) -> dict:
    """Tensor cores when the precision allows them and M is not tiny, else a CUDA-core tile."""
    for kind in ("f16", "tf32"):
        tile = mma_tiled.pick(p.m, p.n, p.z, kind)
        if tile and p.m >= 16 and not problems(p, dict(algorithm="mma", **tile), math):
            return dict(algorithm="mma", **tile)
    return tiled.pick(p.m, p.n, p.z)


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    quantized = int8.is_int8(node)
    bad = [x.param for x in outputs + inputs[:2] if x is not None and x.dtype not in ("float32", "float16")
           and not (quantized and x.dtype == "int8" and x in inputs[:2])]  # int8 weights, int8-stored X
    if bad or len(outputs) != 1:
        raise UnsupportedOpError([(node.name, f"gemm: float32/float16 with one output only ({', '.join(bad)})")])
    p = Problem(node, outputs, inputs)
    tactic = dict(tactic or pick(p, node.attrs.get("math")))
    why = problems(p, tactic, node.attrs.get("math"))
    if why:
        raise UnsupportedOpError([(node.name, f"gemm tactic {tactic}: {'; '.join(why)}")])
    t = _tile(tactic, node.attrs.get("math"))
    mma = isinstance(t, mma_tiled.MmaTile)
    read = mma_tiled.reader(t.math) if mma else (lambda arg, index: load(arg, index, "float32"))
    read = int8.reader(node) if quantized else read
    name = "gemm_" + identifier(node.name)
    used = [x for x in inputs if x is not None]
    params = [outputs[0].param] + [x.param for x in used]
    lines = header("gemm", node, tactic, outputs, used)
    lines.append(f"# {node.attrs['base']}: M={p.m} N={p.n} K={p.k}, batch {list(p.batch)}, alpha {p.alpha}")
    store = "store_" + identifier(node.name)
    extra = [outputs[0].param] + [x.param for x in inputs[2:] if x is not None]
    zb = [f"zb{i}" for i in range(len(p.batch))]
    if quantized:
        lines += int8.header(node, inputs) + int8.quantize_function()
    lines += _store_function(store, node, p, inputs, extra + zb, t)
    prologue = []
    if p.batch:
        prologue += unravel("z", p.batch, "zb")
        prologue.append(f"az = {index_of(p.a_batch, p.batch, p.coords()) if p.a_batch else '0'}  # this batch's A")
        prologue.append(f"bz = {index_of(p.b_batch, p.batch, p.coords()) if p.b_batch else '0'}  # and B")
    a = tiled.Operand(p.m, _a_k_major(p),
                      lambda x, q: [f"{q}row = {_sum([str(p.a.offset), 'az' if p.batch else '0', _mul(x, p.sam)])}"],
                      lambda q, k, tmp: ([], [], read(p.a, f"{q}row + {_mul(k, p.sak)}")))
    b = tiled.Operand(p.n, _b_k_major(p),
                      lambda x, q: [f"{q}col = {_sum([str(p.b.offset), 'bz' if p.batch else '0', _mul(x, p.sbn)])}"],
                      lambda q, k, tmp: ([], [], read(p.b, f"{q}col + {_mul(k, p.sbk)}")))
    cols = (["col_ok"] if p.n % t.bn else []) + ["col_n"]
    call = lambda v, m: f"{store}({', '.join(extra + zb)}, {m}, {', '.join(cols)}, {v})"
    columns = lambda n: ([f"col_ok = {n} < {p.n}"] if p.n % t.bn else []) + [f"col_n = {n}"]
    if quantized:  # int32 tiles and accumulators
        lines += tiled.kernel(name, params, t, (p.m, p.n, p.k), a, b, prologue, call, columns, acc=int8.ACC)
    else:
        lines += (mma_tiled if mma else tiled).kernel(name, params, t, (p.m, p.n, p.k), a, b, prologue, call, columns)
    grid, block = tiled.launch(t, p.m, p.n, p.z)
    return KernelSpec(name, "\n".join(lines) + "\n", params, grid, block,
                      [outputs[0].dtype] + [x.dtype for x in used], tactic)


def _store_function(store: str, node: Node, p: Problem, inputs, extra, t: tiled.Tile) -> list[str]:
    out = p.out
    checks = ([f"m < {p.m}"] if p.m % t.bm else []) + (["col_ok"] if p.n % t.bn else [])
    coords = [c if c != "n" else "col_n" for c in p.coords()]
    fetch = lambda k: load(inputs[k], index_of(inputs[k], out.shape, coords), "float32")
    acc = int8.dequantized(node, inputs, "v", "col_n") if int8.is_int8(node) else "v"
    acc = acc if p.alpha == 1.0 else f"{acc} * {literal(p.alpha)}"
    body, result = epilogue.emit(node.attrs["epilogues"][0], acc, fetch, "float32")
    body.append(store_element(out, index_of(out, out.shape, coords), result, "float32"))
    params = extra + ["m"] + (["col_ok"] if p.n % t.bn else []) + ["col_n", "v"]
    lines = ['@cuda.jit(device=True, inline="always")', f"def {store}({', '.join(params)}):"]
    if checks:
        return lines + [f"    if {' and '.join(checks)}:"] + indent(body, 2) + [""]
    return lines + indent(body, 1) + [""]
