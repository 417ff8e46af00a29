"""A PyTorch ``nn.Module`` of a Darknet YOLOv2 network, for ``bench_yolov2.py`` only (it imports torch).

It is built from the plain-Python layer list and weights of ``bench_yolov2.layer_specs`` /
``read_weights`` (not from nbtrt's importer), and follows the semantics nbtrt's reference gives the same
cfg (``nbtrt/frontends/darknet.py``, ``darknet_region.py``):

- convolutional: ``Conv2d`` (padding from the spec: ``size//2`` for ``pad=1``), then ``BatchNorm2d``
  (ε = 1e-5, γ = scales, β = biases, running mean/variance) or the biases as the conv's bias; leaky 0.1,
  relu, logistic or linear.
- maxpool: −∞ padding of ``begin`` rows/columns before and ``end`` after, then an unpadded max pool.
- route: the routed layers' outputs, concatenated on channels when there are several.
- reorg (stride s): reshape [N, C/s², H, s, W, s] → permute (0, 3, 5, 1, 2, 4) → reshape [N, C·s², H/s, W/s].
- region: per anchor, logistic on x, y, the extra coordinates and (unless background) objectness; softmax
  over the classes (+ background), or logistic on them without ``softmax``; w, h copied; same layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def region_logistic(spec: dict) -> list[bool]:
    """Per region entry (coords + 1 + classes of one anchor): does it take the logistic?"""
    coords, entries = spec["coords"], spec["coords"] + 1 + spec["classes"]
    chosen = {0, 1, *range(4, coords)} | (set() if spec["background"] else {coords})
    if not spec["softmax"]:
        chosen |= set(range(coords + 1, entries))
    return [e in chosen for e in range(entries)]


def conv_block(spec: dict, p: dict) -> nn.Sequential:
    conv = nn.Conv2d(spec["c"], spec["n"], spec["size"], spec["stride"], spec["pad"], groups=spec["groups"],
                     bias=not spec["bn"])
    conv.weight.copy_(torch.from_numpy(p["weights"]))
    layers = [conv]
    if spec["bn"]:
        bn = nn.BatchNorm2d(spec["n"], eps=1e-5)
        for target, key in ((bn.weight, "scales"), (bn.bias, "biases"), (bn.running_mean, "rolling_mean"),
                            (bn.running_var, "rolling_variance")):
            target.copy_(torch.from_numpy(p[key]))
        layers.append(bn)
    else:
        conv.bias.copy_(torch.from_numpy(p["biases"]))
    act = {"leaky": lambda: nn.LeakyReLU(0.1, inplace=True), "relu": lambda: nn.ReLU(inplace=True),
           "logistic": nn.Sigmoid, "linear": None}[spec["act"]]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def maxpool(x, spec: dict):
    begin, end = spec["begin"], spec["end"]
    if begin or end:
        x = F.pad(x, (begin, end, begin, end), value=float("-inf"))
    return F.max_pool2d(x, spec["size"], spec["stride"])


def reorg(x, s: int):
    n, c, h, w = x.shape
    y = x.reshape(n, c // (s * s), h, s, w, s).permute(0, 3, 5, 1, 2, 4).reshape(n, c * s * s, h // s, w // s)
    if x.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous(memory_format=torch.channels_last)
    return y


def region(x, spec: dict, logistic):
    n, _, h, w = x.shape
    v = x.reshape(n, spec["num"], spec["coords"] + 1 + spec["classes"], h, w)
    out = torch.where(logistic, torch.sigmoid(v), v)
    if spec["softmax"]:
        first = spec["coords"] + 1 - spec["background"]
        out = torch.cat([out[:, :, :first], torch.softmax(v[:, :, first:], dim=2)], dim=2)
    return out.reshape(x.shape)


class Darknet(nn.Module):
    """The layers of ``specs`` in order; ``params`` maps a conv layer's index to its darknet weights."""

    def __init__(self, specs: list[dict], params: dict[int, dict]):
        super().__init__()
        self.specs = specs
        self.blocks = nn.ModuleList(conv_block(s, params[i]) if s["kind"] == "conv" else nn.Identity()
                                    for i, s in enumerate(specs))
        last = specs[-1]
        mask = region_logistic(last) if last["kind"] == "region" else []
        # [entries, 1, 1] (broadcast over [N, num, entries, H, W]): a 5-D buffer would break .to(channels_last)
        self.register_buffer("logistic", torch.tensor(mask, dtype=torch.bool).reshape(-1, 1, 1))

    def forward(self, x):
        outputs = []
        for spec, block in zip(self.specs, self.blocks):
            kind = spec["kind"]
            if kind == "conv":
                x = block(x)
            elif kind == "maxpool":
                x = maxpool(x, spec)
            elif kind == "route":
                routed = [outputs[i] for i in spec["layers"]]
                x = routed[0] if len(routed) == 1 else torch.cat(routed, dim=1)
            elif kind == "reorg":
                x = reorg(x, spec["stride"])
            else:
                x = region(x, spec, self.logistic)
            outputs.append(x)
        return x


def build(specs: list[dict], params: dict[int, dict]) -> Darknet:
    """The float32 module on the CPU, in eval mode."""
    with torch.no_grad():
        return Darknet(specs, params).eval()
