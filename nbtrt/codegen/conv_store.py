"""Where a conv kernel's finished elements go: the variables a column (image, output position) needs,
the ``store`` device functions that put one result (or a run of 8 channels, one 16-byte store) through
the epilogue, and flat views that index a column by itself when its elements lie at one stride."""

from __future__ import annotations

from . import int8
from .conv_geom import ConvGeom, channel_vector, run_store_lines, run_words_lines, store_lines, vector8_lines
from .kernel import TensorArg, contiguous_strides, indent, same_strides, unravel


def column_vars(g: ConvGeom, check: bool, flat: bool = False) -> list[str]:
    """What a store needs of column n = (image, output position): its coordinates (and bounds); with
    ``flat`` views (:func:`flat_views`), n itself."""
    if flat:
        return (["col_ok"] if check else []) + ["col_n"]
    return (["col_ok"] if check else []) + (["col_img"] if g.n > 1 else []) + [f"col_o{a}" for a in range(g.nsp)]


def columns(g: ConvGeom, n: str, check: bool, flat: bool = False) -> list[str]:
    lines = [f"col_ok = {n} < {g.n * g.pixels}"] if check else []
    if flat:
        return lines + [f"col_n = {n}"]
    lines += [f"col_img = {n} // {g.pixels}"] if g.n > 1 else []
    lines.append(f"col_pix = {n} % {g.pixels}" if g.n > 1 else f"col_pix = {n}")
    return lines + unravel("col_pix", g.out, "col_o")


def store_function(store, node, g: ConvGeom, outputs, inputs, extra, cols, t, run: bool = False,
                    flat: bool = False, words: bool = False) -> list[str]:
    """The device function ``store`` that puts result ``v`` of channel m, column ``cols`` through the
    epilogue; with ``run``, values ``v0..v7`` of channels m..m+7 as one 16-byte store (Mg is then a
    multiple of 8: a run is in range whole or not at all). ``flat``: the tensors are
    :func:`flat_views`, indexed by the column itself. ``words``: the run's residual words arrive
    loaded, as the tuple ``words`` (:func:`words_function`)."""
    checks, body, coords = _where(g, t, cols, flat)
    values = [f"v{e}" for e in range(8)] if run else ["v"]
    ahead = "words" if words else None
    if run and int8.is_int8(node):
        mult = int8.multiplier(node, inputs)
        if channel_vector(mult, outputs[0].shape, direct=True):
            body += vector8_lines(mult, "ch", "u") + [f"acc{e} = float32(v{e}) * u{e}" for e in range(8)]
        else:
            body += [f"acc{e} = {int8.dequantized(node, inputs, f'v{e}', f'ch + {e}')}" for e in range(8)]
        body += run_store_lines(node, outputs, inputs, "ch", coords, [f"acc{e}" for e in range(8)], ahead)
    elif run:
        body += run_store_lines(node, outputs, inputs, "ch", coords, values, ahead)
    elif int8.is_int8(node):
        body += [f"acc = {int8.dequantized(node, inputs, 'v', 'ch')}"] + store_lines(node, outputs, inputs, "ch",
                                                                                     coords, "acc")
    else:
        body += store_lines(node, outputs, inputs, "ch", coords, "v")
    params = ", ".join(extra + ["z", "m"] + cols + (["words"] if words else []) + values)
    lines = ['@cuda.jit(device=True, inline="always")', f"def {store}({params}):"]
    if checks:
        return lines + [f"    if {' and '.join(checks)}:"] + indent(body, 2) + [""]
    return lines + indent(body, 1) + [""]


def words_function(name, node, g: ConvGeom, outputs, inputs, extra, cols, t, flat: bool = False) -> list[str]:
    """The device function ``name`` returning the raw words of a run's residual (the run operands of
    ``conv_geom.run_operands``; zeros for a run out of range), so that a kernel can issue the loads of
    several runs before their stores (a load after a store waits for it: memory order)."""
    checks, body, coords = _where(g, t, cols, flat)
    loads, names = run_words_lines(node, outputs, inputs, "ch", coords)
    lines = ['@cuda.jit(device=True, inline="always")', f"def {name}({', '.join(extra + ['z', 'm'] + cols)}):"]
    if checks:
        body += [f"if {' and '.join(checks)}:"] + indent(loads, 1) + ["else:"]
        body += [f"    {w} = uint32(0)" for w in names]
    else:
        body += loads
    return lines + indent(body + [f"return ({', '.join(names)},)"], 1) + [""]


def _where(g: ConvGeom, t, cols, flat: bool):
    """(bounds checks, the channel line, coordinates) shared by the store and words functions."""
    checks = ([f"m < {g.mg}"] if g.mg % t.bm else []) + (["col_ok"] if "col_ok" in cols else [])
    coords = ["0", "0", "col_n"] if flat else ["col_img" if g.n > 1 else "0"] + [f"col_o{a}" for a in range(g.nsp)]
    return checks, [f"ch = z * {g.mg} + m" if g.groups > 1 else "ch = m"], coords


def flat_views(g: ConvGeom, outputs, inputs, vectors=()):
    """(outputs, inputs) seen as [1, C, 1, N·P] when every output and full-shaped epilogue operand
    reaches the element of column n = (image, position) at ``n · step`` (e.g. NHWC, or a channel slice
    of an NHWC concat buffer) and the other operands do not vary over columns (bias, scalars); else
    None. The epilogue then needs no column decoding (integer divisions) at all. ``vectors``: indices
    of inputs the kernel indexes by channel itself (the int8 multipliers), left as they are."""
    rank = len(outputs[0].shape)
    full = (outputs[0].shape[0],) + tuple(outputs[0].shape[2:])

    def flat(a: TensorArg) -> TensorArg | None:
        outer = (a.strides[0],) + tuple(a.strides[2:])
        if len(a.shape) != rank or (a.shape[0],) + tuple(a.shape[2:]) != full:
            return None
        inner = [s for d, s in zip(full, outer) if d != 1]
        step = inner[-1] if inner else 0
        if not same_strides(full, outer, tuple(step * s for s in contiguous_strides(full))):
            return None
        return TensorArg(a.param, a.dtype, (1, a.shape[1], 1, g.n * g.pixels), (0, a.strides[1], 0, step), a.offset)

    def per_channel(a: TensorArg) -> bool:
        lead = rank - len(a.shape)
        return all(d == 1 for k, d in enumerate(a.shape) if lead + k != 1)

    outs = [flat(o) for o in outputs]
    ins = list(inputs[:2]) + [a if a is None or k in vectors or per_channel(a) else flat(a)
                              for k, a in enumerate(inputs[2:], 2)]
    if None in outs or any(v is None and a is not None for v, a in zip(ins[2:], inputs[2:])):
        return None
    return outs, ins
