"""The YOLOv2 ``[region]`` layer as a plugin (op ``Region``, domain ``nbtrt.darknet``, version 1).

Darknet's ``forward_region_layer_gpu`` (pjreddie/darknet, ``src/region_layer.c``) on its output layout
[N, num·(coords + 1 + classes), H, W]: anchor ``n`` owns the channels ``n·(coords + 1 + classes) + e``,
and per image, anchor and cell (j, i) the entries ``e`` become

- ``e = 0, 1`` (box x, y) and ``e = 4 .. coords − 1`` (extra coordinates): logistic;
- ``e = 2, 3`` (box w, h): copied (decoding takes ``exp`` times the anchor);
- ``e = coords`` (objectness): logistic, unless ``background``;
- the classes: with ``softmax`` a softmax over ``classes + background`` entries starting at
  ``coords + 1 − background`` (``softmax_gpu`` reads the layer's *input*), else logistic.

The kernel runs one thread per (image, anchor, cell). Darknet's YOLO9000 softmax tree is not supported.
This file is also the worked example of a plugin with its own Numba CUDA kernel (see
``examples/yolov2.py``, which decodes the boxes).
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..codegen.numba_env import cuda
from ..ir import TensorType
from ..plugins import Plugin

THREADS = 128


@cuda.jit
def region_kernel(x, y, num, coords, classes, softmax, background):
    t = cuda.grid(1)
    batch, _, h, w = x.shape
    cells = h * w
    if t >= batch * num * cells:
        return
    b, n, j, i = t // (num * cells), (t // cells) % num, (t % cells) // w, t % w
    base = n * (coords + 1 + classes)
    for e in range(coords + 1 + classes):
        v = x[b, base + e, j, i]
        logistic = e < 2 or 4 <= e < coords or (e == coords and background == 0) or (e > coords and softmax == 0)
        y[b, base + e, j, i] = 1.0 / (1.0 + math.exp(-v)) if logistic else v
    if softmax != 0:
        first, count = base + coords + 1 - background, classes + background
        largest = x[b, first, j, i]
        for k in range(1, count):
            largest = max(largest, x[b, first + k, j, i])
        total = 0.0
        for k in range(count):
            total += math.exp(x[b, first + k, j, i] - largest)
        for k in range(count):
            y[b, first + k, j, i] = math.exp(x[b, first + k, j, i] - largest) / total


class RegionPlugin(Plugin):
    """Darknet's region layer; parameters as in the cfg's ``[region]`` section."""

    op_type, domain, version = "Region", "nbtrt.darknet", 1

    def __init__(self, anchors=(), num: int = 1, classes: int = 20, coords: int = 4, softmax: int = 0,
                 background: int = 0):
        self.anchors = [float(a) for a in anchors]
        self.num, self.classes, self.coords = int(num), int(classes), int(coords)
        self.softmax, self.background = int(bool(softmax)), int(bool(background))
        if len(self.anchors) != 2 * self.num or min(self.num, self.classes, self.coords) < 1:
            raise ValueError(f"bad region parameters: num={num}, classes={classes}, coords={coords}, "
                             f"{len(self.anchors)} anchor values (need 2·num)")

    @property
    def entries(self) -> int:
        return self.coords + 1 + self.classes

    def output_types(self, input_types):
        if len(input_types) != 1 or input_types[0] is None or input_types[0].rank != 4:
            raise ValueError(f"takes one [N, C, H, W] tensor, got {[str(t) for t in input_types]}")
        t = input_types[0]
        if t.dtype != "float32":
            raise ValueError(f"takes float32, got {t.dtype}")
        c = t.shape[1]
        if isinstance(c, int) and c != self.num * self.entries:
            raise ValueError(f"input has {c} channels, num·(coords + 1 + classes) = {self.num * self.entries}")
        return [TensorType("float32", tuple(t.shape))]

    def enqueue(self, inputs, outputs, workspace, stream):
        x, y = inputs[0], outputs[0]
        total = x.shape[0] * self.num * x.shape[2] * x.shape[3]
        if total:
            blocks = (total + THREADS - 1) // THREADS
            region_kernel[blocks, THREADS, stream](x, y, self.num, self.coords, self.classes, self.softmax,
                                                   self.background)

    def reference(self, inputs):
        x = inputs[0]
        n, _, h, w = x.shape
        v = x.reshape(n, self.num, self.entries, h, w).astype(np.float64)
        out = v.copy()
        logistic = [0, 1] + list(range(4, self.coords)) + ([] if self.background else [self.coords])
        if not self.softmax:
            logistic += list(range(self.coords + 1, self.entries))
        out[:, :, logistic] = 1.0 / (1.0 + np.exp(-v[:, :, logistic]))
        if self.softmax:
            first = self.coords + 1 - self.background
            s = v[:, :, first:first + self.classes + self.background]
            e = np.exp(s - s.max(axis=2, keepdims=True))
            out[:, :, first:first + self.classes + self.background] = e / e.sum(axis=2, keepdims=True)
        return [out.reshape(x.shape).astype(np.float32)]

    def params(self) -> dict:
        return {"anchors": self.anchors, "num": self.num, "classes": self.classes, "coords": self.coords,
                "softmax": self.softmax, "background": self.background}

    def serialize(self) -> bytes:
        return json.dumps(self.params()).encode()

    @classmethod
    def deserialize(cls, data: bytes) -> "RegionPlugin":
        return cls(**json.loads(data))
