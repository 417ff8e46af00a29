"""Pad channels: an fp16 conv that reads a network input with few channels (an RGB image: C = 3) reads
it through a Pad node that appends zero channels up to a multiple of 8, with its weights widened by
zero input channels to match:

    Y = Σ_c<C W[:, c] ⊛ X[c]  =  Σ_c<C' W'[:, c] ⊛ X'[c],   X'[c] = X[c] (c < C) else 0,
                                                             W'[:, c] = W[:, c] (c < C) else 0.

The result is the same function; the point is the layout. X' is a float16 activation (channels-last
under the fp16 memory plan, see ``runtime/layout.py``), so its 8 channels of a pixel are 16 bytes at
one address and the conv can run on the pipelined tensor-core kernel (``codegen/mma_async.py``, whose
copies move 16-byte chunks of 8 channels), instead of decoding every (channel, tap) of a 3-channel
float32 input element by element. The Pad kernel does the float32 -> float16 conversion and the
NCHW -> NHWC transposition at the network's edge once. It runs after ``precision`` (it needs the
kernels' math and the float16 weights), and only for channels-last builds (``config.memory_layout``).
A strided stem usually no longer reads the network input by then: ``space_to_depth.py`` gave it a
SpaceToDepth of 16 channels; this pass covers the others (stride 1, too many channels for that).
"""

from __future__ import annotations

import numpy as np

from ..groups import kernel_kind
from ..ir import Graph, TensorType
from .weights import drop_constants

NAME = "pad_channels"
MULTIPLE = 8


def run(graph: Graph, config, report) -> None:
    if config.memory_layout != "nhwc":  # in NCHW the padded channels would buy nothing
        return
    for node in list(graph.nodes):
        if kernel_kind(node) != "conv" or node.attrs.get("base") != "Conv" or node.attrs.get("math") != "fp16":
            continue
        x, w = node.inputs[0], node.inputs[1]
        c = x.type.shape[1] if x.type.shape and len(x.type.shape) >= 3 else None
        grouped = int(node.attrs["base_attrs"].get("group") or 1) != 1
        if (x not in graph.inputs or c is None or c % MULTIPLE == 0 or grouped or w is None or not w.is_constant
                or w.type.dtype != "float16"):
            continue
        wide = -(-c // MULTIPLE) * MULTIPLE
        pads = [0] * (2 * len(x.type.shape))
        pads[len(x.type.shape) + 1] = wide - c
        pad = graph.add_node("Pad", [x, graph.add_constant(f"{node.name}_channel_pads", np.array(pads, np.int64))],
                             attrs={"mode": "constant", "math": "fp16"}, name=f"{node.name}_pad_channels",
                             index=graph.nodes.index(node))
        pad.outputs[0].type = TensorType("float16", (x.type.shape[0], wide) + tuple(x.type.shape[2:]))
        weights = np.zeros((w.const.shape[0], wide) + w.const.shape[2:], np.float16)
        weights[:, :c] = w.const
        node.set_input(0, pad.outputs[0])
        node.set_input(1, graph.add_constant(f"{w.name}_padded", weights))
        drop_constants(graph, [w])
        report.decide(NAME, f"{c} input channels padded to {wide}", [node.name])
        report.precisions[pad.name] = ("fp16", None)
