"""Space to depth: a strided conv that reads a network input with few channels (an RGB image's 7×7
stride-2 stem) becomes a stride-1 conv on a SpaceToDepth of that input, with more channels and a
smaller kernel. Per spatial axis, with stride s, kernel k and begin pad p, write a tap's offset from
the output's window start as ``t - p = s·a + i`` (0 <= i < s)::

    Y[o] = Σ_t W[t] · X[s·o + t - p]  =  Σ_a Σ_i W[s·a + i + p] · X[s·(o + a) + i]
                                      =  Σ_a Σ_i W'[a, i] · X'_i[o + a],     X'_i[j] = X[s·j + i]

X' = SpaceToDepth(X, s) (mode DCR: channel ``(i·s + j)·C + c`` holds the phase (i, j) of channel c).
``a`` runs from ``-ceil(p/s)`` to ``floor((k-1-p)/s)``: a kernel of ``T = floor((k-1-p)/s) + ceil(p/s) + 1``
taps, stride 1, begin pad ``ceil(p/s)``, end pad ``O - 1 + T - ceil(p/s) - D/s`` (O output, D input
size), ``W'[a, i] = W[s·a + i + p]`` where that tap exists and 0 elsewhere. For ResNet-50's and
GoogLeNet's stem (224², k 7, s 2, p 3): a 4×4 conv on 12 channels, pads (2, 1), 112² out: the same
function.

The point is the tensor cores. The 7×7 conv on 3 channels (8 after ``pad_channels``) reduces over
49 taps of 8 channels; the 4×4 one over 16 taps of 16 channels (the SpaceToDepth node's ``channels``
pads C·s² with zero channels to a multiple of 8, of 16 in int8 builds, and W' gets zero input
channels to match), a third fewer products and whole 16-byte chunks of the int8 kernel's copies too,
so an int8 build can run the stem on the int8 tensor cores: the SpaceToDepth kernel quantizes its
output (``int8_storage.py``) with the network input's calibrated scale (X' holds X's values and
zeros: the same range).

It runs before ``precision`` (which decides int8 on the new conv) and only in channels-last builds
(``config.memory_layout``), for an ungrouped, undilated conv with equal strides >= 2 on a network
input whose channel count is no multiple of 8 and whose spatial sizes are multiples of the stride.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..codegen.conv_geom import base_node
from ..codegen.space_to_depth import PIXEL_CHANNELS
from ..groups import kernel_kind
from ..ir import Graph, Node, TensorType
from ..ops.window import forward_shape, window_attrs
from .weights import drop_constants

NAME = "space_to_depth"


def run(graph: Graph, config, report) -> None:
    if config.memory_layout != "nhwc":
        return
    multiple = 16 if config.precision == "int8" else 8  # whole chunks of the s8 / f16 tensor-core copies
    scales = getattr(graph, "quant_scales", None)
    for node in list(graph.nodes):
        s = _stride(graph, node)
        if s is None:
            continue
        x, w = node.inputs[0], node.inputs[1]
        n, c, h, wd = x.type.shape
        channels = -(-c * s * s // multiple) * multiple
        if channels > PIXEL_CHANNELS:
            continue
        axes = _axes(node, (h, wd), s)
        if axes is None:
            continue
        s2d = graph.add_node("SpaceToDepth", [x], attrs={"blocksize": s, "mode": "DCR", "channels": channels},
                             name=f"{node.name}_space_to_depth", index=graph.nodes.index(node))
        s2d.outputs[0].type = TensorType(x.type.dtype, (n, channels, h // s, wd // s))
        if scales and x.name in scales:
            scales[s2d.outputs[0].name] = scales[x.name]
        node.set_input(0, s2d.outputs[0])
        node.set_input(1, graph.add_constant(f"{w.name}_space_to_depth", _weights(w.const, s, channels, axes)))
        drop_constants(graph, [w])
        kernel = [t for _, t, _, _ in axes]
        node.attrs["base_attrs"] = {**node.attrs["base_attrs"], "kernel_shape": kernel, "strides": [1, 1],
                                    "dilations": [1, 1], "auto_pad": "NOTSET",
                                    "pads": [b for _, _, b, _ in axes] + [e for *_, e in axes]}
        k = list(w.const.shape[2:])
        report.decide(NAME, f"{k[0]}x{k[1]} stride-{s} conv on {c} channels as a {kernel[0]}x{kernel[1]} stride-1 "
                      f"conv on {channels}", [node.name])


def _stride(graph: Graph, node: Node) -> int | None:
    """The stride s of a conv this pass rewrites (None when it does not apply)."""
    if kernel_kind(node) != "conv" or node.attrs.get("base") != "Conv":
        return None
    x, w = node.inputs[0], node.inputs[1]
    attrs = node.attrs["base_attrs"]
    shape = x.type.shape
    if (x not in graph.inputs or shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:])
            or shape[1] % 8 == 0 or w is None or not w.is_constant or int(attrs.get("group") or 1) != 1):
        return None
    strides, dilations = attrs.get("strides") or [1, 1], attrs.get("dilations") or [1, 1]
    s = int(strides[0])
    if s < 2 or any(int(v) != s for v in strides) or any(int(d) != 1 for d in dilations):
        return None
    return s if shape[2] % s == 0 and shape[3] % s == 0 else None


def _axes(node: Node, sizes, s: int) -> list[tuple[int, int, int, int]] | None:
    """Per spatial axis (p, T, P, Q): the conv's begin pad, and the stride-1 conv's taps, begin and end
    pads; None when an end pad would be negative."""
    base = base_node(node)
    win = window_attrs(base, tuple(node.inputs[1].const.shape[2:]))
    out, pads = forward_shape(base, win, tuple(sizes))
    axes = []
    for k, d, o, p in zip(win.kernel, sizes, out, pads):
        begin = -(-p // s)
        taps = (k - 1 - p) // s + begin + 1
        end = o - 1 + taps - begin - d // s
        if end < 0:
            return None
        axes.append((p, taps, begin, end))
    return axes


def _weights(w: np.ndarray, s: int, channels: int, axes) -> np.ndarray:
    """W'[m, (i·s + j)·C + c, a_h + P_h, a_w + P_w] = W[m, c, s·a_h + i + p_h, s·a_w + j + p_w] where that
    tap lies inside W; 0 elsewhere (and on the zero channels from C·s² on)."""
    m, c = w.shape[:2]
    (ph, th, bh, _), (pw, tw, bw, _) = axes
    out = np.zeros((m, channels, th, tw), w.dtype)
    for i, j, ah, aw in itertools.product(range(s), range(s), range(th), range(tw)):
        kh, kw = s * (ah - bh) + i + ph, s * (aw - bw) + j + pw
        if 0 <= kh < w.shape[2] and 0 <= kw < w.shape[3]:
            out[:, (i * s + j) * c:(i * s + j + 1) * c, ah, aw] = w[:, :, kh, kw]
    return out
