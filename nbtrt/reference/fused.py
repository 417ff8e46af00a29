"""numpy semantics of the fused groups (see groups.py): the anchor op, then each output's slice of
the anchor's channels through that output's epilogue program. An int8 conv/gemm (``math`` "int8",
codegen/int8.py) runs its anchor on the quantized operands (an int8-stored input as it is) and scales
the exact sum per channel; an output with a scale in ``out_scales`` is stored quantized, an operand
with one in ``in_scales`` is read dequantized (int8 storage)."""

from __future__ import annotations

import numpy as np

from ..groups import GROUP_PREFIX, KIND_OF_BASE, Program
from ..ir import Node


def evaluate(program: Program, acc, inputs, kernels) -> np.ndarray:
    """Run an epilogue program on ``acc`` with node inputs ``inputs``."""
    env = {"acc": acc}
    env.update({f"in{k}": x for k, x in enumerate(inputs)})
    out = acc
    for j, step in enumerate(program):
        stub = Node(step.op, [], [], dict(step.attrs), name=step.op)
        out = kernels[step.op](stub, *(env[a] for a in step.args))
        env[f"s{j}"] = out
    return out


def _int8_operands(node: Node, inputs) -> list:
    """The operands of an int8 conv/gemm (codegen/int8.py) as float64 integers, so the anchor's
    float64 sum is the kernel's exact int32 sum: X quantized with the node's scale, W already int8."""
    from ..quant.fake import quantize
    x = inputs[0] if inputs[0].dtype == np.int8 else quantize(inputs[0], node.attrs["int8_scale"])  # int8: stored
    x = x.astype(np.float64)
    return [x, np.asarray(inputs[1]).astype(np.float64)] + list(inputs[2:])


def _dequantized(node: Node, acc: np.ndarray, inputs) -> np.ndarray:
    """``float32(acc) · mult[channel]`` (channels: axis 1 of a conv, the last axis of a gemm)."""
    mult = np.asarray(inputs[int(node.attrs["int8_multiplier"])], dtype=np.float32).reshape(-1)
    if node.attrs["base"] == "Conv":
        mult = mult.reshape((1, -1) + (1,) * (acc.ndim - 2))
    return acc.astype(np.float32) * mult


def make_kernels(kernels: dict) -> dict:
    """Kernels for every ``nbtrt.<kind>`` op, built on the plain-op ``kernels``."""

    def run_group(node: Node, *inputs):
        a = node.attrs
        acc = None
        if a["base"] is not None:
            base = Node(a["base"], [], [], a["base_attrs"], name=node.name)
            quantized = "int8_multiplier" in a  # an int8 conv/gemm (an int8 max pool just pools integers)
            args = _int8_operands(node, inputs) if quantized else inputs
            acc = kernels[a["base"]](base, *args[:a["n_base"]])
            acc = acc[0] if isinstance(acc, tuple) else acc
            if quantized:
                acc = _dequantized(node, acc, inputs)
        if a.get("in_scales"):  # int8-stored epilogue operands (residuals), dequantized: float32(q) * s
            inputs = [x if s is None else x.astype(np.float32) * np.float32(s) for x, s in zip(inputs, a["in_scales"])]
        outs, offset = [], 0
        for i, program in enumerate(a["epilogues"]):
            part = acc
            if len(a["epilogues"]) > 1:
                part = acc[:, offset:offset + a["splits"][i]]
                offset += a["splits"][i]
            outs.append(evaluate(program, part, inputs, kernels))
        if a.get("out_scales"):  # int8 storage (passes/int8_storage.py): quantized by the epilogue
            from ..quant.fake import quantize
            outs = [o if s is None else quantize(o, s) for o, s in zip(outs, a["out_scales"])]  # clip(rint(y / s))
        return tuple(outs)

    return {GROUP_PREFIX + kind: run_group for kind in set(KIND_OF_BASE.values())}
