"""Fake quantization: the numpy int8 reference that int8 kernels are checked against.

Symmetric per-tensor int8 with the calibration table's scales::

    quantize(x, s)   = clip(rint(x / s), -127, 127)   (int8; rint rounds half to even, as cvt.rni)
    dequantize(q, s) = q * s                           (float32)

:func:`run_fake_quant` runs the reference interpreter with every activation that has a scale replaced
by ``dequantize(quantize(x, s), s)`` before anything reads it. With ``weights=True`` the weights of
Conv and Gemm (and of their fused forms ``nbtrt.conv`` / ``nbtrt.gemm``) are also fake-quantized per
output channel, ``s_c = max|W_c| / 127`` (what the int8 kernels will use); biases stay float.
"""

from __future__ import annotations

import numpy as np

from ..bindings import check_inputs
from ..errors import GraphError
from ..ir import Graph, Node
from .collect import interpret

QMAX = 127


def quantize(x, scale) -> np.ndarray:
    """``clip(rint(x / scale), -127, 127)`` as int8 (``scale`` a scalar or broadcastable array), the
    division done as the kernels do it: a float32 multiply by ``1 / scale`` rounded to float32 (which
    can land one step from a true division only where x / scale lies within an ulp of a half)."""
    x = np.asarray(x, dtype=np.float32)
    inverse = np.float32(1.0) / np.asarray(scale, dtype=np.float32)
    return np.clip(np.rint(x * inverse), -QMAX, QMAX).astype(np.int8)


def dequantize(q, scale) -> np.ndarray:
    return (np.asarray(q, dtype=np.float32) * np.asarray(scale, dtype=np.float32)).astype(np.float32)


def fake_quantize(x, scale) -> np.ndarray:
    """``dequantize(quantize(x, scale), scale)`` in ``x``'s float dtype."""
    x = np.asarray(x)
    return dequantize(quantize(x, scale), scale).astype(x.dtype, copy=False)


def channel_scales(weight: np.ndarray, axis: int) -> np.ndarray:
    """Per-output-channel scales ``max|W_c| / 127`` shaped to broadcast against ``weight``."""
    other = tuple(a for a in range(weight.ndim) if a != axis)
    absmax = np.max(np.abs(weight), axis=other, keepdims=True).astype(np.float32)
    return np.where(absmax > 0, absmax, np.float32(1.0)) / np.float32(QMAX)


def weight_axes(graph: Graph) -> dict[int, int]:
    """id(constant weight) -> its output-channel axis, for the Conv and Gemm weights of ``graph``."""
    axes = {}
    for node in graph.nodes:
        found = _weight_axis(node)
        if found is not None and found[0] < len(node.inputs):
            value = node.inputs[found[0]]
            if value is not None and value.is_constant and value.const.ndim >= 2:
                axes[id(value)] = found[1]
    return axes


def _weight_axis(node: Node) -> tuple[int, int] | None:
    op, attrs = node.op, node.attrs
    if node.op in ("nbtrt.conv", "nbtrt.gemm"):
        op, attrs = attrs.get("base"), attrs.get("base_attrs", {})
    if op == "Conv":
        return 1, 0
    if op == "Gemm":
        return 1, 0 if attrs.get("transB") else 1
    return None


def run_fake_quant(graph: Graph, inputs: dict, table, weights: bool = False, outputs=None) -> dict[str, np.ndarray]:
    """Run ``graph`` with its activations (and optionally weights) fake-quantized; return the outputs.

    ``table`` maps tensor names to scales (a :class:`CalibrationTable` or a dict); tensors without
    a scale stay float. ``outputs`` optionally names the values to return (default: graph outputs).
    """
    arrays, _ = check_inputs(graph, inputs)
    axes = weight_axes(graph) if weights else {}

    def transform(value, array):
        if value.name in table and np.asarray(array).dtype.kind == "f":
            return fake_quantize(array, table[value.name])
        if id(value) in axes:
            return fake_quantize(array, channel_scales(array, axes[id(value)]))
        return array
    wanted = set(outputs) if outputs is not None else {v.name for v in graph.outputs}
    results = {v.name: array for v, array in interpret(graph, arrays, transform) if v.name in wanted}
    missing = [name for name in wanted if name not in results]
    if missing:
        raise GraphError(f"not values of the graph: {', '.join(map(repr, sorted(missing)))}")
    return results
