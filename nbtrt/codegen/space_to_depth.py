"""SpaceToDepth kernels (kernel kind ``space_to_depth``): the edge copy in front of a space-to-depth stem
(``passes/space_to_depth.py``), and ONNX's op wherever a model has it.

Output channel ``k`` of a block ``b`` reads, in mode DCR, ``k = (i·b + j)·C + c``; in mode CRD,
``k = c·b² + i·b + j``::

    out[n, k, h, w] = in[n, c, h·b + i, w·b + j]    (k < C·b²; the pass's zero channels beyond)

and an int8-stored output (``out_scales``, ``passes/int8_storage.py``) is quantized on the way,
``clip(rint(v · (1/s)), -127, 127)``.

Two forms:

- one thread per output element (grid-stride loop), the channel decoded at run time: any layout and
  dtype, and the simulator;
- on a GPU, for a channels-last float16 or int8 output of at most ``PIXEL_CHANNELS`` channels in mode
  DCR: one thread per output pixel. Every channel's source ``(c, i, j)`` is baked, the loads are at
  constant offsets from the pixel's corner ``(h·b, w·b)``, and the channels leave in 16-byte stores
  (8 float16, or 16 int8 quantized without conversions: ``int8.quantized_bits``, ``pack_s8``).

Tactic space: threads per block.
"""

from __future__ import annotations

from ..ir import Node
from ..ops.reshape import space_to_depth_channels
from ..ops.schema import shape_error
from . import int8
from .copy import DEFAULT, TACTICS, at, coords, loop_kernel
from .kernel import KernelSpec, TensorArg, convert, index_of, literal, runs_of
from .numba_env import simulated

__all__ = ["emit", "TACTICS", "DEFAULT"]

PIXEL_CHANNELS = 64  # the most output channels one thread of the per-pixel form writes


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    x, out = inputs[0], outputs[0]
    b, c = int(node.attrs["blocksize"]), x.shape[1]
    scale = (node.attrs.get("out_scales") or [None])[0]
    if out.shape[1] != space_to_depth_channels(node, c):
        raise shape_error(node, f"output has {out.shape[1]} channels, not {space_to_depth_channels(node, c)}")
    runs = runs_of(out, 16, "int8") if out.dtype == "int8" else runs_of(out, 8, "float16")
    if runs and node.attrs["mode"] == "DCR" and out.shape[1] <= PIXEL_CHANNELS and not simulated():
        return _per_pixel(node, tactic, x, out, b, scale)
    block = f"c1 // {c}" if node.attrs["mode"] == "DCR" else f"c1 % {b * b}"
    channel = f"c1 % {c}" if node.attrs["mode"] == "DCR" else f"c1 // {b * b}"
    lines = [f"if c1 < {c * b * b}:",
             f"    blk = {block}  # the position (i, j) = (blk // {b}, blk % {b}) in the block",
             f"    x1 = {channel}",
             f"    x2 = c2 * {b} + blk // {b}",
             f"    x3 = c3 * {b} + blk % {b}",
             f"    v = {convert(at(x, ['c0', 'x1', 'x2', 'x3']), x.dtype, 'float32')}",
             "else:",
             "    v = float32(0.0)  # a zero channel the pass appended"]
    stored = f"int8({int8.quantized('v', scale)})" if out.dtype == "int8" else convert("v", "float32", out.dtype)
    lines.append(f"{at(out, coords(4))} = {stored}")
    prelude = int8.quantize_function() if out.dtype == "int8" else []
    return loop_kernel("space_to_depth", node, tactic, [out], [x], out.shape, lines, prelude)


def _per_pixel(node: Node, tactic, x: TensorArg, out: TensorArg, b: int, scale) -> KernelSpec:
    """One thread per output pixel (c1 is 0): every channel loaded at a baked offset from the input
    pixel ``corner``, then 16-byte stores."""
    c = x.shape[1]
    corner = index_of(x, x.shape, ["c0", "c1", f"c2 * {b}", f"c3 * {b}"])
    lines = [f"corner = {corner}  # {x.param}[c0, 0, c2·{b}, c3·{b}]"]
    values = []
    for k in range(out.shape[1]):
        if k >= c * b * b:
            values.append(literal(0, "int32") if out.dtype == "int8" else literal(0.0))
            continue
        (i, j), ch = divmod(k // c, b), k % c
        offset = ch * x.strides[1] + i * x.strides[2] + j * x.strides[3]
        load = convert(f"{x.param}[corner + {offset}]", x.dtype, "float32")
        lines.append(f"v{k} = {load}  # c={ch}, i={i}, j={j}")
        if out.dtype == "int8":  # the low byte is the quantized value
            lines.append(f"v{k} = {int8.quantized_bits(f'v{k}', scale)}")
        values.append(f"v{k}")
    at = index_of(out, out.shape, coords(4))
    per_word = 4 if out.dtype == "int8" else 2  # channels per 32-bit word
    pack = "pack_s8" if out.dtype == "int8" else "pack_f16"
    words = [f"{pack}({', '.join(values[e:e + per_word])})" for e in range(0, len(values), per_word)]
    for w in range(0, len(words), 4):  # 16 bytes: 16 int8 or 8 float16 channels
        lines.append(f"st_v4({out.param}, {at} + {w * per_word}, {', '.join(words[w:w + 4])})")
    pixels = (out.shape[0], 1) + tuple(out.shape[2:])
    return loop_kernel("space_to_depth", node, tactic, [out], [x], pixels, lines, order=(0, 2, 3, 1))
