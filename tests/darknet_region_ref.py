"""Tests only: darknet's ``forward_region_layer_gpu`` (src/region_layer.c) transcribed literally on flat
arrays, with its helpers ``entry_index``, ``activate_array(LOGISTIC)`` and ``softmax_cpu``."""

from __future__ import annotations

import math

import numpy as np


def forward_region(x: np.ndarray, n: int, classes: int, coords: int = 4, softmax: int = 1,
                   background: int = 0) -> np.ndarray:
    """The region layer's output for input ``x`` [batch, n·(coords + 1 + classes), h, w] (float32)."""
    batch, _, h, w = x.shape
    inp = x.astype(np.float32).reshape(-1)
    out = inp.copy()                                     # copy_gpu(l.batch*l.inputs, net.input_gpu, ...)
    outputs = inputs = h * w * n * (classes + coords + 1)

    def entry_index(b, location, entry):
        nn, loc = location // (w * h), location % (w * h)
        return b * outputs + nn * w * h * (coords + classes + 1) + entry * w * h + loc

    def logistic(index, count):
        for k in range(index, index + count):
            out[k] = np.float32(1.0 / (1.0 + math.exp(-float(out[k]))))

    for b in range(batch):
        for a in range(n):
            logistic(entry_index(b, a * w * h, 0), 2 * w * h)
            if coords > 4:
                logistic(entry_index(b, a * w * h, 4), (coords - 4) * w * h)
            if not background:
                logistic(entry_index(b, a * w * h, coords), w * h)
            if not softmax:
                logistic(entry_index(b, a * w * h, coords + 1), classes * w * h)
    if softmax:
        index = entry_index(0, 0, coords + (0 if background else 1))
        softmax_cpu(inp[index:], classes + background, batch * n, inputs // n, w * h, 1, w * h, 1.0, out[index:])
    return out.reshape(x.shape)


def softmax_cpu(inp, n, batch, batch_offset, groups, group_offset, stride, temp, out):
    for b in range(batch):
        for g in range(groups):
            start = b * batch_offset + g * group_offset
            largest = -np.finfo(np.float32).max
            for i in range(n):
                largest = max(largest, float(inp[start + i * stride]))
            total = 0.0
            for i in range(n):
                e = math.exp(float(inp[start + i * stride]) / temp - largest / temp)
                total += e
                out[start + i * stride] = e
            for i in range(n):
                out[start + i * stride] /= total
