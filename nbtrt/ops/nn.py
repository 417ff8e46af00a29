"""Schemas of the neural-network ops; ``SCHEMAS`` also merges those of ``conv.py`` and ``pool.py``.

BatchNormalization      Y = (X − mean) / √(var + ε) · scale + B, per channel (axis 1); with
                        training_mode the batch statistics are used and running_mean/var are output
InstanceNormalization   Y = (X − μ) / √(σ² + ε) · scale + B, μ, σ² over the spatial axes of each (n, c)
LayerNormalization      Y = (X − μ) / √(σ² + ε) · Scale + B, μ, σ² over axes [axis, rank); optional
                        outputs Mean and InvStdDev (shape X[:axis] + 1…1, dtype of stash_type)
Gemm                    Y = α · A' · B' + β · C, A' = Aᵀ if transA, B' = Bᵀ if transB, C broadcast
MatMul                  numpy matmul: batched with broadcasting, 1-D operands promoted and squeezed
LRN                     Y = X / (bias + α/size · Σ_{c' ∈ [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]} X[c']²)^β
Softmax / LogSoftmax    exp(x − max) / Σ exp(x − max) along ``axis`` (default −1) / its logarithm
"""

from __future__ import annotations

from ..ir import Dim, Node, TensorType
from . import conv, pool
from .conv import check_same_dtype
from .schema import (FLOAT_TYPES, REQUIRED, OpSchema, attr_error, broadcast_shapes, has_input,
                     in_type, norm_axis, same_dim, shape_error)
from .window import flag, positive_int, shape_or_none

MATMUL_TYPES = FLOAT_TYPES + ("int32", "int64", "uint32", "uint64")
STASH_TYPES = {1: "float32", 10: "float16", 11: "float64"}  # ONNX TensorProto codes


def channel_vector(node: Node, i: int, channels: Dim, what: str) -> None:
    """Input ``i`` must be a vector with one entry per channel (unchecked if its rank is unknown)."""
    s = shape_or_none(node, i)
    if s is not None and len(s) != 1 or not same_dim(s[0], channels):
        raise shape_error(node, f"{what} {list(s)} must be a vector of the {channels} channels")


def unidirectional(node: Node, i: int, target: tuple[Dim, ...], what: str) -> None:
    """Input ``i`` must broadcast to ``target`` without changing it (unchecked if a rank is unknown)."""
    s = shape_or_none(node, i)
    if s is None or target is None:
        return
    if len(s) > len(target) or not all(d == 1 or same_dim(d, t)
                                       for d, t in zip(s, target[len(target) - len(s):])):
        raise shape_error(node, f"{what} {list(s)} does not broadcast to {list(target)}")


def infer_batch_norm(node: Node) -> list[TensorType]:
    x = shape_or_none(node, 0)
    if x is not None and len(x) < 2:
        raise shape_error(node, f"input must be (N, C, ...) of rank >= 2, got {list(x)}")
    training = flag(node, "training_mode")
    if len(node.outputs) > 1 and not training:
        raise shape_error(node, "running_mean/running_var outputs need training_mode=1")
    check_same_dtype(node, 1, 2)
    stat_dtype = check_same_dtype(node, 3, 4)
    channels = None if x is None else x[1]
    for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")):
        channel_vector(node, i, channels, what)
    stat = TensorType(stat_dtype, (channels,))
    return [TensorType(in_type(node).dtype, x), stat, stat]


def infer_instance_norm(node: Node) -> list[TensorType]:
    x = shape_or_none(node, 0)
    if x is not None and len(x) < 3:
        raise shape_error(node, f"input must be (N, C, spatial...) of rank >= 3, got {list(x)}")
    dtype = check_same_dtype(node, 0, 1, 2)
    channels = None if x is None else x[1]
    channel_vector(node, 1, channels, "scale")
    channel_vector(node, 2, channels, "B")
    return [TensorType(dtype, x)]


def infer_layer_norm(node: Node) -> list[TensorType]:
    x = shape_or_none(node, 0)
    stash = STASH_TYPES.get(node.attrs["stash_type"])
    if stash is None:
        raise attr_error(node, f"stash_type {node.attrs['stash_type']} is not supported "
                               f"(allowed: {sorted(STASH_TYPES)})")
    dtype = check_same_dtype(node, 0, 1, 2)
    unidirectional(node, 1, x, "Scale")
    if has_input(node, 2):
        unidirectional(node, 2, x, "B")
    if x is None:
        return [TensorType(dtype), TensorType(stash), TensorType(stash)]
    axis = norm_axis(node, node.attrs["axis"], len(x))
    stat = TensorType(stash, x[:axis] + (1,) * (len(x) - axis))
    return [TensorType(dtype, x), stat, stat]


def infer_gemm(node: Node) -> list[TensorType]:
    dtype = check_same_dtype(node, 0, 1, 2)
    a, b = shape_or_none(node, 0, 2), shape_or_none(node, 1, 2)
    if len(a) != 2 or len(b) != 2:
        raise shape_error(node, f"A {list(a)} and B {list(b)} must be matrices")
    m, k = a[::-1] if flag(node, "transA") else a
    k2, n = b[::-1] if flag(node, "transB") else b
    if not same_dim(k, k2):
        raise shape_error(node, f"inner dims differ: A' is {[m, k]}, B' is {[k2, n]}")
    if has_input(node, 2):
        unidirectional(node, 2, (m, n), "C")
    return [TensorType(dtype, (m, n))]


def matmul_shape(node: Node, a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """numpy.matmul's result shape, with symbolic dims."""
    if not a or not b:
        raise shape_error(node, f"operands must have rank >= 1, got {list(a)} and {list(b)}")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if not same_dim(a2[-1], b2[-2]):
        raise shape_error(node, f"inner dims differ: {list(a)} @ {list(b)}")
    batch = broadcast_shapes(node, a2[:-2], b2[:-2])
    return batch + (() if len(a) == 1 else (a2[-2],)) + (() if len(b) == 1 else (b2[-1],))


def infer_matmul(node: Node) -> list[TensorType]:
    dtype = check_same_dtype(node, 0, 1)
    a, b = shape_or_none(node, 0), shape_or_none(node, 1)
    return [TensorType(dtype, None if a is None or b is None else matmul_shape(node, a, b))]


def infer_lrn(node: Node) -> list[TensorType]:
    x = shape_or_none(node, 0)
    if x is not None and len(x) < 2:
        raise shape_error(node, f"input must be (N, C, ...) of rank >= 2, got {list(x)}")
    positive_int(node, "size")
    return [in_type(node)]


def infer_softmax(node: Node) -> list[TensorType]:
    t = in_type(node)
    if t.shape is not None:
        norm_axis(node, node.attrs["axis"], len(t.shape))
    return [t]


_OWN = {
    "BatchNormalization": OpSchema("BatchNormalization", infer_batch_norm, inputs=(5, 5), outputs=(1, 3),
                                   attrs={"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0},
                                   dtypes=FLOAT_TYPES),
    "InstanceNormalization": OpSchema("InstanceNormalization", infer_instance_norm, inputs=(3, 3),
                                      attrs={"epsilon": 1e-5}, dtypes=FLOAT_TYPES),
    "LayerNormalization": OpSchema("LayerNormalization", infer_layer_norm, inputs=(2, 3), outputs=(1, 3),
                                   attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1},
                                   dtypes=FLOAT_TYPES),
    "Gemm": OpSchema("Gemm", infer_gemm, inputs=(2, 3), dtypes=MATMUL_TYPES,
                     attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}),
    "MatMul": OpSchema("MatMul", infer_matmul, inputs=(2, 2), dtypes=MATMUL_TYPES),
    "LRN": OpSchema("LRN", infer_lrn, dtypes=FLOAT_TYPES,
                    attrs={"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}),
    "Softmax": OpSchema("Softmax", infer_softmax, attrs={"axis": -1}, dtypes=FLOAT_TYPES),
    "LogSoftmax": OpSchema("LogSoftmax", infer_softmax, attrs={"axis": -1}, dtypes=FLOAT_TYPES),
}

SCHEMAS: dict[str, OpSchema] = {**conv.SCHEMAS, **pool.SCHEMAS, **_OWN}
