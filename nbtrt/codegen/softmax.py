"""Softmax and LogSoftmax over one axis: the rows are every other axis, each row the ``axis`` extent with
the input's stride along it baked in (block-per-row skeleton of ``reduce.py``).

Per row, three passes over the input (numerically safe, as the reference):

    m = max_j x_j                           (shared-memory tree max)
    s = Σ_j exp(x_j − m)                    (shared-memory tree sum, float32)
    Softmax     y_j = exp(x_j − m) · (1 / s)
    LogSoftmax  y_j = (x_j − m) − log s

A thread per row (``threads = 1``) suits softmax over the channels of NCHW (rows adjacent in memory,
coalesced); a block of threads per row suits a long contiguous row (classifier logits).

Tactic space: ``threads`` × ``rows`` (``reduce.ROW_TACTICS``).
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..ir import Node
from .kernel import KernelSpec, TensorArg, header, identifier, literal, store
from .reduce import ROW_TACTICS, RowCode, Rows, compute_dtype, load, lowest, resolve

TACTICS = ROW_TACTICS
DEFAULT = {"threads": "auto", "rows": "auto"}


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    x, out = inputs[0], outputs[0]
    cd = compute_dtype(x.dtype)
    if not cd.startswith("float"):
        raise UnsupportedOpError([(node.name, f"{node.op} of {x.dtype}")])
    rank = len(x.shape)
    axis = node.attrs.get("axis", -1)
    axis = axis + rank if axis < 0 else axis
    rows = Rows(x.shape, (axis,))
    t = resolve(tactic, rows, x)
    code = RowCode(rows, t, cd)
    v = load(x, code.element(x, "xb"), cd)
    per_row = [f"xb = {code.base(x)}", f"ob = {code.base(out)}"]
    per_row += code.fold(x, "m", "max", lowest(cd))
    per_row += code.fold(x, "s", "sum", literal(0, cd), lambda e: f"math.exp({e} - m)")
    if node.op == "Softmax":
        pre, write = [f"inv = {literal(1, cd)} / s"], "math.exp(v - m) * inv"
    else:
        pre, write = ["lse = math.log(s)"], "(v - m) - lse"
    per_row += code.loop([f"v = {v}", store(out, code.element(out, "ob"), write, cd)],
                         coords=code.step(x) is None or code.step(out) is None, pre=pre)
    name = f"{node.op.lower()}_{identifier(node.name)}"
    params = [out.param, x.param]
    lines = header("softmax", node, t, outputs, [x])
    lines.append(f"# {node.op} over axis {axis}: {rows.R} rows of {rows.L} (element stride {x.strides[axis]})")
    lines += code.function(name, params, per_row)
    grid, block = code.launch()
    return KernelSpec(name, "\n".join(lines) + "\n", params, grid, block, [out.dtype, x.dtype], t)

