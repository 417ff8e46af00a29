"""Normalization kernels: BatchNormalization (inference), InstanceNormalization, LayerNormalization
(kind ``norm``) and LRN (kind ``lrn``).

BatchNormalization   y = (x − mean[c]) · (scale[c] / √(var[c] + ε)) + B[c]      a thread per element
                     (passes usually fold BN into a conv or a scale/shift; this runs the rest)
LRN                  y = x / (bias + α/size · Σ_{c'} x[c']²)^β over channels
                     c' ∈ [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉] (cut at the edges)  a thread per element
InstanceNormalization  rows (n, c) over the spatial axes; LayerNormalization rows over [axis, rank):
                     μ = Σx / L, σ² = Σ(x − μ)² / L (two passes, as the reference, float32),
                     y = (x − μ) · (1 / √(σ² + ε)) · scale + B; LayerNormalization also writes its
                     optional Mean and InvStdDev outputs. Block-per-row skeleton of ``reduce.py``.

Tactic space: block size (``threads`` × ``rows``) for the per-element kernels; ``threads`` × ``rows``
of the row skeleton for Instance/LayerNormalization (see :func:`space`).
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..ir import Node
from .kernel import (KernelSpec, TensorArg, element_order, header, identifier, indent, index_of, literal, store,
                     unravel)
from .reduce import ROW_TACTICS, RowCode, Rows, compute_dtype, element_tactic, grid_blocks, load, resolve

ELEMENT_TACTICS = [{"threads": t, "rows": 1} for t in (128, 256, 512)]
TACTICS = ELEMENT_TACTICS + ROW_TACTICS
DEFAULT = {"threads": "auto", "rows": "auto"}
ROW_OPS = ("InstanceNormalization", "LayerNormalization")


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    cd = compute_dtype(inputs[0].dtype)
    if not cd.startswith("float"):
        raise UnsupportedOpError([(node.name, f"{node.op} of {inputs[0].dtype}")])
    if node.op == "BatchNormalization":
        if node.attrs.get("training_mode", 0):
            raise UnsupportedOpError([(node.name, "BatchNormalization with training_mode=1")])
        return _per_element(node, outputs, inputs, tactic, cd, _batch_norm_body)
    if node.op == "LRN":
        return _per_element(node, outputs, inputs, tactic, cd, _lrn_body)
    if node.op in ROW_OPS:
        return _rows(node, outputs, inputs, tactic, cd)
    raise UnsupportedOpError([(node.name, f"{node.op} (no norm kernel)")])


def _channel(arg: TensorArg, c: str, cd: str) -> str:
    """A per-channel vector (shape [C]) read at channel ``c``."""
    index = " + ".join(([str(arg.offset)] if arg.offset else []) + [c if arg.strides[0] == 1 else
                                                                     f"{c} * {arg.strides[0]}"])
    return load(arg, index, cd)


# -- a thread per element -----------------------------------------------------------------------------

def _per_element(node, outputs, inputs, tactic, cd, body_of) -> KernelSpec:
    x, out = inputs[0], outputs[0]
    coords = [f"c{k}" for k in range(len(x.shape))]
    t = element_tactic(tactic)
    threads = t["threads"]
    body = unravel("i", x.shape, order=element_order(out)) + [f"v = {load(x, index_of(x, x.shape, coords), cd)}"]
    body += body_of(node, x, inputs, cd) + [store(out, index_of(out, out.shape, coords), "y", cd), "i += step"]
    args = [a for a in inputs if a is not None]
    params = [out.param] + [a.param for a in args]
    name = f"{node.op.lower()}_{identifier(node.name)}"
    lines = header(node.op.lower(), node, t, outputs, args)
    lines += [f"def {name}({', '.join(params)}):", "    i = cuda.grid(1)", "    step = cuda.gridsize(1)",
              f"    while i < {x.numel}:"] + indent(body, 2)
    blocks = grid_blocks(x.numel, threads, t)
    return KernelSpec(name, "\n".join(lines) + "\n", params, (blocks, 1, 1), (threads, 1, 1),
                      [out.dtype] + [a.dtype for a in args], t)


def _batch_norm_body(node, x, inputs, cd) -> list[str]:
    scale, bias, mean, var = (_channel(a, "c1", cd) for a in inputs[1:5])
    eps = literal(node.attrs.get("epsilon", 1e-5), cd)
    return [f"rstd = {literal(1, cd)} / math.sqrt({var} + {eps})",
            f"y = (v - {mean}) * (rstd * {scale}) + {bias}"]


def _lrn_body(node, x, inputs, cd) -> list[str]:
    size = int(node.attrs["size"])
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    alpha, beta, bias = (node.attrs.get(k, d) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    channels, cstride = x.shape[1], x.strides[1]
    rest = index_of(TensorArg(x.param, x.dtype, x.shape[:1] + (1,) + x.shape[2:], x.strides, x.offset),
                    x.shape, [f"c{k}" for k in range(len(x.shape))])  # all but the channel term
    return [f"sq = {literal(0, cd)}",
            f"for cc in range(max(c1 - {before}, 0), min(c1 + {after + 1}, {channels})):",
            f"    u = {load(x, f'{rest} + cc * {cstride}', cd)}",
            "    sq += u * u",
            f"y = v / math.pow({literal(bias, cd)} + {literal(alpha / size, cd)} * sq, {literal(beta, cd)})"]


# -- a row per (n, c) or per leading index -----------------------------------------------------------

def _rows(node, outputs, inputs, tactic, cd) -> KernelSpec:
    x, out = inputs[0], outputs[0]
    rank = len(x.shape)
    if node.op == "InstanceNormalization":
        axis = 2
    else:
        axis = node.attrs.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
    rows = Rows(x.shape, tuple(range(axis, rank)))
    t = resolve(tactic, rows, x)
    code = RowCode(rows, t, cd)
    eps, L = literal(node.attrs.get("epsilon", 1e-5), cd), literal(rows.L, cd)
    per_row = [f"xb = {code.base(x)}", f"ob = {code.base(out)}"]
    per_row += code.fold(x, "s", "sum", literal(0, cd)) + [f"mean = s / {L}"]
    per_row += code.fold(x, "q", "sum", literal(0, cd), lambda e: f"({e} - mean) * ({e} - mean)")
    per_row += [f"inv = {literal(1, cd)} / math.sqrt(q / {L} + {eps})  # 1 / standard deviation"]
    y, coords = "(v - mean) * inv", code.step(x) is None or code.step(out) is None
    operands = [a for a in inputs[1:3] if a is not None]
    if node.op == "InstanceNormalization":
        y = f"{y} * {_channel(inputs[1], 'c1', cd)} + {_channel(inputs[2], 'c1', cd)}"
    else:
        for k, a in enumerate(operands):
            per_row.append(f"b{k} = {code.base(a)}")
            coords = coords or code.step(a) is None
        terms = [load(a, code.element(a, f"b{k}"), cd) for k, a in enumerate(operands)]
        y = f"{y} * {terms[0]}" + (f" + {terms[1]}" if len(terms) > 1 else "")
    write = [f"v = {load(x, code.element(x, 'xb'), cd)}", store(out, code.element(out, 'ob'), y, cd)]
    per_row += code.loop(write, coords=coords)
    pairs = [(o, var) for o, var in zip(outputs[1:3], ("mean", "inv")) if o is not None]
    stats = [o for o, _ in pairs]
    if pairs:
        per_row += [f"if {code.leader()}:"] + indent(
            [store(o, index_of(o, o.shape, rows.coords('0')), var, cd) for o, var in pairs])
    params = [o.param for o in [out] + stats] + [a.param for a in [x] + operands]
    name = f"{node.op.lower()}_{identifier(node.name)}"
    lines = header("norm", node, t, [out] + stats, [x] + operands)
    lines.append(f"# {node.op}: {rows.R} rows of {rows.L} elements (axes {list(rows.red)})")
    lines += code.function(name, params, per_row)
    grid, block = code.launch()
    dtypes = [o.dtype for o in [out] + stats] + [a.dtype for a in [x] + operands]
    return KernelSpec(name, "\n".join(lines) + "\n", params, grid, block, dtypes, t)

