"""INT8 for ``precision="int8"``: which conv/gemm kernels compute in int8, and their weights. A helper
of ``passes/precision.py`` (not a pipeline pass of its own).

Activations stay float16 between kernels as in an fp16 build (except int8 storage, below); a conv or
gemm group computes in int8 (``codegen/int8.py``) when

- its activation (input 0; for a gemm, input 0 when input 1 is a constant 2-D weight matrix) has a
  scale in ``graph.quant_scales`` (tensor name -> scale: a calibration table, or Q/DQ scales), and
- its anchor is a Conv, a Gemm with alpha 1, or a MatMul, with float32 constant weights.

Everything else is fp16, with the reason in the build report. The weights of an int8 kernel become
an int8 constant, symmetric per output channel (``nbtrt.quant.fake.channel_scales``)::

    s_w[m] = max|W_m| / 127 (1/127 for an all-zero channel),   Wq = clip(rint(W / s_w), -127, 127)

or, for a weight a Q/DQ model quantized itself (``graph.weight_scales``, see ``fold_qdq.py``) per
tensor or per output channel, with its own scales (so Wq are the model's integers).

and a float32 constant ``mult[m] = s_in · s_w[m]`` — a 1-D vector over the kernel's output channels
(conv: all M channels of all groups and merged outputs; gemm: the N columns) — is appended as the
node's last input (attribute ``int8_multiplier`` holds its index, ``int8_scale`` holds s_in).

int8 storage (``int8_storage.py``): activations that only int8 kernels read (through max pools and
concats) are stored as int8, quantized once by their producer. With calibrated scales (implicit
quantization), an int8 conv whose input cannot be so stored, and which an fp16 build would run on
tensor cores, stays fp16: quantizing on load runs on CUDA cores, slower than fp16 tensor cores. So
does one whose channels per group are a multiple of 8 but not of 16 (S8_CHANNELS: a 16-byte chunk of
the s8 tensor-core kernel; e.g. GoogLeNet's 24-channel 3x3 convs), which int8 runs on CUDA cores. A
Q/DQ model (``graph.explicit_quantization``, ``fold_qdq.py``) gets int8 wherever its scales say.
"""

from __future__ import annotations

import math

import numpy as np

from ..groups import kernel_kind
from ..ir import Graph, Node
from ..quant.fake import channel_scales, quantize
from . import int8_storage
from .weights import drop_constants

S8_CHANNELS = 16  # channels per group the int8 tensor cores need a multiple of (codegen/mma_async.py)

KINDS = ("conv", "gemm")


def scales_of(graph: Graph) -> dict:
    """The graph's activation scales (``graph.quant_scales``; empty when it has none)."""
    return dict(getattr(graph, "quant_scales", None) or {})


def refusal(node: Node, scales: dict) -> str | None:
    """Why ``node`` (a conv/gemm kernel of an int8 build) stays fp16; None when it can be int8."""
    base, attrs = node.attrs.get("base"), node.attrs.get("base_attrs", {})
    if kernel_kind(node) not in KINDS or base not in ("Conv", "Gemm", "MatMul"):
        return f"{kernel_kind(node)} kernels have no int8 form yet"
    x, w = node.inputs[0], node.inputs[1]
    if w is None or not w.is_constant or w.type.dtype != "float32" or (base != "Conv" and w.const.ndim != 2):
        return "no int8 kernel without constant float32 weights"
    if base == "Gemm" and float(attrs.get("alpha") if attrs.get("alpha") is not None else 1.0) != 1.0:
        return "no int8 kernel for a Gemm with alpha != 1"
    if x is None or x.is_constant or x.type.dtype not in ("float16", "float32"):
        return "its input is not a float activation"
    s = scales.get(x.name)
    if s is None:
        return f"no calibration scale for its input {x.name!r}"
    if not (math.isfinite(float(s)) and float(s) > 0):
        return f"calibration scale {s} of its input {x.name!r} is not positive"
    return None


def output_axis(node: Node) -> int:
    """The output-channel axis of the node's weights."""
    base, attrs = node.attrs["base"], node.attrs["base_attrs"]
    if base == "Conv":
        return 0
    return 0 if base == "Gemm" and attrs.get("transB") else 1


def assign(graph: Graph, kernels: list[Node], labels: dict) -> None:
    """Turn every tentative "int8" label into ("int8", why) with quantized weights, or ("fp16", why)."""
    scales = scales_of(graph)
    explicit = bool(getattr(graph, "explicit_quantization", False))  # Q/DQ: int8 where the model says
    for node in kernels:
        if labels[id(node)][0] != "int8":
            continue
        why = refusal(node, scales) or (None if explicit else _fp16_channels(graph, node))
        if why:
            labels[id(node)] = ("fp16", why)
    stored = {id(v): group.scale for group in int8_storage.groups(graph, labels, scales) for v in group.values}
    made: dict[int, object] = {}
    old = []
    for node in kernels:
        if labels[id(node)][0] != "int8":
            continue
        x = node.inputs[0]
        if id(x) not in stored and not explicit and fp16_tensor_cores(graph, node):
            labels[id(node)] = ("fp16", f"its input {x.name!r} cannot be stored as int8 (see passes/int8_storage.py) "
                                "and fp16 tensor cores beat quantizing it on load")
            continue
        s_in = float(stored.get(id(x), scales[x.name]))  # int8 storage: the group's scale
        labels[id(node)] = ("int8", f"input {x.name!r} scale {s_in:.4g}, int8 weights per output channel")
        old.append(node.inputs[1])
        quantize_weights(graph, node, s_in, made)
    drop_constants(graph, old)


def fp16_tensor_cores(graph: Graph, node: Node) -> bool:
    """Whether an fp16 build would run this kernel on the pipelined tensor cores: a 2-D conv with a
    multiple of 8 channels per group, or an ungrouped one reading a network input (``pad_channels.py``
    pads its channels to 8). Then the int8 kernel, which quantizes on load on CUDA cores unless its
    input is stored as int8, is the slower one."""
    x = node.inputs[0]
    if node.attrs.get("base") != "Conv" or len(x.type.shape or ()) != 4:
        return False
    groups = int(node.attrs["base_attrs"].get("group") or 1)
    return channels_per_group(node) % 8 == 0 or (groups == 1 and any(x is i for i in graph.inputs))


def channels_per_group(node: Node) -> int:
    return int(node.inputs[0].type.shape[1]) // int(node.attrs["base_attrs"].get("group") or 1)


def _fp16_channels(graph: Graph, node: Node) -> str | None:
    """Why a conv with 8k but not 16k channels per group stays fp16 (None otherwise): the int8 tensor
    cores copy S8_CHANNELS at a time, so int8 would run on CUDA cores, slower than fp16 tensor cores."""
    if not fp16_tensor_cores(graph, node):
        return None
    cg = channels_per_group(node)
    if cg % 8 or cg % S8_CHANNELS == 0:
        return None
    return f"{cg} channels per group: the int8 tensor cores need a multiple of {S8_CHANNELS}, the fp16 ones run it"


def quantize_weights(graph: Graph, node: Node, s_in: float, made: dict) -> None:
    """Give ``node`` its int8 weights (shared between nodes reading the same constant) and its
    multipliers; mark it with the attributes codegen reads."""
    w = node.inputs[1]
    axis = output_axis(node)
    s_w = _model_scales(graph, w, axis)
    s_w = channel_scales(w.const, axis) if s_w is None else s_w
    if id(w) not in made:
        made[id(w)] = graph.add_constant(f"{w.name}_int8", quantize(w.const, s_w))
    mult = (np.float32(s_in) * s_w).astype(np.float32).reshape(-1)
    m = graph.add_constant(f"{node.name}_int8_multiplier", mult)
    inputs = list(node.inputs)
    inputs[1] = made[id(w)]
    node.set_inputs(inputs + [m])
    node.attrs["int8_scale"] = s_in
    node.attrs["int8_multiplier"] = len(inputs)


def _model_scales(graph: Graph, w, axis: int):
    """The Q/DQ model's own scales of weight ``w`` when per tensor or per output channel (shaped to
    broadcast along ``axis``); None otherwise."""
    s = (getattr(graph, "weight_scales", None) or {}).get(w.name)
    if s is None:
        return None
    s = np.asarray(s, dtype=np.float32)
    n = w.const.shape[axis]
    if s.size == 1:
        vec = np.full(n, s.reshape(-1)[0], np.float32)
    elif s.ndim == w.const.ndim and s.size == n and s.shape[axis] == n:
        vec = s.reshape(-1)
    else:
        return None
    if not (vec > 0).all():
        return None
    return vec.reshape([n if a == axis else 1 for a in range(w.const.ndim)])
