"""What the conv templates share: the resolved geometry of a Conv / ConvTranspose group and the code
that stores one result element through its output's epilogue.

Geometry (N-d, NCHW-style, ``nsp`` spatial axes): X (N, C, *sizes), Y (N, M, *out), G groups with
Cg = C / G input and Mg = M / G output channels each. For Conv, W is (M, Cg, *kernel) and output
position o reads input position ``o·s − pad + j·d`` for kernel offset j. For ConvTranspose, W is
(C, Mg, *kernel) and output position o (after the crop) receives input position i when
``o + crop = i·s + j·d``.

A merged conv has several outputs: global channel ``m`` belongs to output i when
``offset_i <= m < offset_i + splits[i]``; each output has its own TensorArg (maybe a strided slice of
a concat buffer) and epilogue program, whose operands broadcast against that output's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..errors import UnsupportedOpError
from ..ir import Node
from ..ops.window import forward_shape, kernel_from_attr, transpose_shape, window_attrs
from . import epilogue, int8
from .kernel import TensorArg, index_of, literal, load, runs_of_8, store


@dataclass(frozen=True)
class ConvGeom:
    n: int                      # batch
    c: int                      # input channels
    m: int                      # output channels (all outputs together)
    groups: int
    sizes: tuple[int, ...]      # input spatial sizes
    out: tuple[int, ...]        # output spatial sizes
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]       # Conv: begin pads; ConvTranspose: begin crops (may be negative)

    @property
    def nsp(self) -> int:
        return len(self.kernel)

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def mg(self) -> int:
        return self.m // self.groups

    @property
    def taps(self) -> int:
        return prod(self.kernel)

    @property
    def pixels(self) -> int:
        return prod(self.out)

    @property
    def flops(self) -> int:
        return 2 * self.n * self.m * self.pixels * self.cg * self.taps


def base_node(node: Node) -> Node:
    """The anchor op as a plain node (for the window helpers and error messages)."""
    return Node(node.attrs["base"], [], [], node.attrs["base_attrs"], name=node.name)


def geometry(node: Node, inputs: list[TensorArg | None]) -> ConvGeom:
    base = base_node(node)
    x, w = inputs[0], inputs[1]
    win = window_attrs(base, kernel_from_attr(base, w.shape[2:]))
    groups = int(base.attrs.get("group") or 1)
    if base.op == "Conv":
        out, pads = forward_shape(base, win, x.shape[2:])
        m = w.shape[0]
    else:
        out, pads = transpose_shape(base, win, x.shape[2:])
        m = w.shape[1] * groups
    nsp = len(win.kernel)
    return ConvGeom(x.shape[0], x.shape[1], m, groups, tuple(x.shape[2:]), tuple(out),
                    tuple(win.kernel), win.strides, win.dilations, tuple(pads[:nsp]))


def split_offsets(node: Node, total: int, n_outputs: int) -> list[int]:
    """Start channel of each output (plus the end)."""
    splits = tuple(node.attrs.get("splits") or ())
    if len(splits) != n_outputs:
        if n_outputs != 1:
            raise UnsupportedOpError([(node.name, f"{n_outputs} outputs but splits {splits}")])
        splits = (total,)
    offsets = [0]
    for s in splits:
        offsets.append(offsets[-1] + int(s))
    if offsets[-1] != total:
        raise UnsupportedOpError([(node.name, f"splits {splits} do not add up to {total} channels")])
    return offsets


def check_float32(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None]) -> None:
    """The conv kernels compute in float32: X, W and the outputs must be float32 or float16 (storage,
    widened on load and rounded on store), in any mix; under int8 math (codegen/int8.py) W is int8 and
    X may be (already quantized), and an output with a scale (``out_scales``) is stored as int8."""
    floats, int8_math = ("float32", "float16"), node.attrs.get("math") == "int8"
    scales = node.attrs.get("out_scales") or [None] * len(outputs)
    bad = [o.param for o, s in zip(outputs, scales) if o.dtype not in floats and not (o.dtype == "int8" and s)]
    bad += [a.param for a in inputs[:2] if a is not None and a.dtype not in floats
            and not (a.dtype == "int8" and int8_math)]
    if bad:
        raise UnsupportedOpError([(node.name, f"{node.op}: only float32/float16 kernels so far ({', '.join(bad)})")])


def store_lines(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], chan: str,
                coords: list[str], value: str) -> list[str]:
    """Lines that store ``value`` (the anchor's result at batch/spatial ``coords`` and global channel
    ``chan``) through the epilogue of the output that owns ``chan``."""
    def body(i: int, local: str) -> list[str]:
        out, full = outputs[i], [coords[0], local] + list(coords[1:])
        fetch = lambda k: operand(node, inputs, k, index_of(inputs[k], out.shape, full))
        lines, result = epilogue.emit(node.attrs["epilogues"][i], value, fetch, "float32", prefix=f"e{i}_")
        return lines + [store_element(node, i, out, index_of(out, out.shape, full), result)]
    return by_output(node, outputs, chan, body)


def by_output(node: Node, outputs: list[TensorArg], chan: str, body) -> list[str]:
    """``body(i, local)``'s lines for the output ``i`` that owns global channel ``chan`` (``local``: the
    channel within that output), behind a test of ``chan`` when there are several."""
    if len(outputs) == 1:
        return body(0, chan)
    offsets = split_offsets(node, _total(node, outputs), len(outputs))
    lines: list[str] = []
    for i in range(len(outputs)):
        local = chan if offsets[i] == 0 else f"cl{i}"
        test = "else:" if i == len(outputs) - 1 else f"{'if' if i == 0 else 'elif'} {chan} < {offsets[i + 1]}:"
        lines.append(test)
        lines += ["    " + b for b in ([f"{local} = {chan} - {offsets[i]}"] if offsets[i] else []) + body(i, local)]
    return lines


def operand(node: Node, inputs: list[TensorArg | None], k: int, index: str) -> str:
    """Epilogue operand ``k`` at ``index`` as float32; an int8-stored one (``in_scales``, a residual)
    dequantized: ``float32(q) · s``."""
    scale = (node.attrs.get("in_scales") or [None] * len(inputs))[k]
    if inputs[k].dtype == "int8" and scale is not None:
        return int8.dequantized_int8(f"{inputs[k].param}[{index}]", scale)
    return load(inputs[k], index, "float32")


def store_element(node: Node, i: int, out: TensorArg, index: str, value: str) -> str:
    """The statement storing float32 ``value`` at ``out[index]`` (output ``i``): rounded to a float16
    output, or quantized with the output's scale (``out_scales[i]``) into an int8 one
    (``int8.quantize_function``)."""
    if out.dtype == "int8":
        return f"{out.param}[{index}] = int8({int8.quantized(value, node.attrs['out_scales'][i])})"
    return store(out, index, value, "float32")


def run_storable(node: Node, g: ConvGeom, outputs: list[TensorArg], inputs: list[TensorArg | None]) -> bool:
    """Whether 8 consecutive output channels can leave as one vector store: float16 (or int8)
    channels-last outputs whose every run of 8 channels starts 16-byte (8-byte) aligned, Mg a multiple
    of 8; the outputs of a merged conv each own whole runs (channel offsets multiples of 8) and have no
    run operands."""
    if g.mg % 8 or not all(runs_of_8(o) or runs_of_8(o, "int8") for o in outputs):
        return False
    offsets = split_offsets(node, _total(node, outputs), len(outputs))
    return len(outputs) == 1 or (all(o % 8 == 0 for o in offsets)
                                 and not any(run_operands(node, outputs, inputs, i) for i in range(len(outputs))))


def run_operands(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], i: int = 0) -> list[int]:
    """The epilogue operands a run store of output ``i`` loads 8 channels at a time: channels-last ones
    of the output's channel count (float16: 16 bytes; int8 with an ``in_scales`` scale: 8 bytes), e.g.
    a residual."""
    scales = node.attrs.get("in_scales") or [None] * len(inputs)
    out = outputs[i]
    return [k for k in epilogue.operands(node.attrs["epilogues"][i])
            if len(inputs[k].shape) == len(out.shape) and inputs[k].shape[1] == out.shape[1]
            and (runs_of_8(inputs[k]) or runs_of_8(inputs[k], "int8") and scales[k] is not None)]


def run_words_lines(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], chan: str,
                    coords: list[str]) -> tuple[list[str], list[str]]:
    """(lines, names): the vector loads of the run operands' raw 32-bit words at channels ``chan`` +
    0..7 (one ``ld_v4`` of float16, one ``ld_v2`` of int8, each)."""
    out, lines, names = outputs[0], [], []
    full = [coords[0], chan] + list(coords[1:])
    for k in run_operands(node, outputs, inputs):
        a = inputs[k]
        words = [f"w{k}_{j}" for j in range(2 if a.dtype == "int8" else 4)]
        lines.append(f"{', '.join(words)} = ld_v{len(words)}({a.param}, {index_of(a, out.shape, full)})")
        names += words
    return lines, names


def channel_vector(a: TensorArg, out_shape, direct: bool = False) -> bool:
    """Whether a run store reads float32 operand ``a``'s 8 channels as two 16-byte vector loads
    (:func:`vector8_lines`): it varies over the output's channels only, at stride 1 from a 16-byte
    aligned start (runs start at channels that are multiples of 8), e.g. a bias. ``direct``: ``a`` is
    indexed by the channel itself (the int8 multipliers), not broadcast against the output."""
    axis = 0 if direct else 1 - (len(out_shape) - len(a.shape))
    return (a.dtype == "float32" and a.offset % 4 == 0 and 0 <= axis < len(a.shape)
            and all(d == 1 for k, d in enumerate(a.shape) if k != axis) and a.strides[axis] == 1)


def vector8_lines(a: TensorArg, chan: str, name: str) -> list[str]:
    """``name``0..7 = channels ``chan`` + 0..7 of :func:`channel_vector` operand ``a`` (read-only loads)."""
    at = f"{a.offset} + {chan}" if a.offset else chan
    return [f"{name}0, {name}1, {name}2, {name}3 = ldg_v4_f32({a.param}, {at})",
            f"{name}4, {name}5, {name}6, {name}7 = ldg_v4_f32({a.param}, {at} + 4)"]


def run_store_lines(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], chan: str,
                    coords: list[str], values: list[str], words: str | None = None) -> list[str]:
    """Lines that put ``values`` (channels ``chan`` + 0..7 at ``coords``) through the epilogue and store
    them as one vector (see :func:`run_storable`; an int8 output quantized, 8 bytes): the operands of
    all eight are loaded first, the run operands (:func:`run_operands`) as one vector load each, or
    taken from the tuple ``words`` (:func:`run_words_lines`, loaded ahead), per-channel float32 ones
    (:func:`channel_vector`) as two. A merged conv's run goes to the output that owns it."""
    return by_output(node, outputs, chan, lambda i, local: _run_lines(node, outputs, inputs, i, local, coords, values,
                                                                      words))


def _run_lines(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], i: int, chan: str,
               coords: list[str], values: list[str], words: str | None) -> list[str]:
    """:func:`run_store_lines` for output ``i`` (``chan``: its own channel)."""
    out = outputs[i]
    loads, names = run_words_lines(node, outputs, inputs, chan, coords) if i == 0 else ([], [])
    if words is not None and names:
        loads = [f"{', '.join(names)} = {words}"]
    scales = node.attrs.get("in_scales") or [None] * len(inputs)
    runs = run_operands(node, outputs, inputs, i)
    for k in runs:
        loads += _run_decode(inputs[k], k, scales[k])

    program = node.attrs["epilogues"][i]
    vectors = [k for k in epilogue.operands(program)
               if k not in runs and channel_vector(inputs[k], out.shape)]
    for k in vectors:
        loads += vector8_lines(inputs[k], chan, f"x{k}_")

    def fetch(k, full, e):
        if k in runs:
            return f"r{k}_{e}"
        if k in vectors:
            return f"x{k}_{e}"
        name = f"f{sum(line.startswith('f') for line in loads)}"
        loads.append(f"{name} = {operand(node, inputs, k, index_of(inputs[k], out.shape, full))}")
        return name

    bodies, results = [], []
    for e, v in enumerate(values):
        full = [coords[0], f"{chan} + {e}" if e else chan] + list(coords[1:])
        body, result = epilogue.emit(program, v, lambda k, full=full, e=e: fetch(k, full, e),
                                     "float32", prefix=f"e{e}_")
        bodies += body
        results.append(result)
    at = index_of(out, out.shape, [coords[0], chan] + list(coords[1:]))
    if out.dtype == "int8":
        relu = program[-1].op == "Relu" if program else False
        quantized = [int8.quantized_bits(r, node.attrs["out_scales"][i], nonnegative=relu) for r in results]
        packed = [f"pack_s8({', '.join(quantized[e:e + 4])})" for e in (0, 4)]
        return loads + bodies + [f"st_v2({out.param}, {at}, {', '.join(packed)})"]
    packed = [f"pack_f16({results[e]}, {results[e + 1]})" for e in range(0, 8, 2)]
    return loads + bodies + [f"st_v4({out.param}, {at}, {', '.join(packed)})"]


def _run_decode(a: TensorArg, k: int, scale) -> list[str]:
    """Lines widening run operand ``k``'s words ``w<k>_j`` to float32 ``r<k>_``0..7: float16 halves, or
    int8 dequantized with ``scale``."""
    if a.dtype == "int8":
        lines = [f"{', '.join(f'b{k}_{e}' for e in range(4 * j, 4 * j + 4))} = unpack_s8_f32(w{k}_{j})"
                 for j in range(2)]
        return lines + [f"r{k}_{e} = {int8.unpacked_float(f'b{k}_{e}')} * {literal(scale)}" for e in range(8)]
    return [f"r{k}_{2 * j}, r{k}_{2 * j + 1} = unpack_f16(w{k}_{j})" for j in range(4)]


def _total(node: Node, outputs: list[TensorArg]) -> int:
    return sum(int(o.shape[1]) for o in outputs)
