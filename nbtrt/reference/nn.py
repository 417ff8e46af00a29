"""numpy semantics of the neural-network ops; ``KERNELS`` also merges ``conv.py`` and ``pool.py``.

BatchNormalization      Y = (X − mean) / √(var + ε) · scale + B per channel; training_mode uses the
                        batch mean/variance (population) and outputs running = stat·momentum + batch·(1 − momentum)
InstanceNormalization   Y = (X − μ) / √(σ² + ε) · scale + B, μ, σ² over the spatial axes of each (n, c)
LayerNormalization      Y = (X − μ) · InvStdDev · Scale + B, μ, σ² over [axis, rank), InvStdDev = 1/√(σ² + ε)
Gemm                    Y = α · op(A) · op(B) + β · C
MatMul                  numpy.matmul
LRN                     Y = X / (bias + α/size · Σ_window X²)^β, the window over channels
                        [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉] (cut at the edges)
Softmax / LogSoftmax    exp(x − max) / Σ exp(x − max) along axis, and x − max − log Σ exp(x − max)

Kernels are called ``fn(node, *inputs)``; float16 is computed in float32 (dot products: Gemm, MatMul,
in float64) and the result cast back to the input dtype.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ops.nn import STASH_TYPES
from . import conv, pool
from .window import acc_dtype, work_dtype


def _outputs(node, *arrays):
    """One array, or as many as the node has outputs."""
    n = max(1, len(node.outputs))
    return arrays[0] if n == 1 else tuple(arrays[:n])


def _per_channel(v, ndim: int, dtype) -> np.ndarray:
    return np.asarray(v, dtype=dtype).reshape((1, -1) + (1,) * (ndim - 2))


def batch_normalization(node, x, scale, b, mean, var):
    ct = np.result_type(work_dtype(x.dtype), work_dtype(mean.dtype))
    xc = x.astype(ct)
    eps, momentum = node.attrs["epsilon"], node.attrs["momentum"]
    if node.attrs.get("training_mode", 0):
        axes = (0,) + tuple(range(2, x.ndim))
        use_mean, use_var = xc.mean(axis=axes), xc.var(axis=axes)
        run_mean = mean.astype(ct) * momentum + use_mean * (1 - momentum)
        run_var = var.astype(ct) * momentum + use_var * (1 - momentum)
    else:
        use_mean, use_var = mean.astype(ct), var.astype(ct)
        run_mean, run_var = use_mean, use_var
    rstd = 1.0 / np.sqrt(use_var + np.asarray(eps, dtype=ct))
    y = (xc - _per_channel(use_mean, x.ndim, ct)) * _per_channel(rstd * scale.astype(ct), x.ndim, ct)
    y = (y + _per_channel(b, x.ndim, ct)).astype(x.dtype)
    return _outputs(node, y, run_mean.astype(mean.dtype), run_var.astype(var.dtype))


def instance_normalization(node, x, scale, b):
    ct = work_dtype(x.dtype)
    xc = x.astype(ct)
    axes = tuple(range(2, x.ndim))
    mu = xc.mean(axis=axes, keepdims=True)
    var = ((xc - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (xc - mu) / np.sqrt(var + np.asarray(node.attrs["epsilon"], dtype=ct))
    y = y * _per_channel(scale, x.ndim, ct) + _per_channel(b, x.ndim, ct)
    return y.astype(x.dtype)


def layer_normalization(node, x, scale, b=None):
    axis = node.attrs["axis"] % x.ndim
    stash = np.dtype(STASH_TYPES[node.attrs["stash_type"]])
    ct = np.result_type(stash, x.dtype)
    xc = x.astype(ct)
    axes = tuple(range(axis, x.ndim))
    mu = xc.mean(axis=axes, keepdims=True)
    d = xc - mu
    inv_std = 1.0 / np.sqrt((d * d).mean(axis=axes, keepdims=True) + np.asarray(node.attrs["epsilon"], ct))
    y = (d * inv_std).astype(x.dtype).astype(work_dtype(x.dtype)) * scale
    if b is not None:
        y = y + b
    return _outputs(node, y.astype(x.dtype), mu.astype(stash), inv_std.astype(stash))


def gemm(node, a, b, c=None):
    a = a.T if node.attrs["transA"] else a
    b = b.T if node.attrs["transB"] else b
    alpha, beta = node.attrs["alpha"], node.attrs["beta"]
    ct = acc_dtype(a.dtype) if a.dtype.kind == "f" else np.dtype(np.int64)
    y = np.matmul(a.astype(ct), b.astype(ct))
    if alpha != 1:
        y = y * alpha
    if c is not None and beta != 0:
        y = y + (c.astype(ct) if beta == 1 else beta * c.astype(ct))
    return np.asarray(y).astype(a.dtype)


def matmul(node, a, b):
    ct = acc_dtype(a.dtype)
    return np.matmul(a.astype(ct, copy=False), b.astype(ct, copy=False)).astype(a.dtype)


def lrn(node, x):
    size = int(node.attrs["size"])
    alpha, beta, bias = node.attrs["alpha"], node.attrs["beta"], node.attrs["bias"]
    ct = work_dtype(x.dtype)
    xc = x.astype(ct)
    before = (size - 1) // 2
    widths = [(0, 0), (before, size - 1 - before)] + [(0, 0)] * (x.ndim - 2)
    squares = np.pad(xc * xc, widths)
    window_sum = sliding_window_view(squares, size, axis=1).sum(axis=-1)
    y = xc / (ct.type(bias) + ct.type(alpha / size) * window_sum) ** ct.type(beta)
    return y.astype(x.dtype)


def softmax(node, x):
    ct = work_dtype(x.dtype)
    axis = node.attrs["axis"]
    e = np.exp(x.astype(ct) - x.astype(ct).max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


def log_softmax(node, x):
    ct = work_dtype(x.dtype)
    axis = node.attrs["axis"]
    shifted = x.astype(ct) - x.astype(ct).max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype)


KERNELS = {
    **conv.KERNELS,
    **pool.KERNELS,
    "BatchNormalization": batch_normalization,
    "InstanceNormalization": instance_normalization,
    "LayerNormalization": layer_normalization,
    "Gemm": gemm,
    "MatMul": matmul,
    "LRN": lrn,
    "Softmax": softmax,
    "LogSoftmax": log_softmax,
}
