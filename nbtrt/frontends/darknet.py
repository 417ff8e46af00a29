"""Darknet frontend: a ``.cfg`` network definition and its ``.weights`` file become an :class:`nbtrt.ir.Graph`.

The graph uses the same canonical ops as the ONNX frontend, so every pass, the reference interpreter and
the engine apply. Darknet's semantics, layer by layer (pjreddie/darknet, ``parser.c`` and the layers):

- ``[convolutional]``: ``Conv`` (pads ``size//2`` on every side when ``pad=1``, which wins over an
  explicit ``padding=`` as in darknet's ``if(pad) padding = size/2``), then with ``batch_normalize`` a
  ``BatchNormalization`` (γ = scales, β = biases, ε = 1e-5 as darknet's GPU path; the pipeline folds
  it), else the biases as the Conv's bias; then the activation: leaky (``LeakyRelu`` α = 0.1), relu,
  logistic (``Sigmoid``) or linear (nothing). Darknet's default activation is logistic.
- ``[maxpool]``: ``padding`` defaults to ``size − 1``, the output is ``(h + padding − size)/stride + 1``
  and windows start at ``−(padding/2)``: a ``MaxPool`` with pads ``padding//2`` before and the rest after.
- ``[route]``: ``layers`` (negative: relative to this layer); one layer is that layer's output itself,
  several are a ``Concat`` on channels.
- ``[reorg]``: darknet's ``reorg_cpu(..., forward=0)`` views its input [N, C, H, W] as
  [N, C/s², H·s, W·s] and gathers ``out[n, k, j, i] = x[n, k % (C/s²), j·s + (k / (C/s²)) / s,
  i·s + (k / (C/s²)) % s]`` over the index space [N, C, H, W], re-viewed as [N, C·s², H/s, W/s]:
  Reshape [N, C/s², H, s, W, s] → Transpose (0, 3, 5, 1, 2, 4) → Reshape [N, C·s², H/s, W/s].
- ``[region]`` (the last layer): a node of the region plugin (``darknet_region.py``: logistic on x, y
  and objectness, softmax over the classes), whose output is the graph's; ``graph.region`` also holds
  its parameters (anchors, classes, num, coords, softmax, thresh, ...) for decoding boxes.

``.weights``: int32 major, minor, revision; ``seen`` as int64 when ``major·10 + minor ≥ 2`` (and both
< 1000) else int32; then per convolutional layer in order: biases [n], with batch_normalize scales [n],
rolling mean [n], rolling variance [n], then weights [n, c/groups, size, size], all float32.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import AttributeValueError, ModelLoadError, UnsupportedOpError
from ..ir import Graph, TensorType, Value
from ..ops import fill_attributes, infer_node
from ..plugins import PLUGIN_OP
from .darknet_region import RegionPlugin

BN_EPSILON = 1e-5
LEAKY_ALPHA = 0.1
ACTIVATIONS = {"leaky": "LeakyRelu", "relu": "Relu", "logistic": "Sigmoid", "linear": None}
LAYERS = ("convolutional", "conv", "maxpool", "max", "route", "reorg", "region")


def read_cfg(cfg_path) -> list[tuple[str, dict[str, str]]]:
    """Sections of a darknet cfg as (type, options) in order; whitespace is dropped as darknet's strip()."""
    path = Path(cfg_path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read the darknet cfg ({e.strerror or e})") from None
    sections: list[tuple[str, dict[str, str]]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise ModelLoadError(f"{path}:{lineno}: malformed section header {raw.strip()!r}")
            sections.append((line[1:-1].lower(), {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key] = value
        else:
            raise ModelLoadError(f"{path}:{lineno}: expected a [section] or key=value, got {raw.strip()!r}")
    if not sections or sections[0][0] not in ("net", "network"):
        raise ModelLoadError(f"{path}: a darknet cfg starts with a [net] section")
    return sections


class _Section:
    """Typed access to one section's options; every error names the cfg, the section and its type."""

    def __init__(self, cfg: Path, index: int, kind: str, options: dict[str, str], layer: int | None):
        self.cfg, self.index, self.kind, self.options, self.layer = cfg, index, kind, options, layer

    def where(self) -> str:
        layer = "" if self.layer is None else f", layer {self.layer}"
        return f"{self.cfg}: section {self.index} [{self.kind}]{layer}"

    def error(self, message: str) -> AttributeValueError:
        return AttributeValueError(f"{self.where()}: {message}")

    def get(self, key: str, default=None, kind=int):
        value = self.options.get(key)
        if value is None:
            if default is None:
                raise self.error(f"missing required key {key!r}")
            return default
        try:
            return kind(value)
        except ValueError:
            raise self.error(f"{key}={value!r} is not a valid {kind.__name__}") from None

    def positive(self, key: str, default=None) -> int:
        value = self.get(key, default)
        if value <= 0:
            raise self.error(f"{key}={value} must be positive")
        return value

    def floats(self, key: str) -> list[float]:
        try:
            return [float(x) for x in self.options.get(key, "").split(",") if x]
        except ValueError:
            raise self.error(f"{key}={self.options[key]!r} is not a list of numbers") from None


class _Weights:
    """Sequential reader of a .weights file (None: zero weights with unit variance, for structure only)."""

    def __init__(self, path):
        self.path, self.data, self.offset = path, None, 0
        if path is None:
            return
        try:
            self.data = Path(path).read_bytes()
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read the darknet weights ({e.strerror or e})") from None
        if len(self.data) < 12:
            raise ModelLoadError(f"{path}: too short for a darknet weights header ({len(self.data)} bytes)")
        major, minor, _ = np.frombuffer(self.data, "<i4", 3)
        wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
        self.offset = 12 + (8 if wide else 4)
        if len(self.data) < self.offset:
            raise ModelLoadError(f"{path}: too short for a darknet weights header ({len(self.data)} bytes)")

    def take(self, shape, what: str, section: _Section, fill: float = 0.0) -> np.ndarray:
        count = int(np.prod(shape))
        if self.data is None:
            return np.full(shape, fill, np.float32)
        end = self.offset + 4 * count
        if end > len(self.data):
            have = (len(self.data) - self.offset) // 4
            raise ModelLoadError(f"{self.path}: weights end in layer {section.layer} ([{section.kind}], "
                                 f"section {section.index} of {section.cfg}): {what} needs {count} floats, "
                                 f"{have} left (truncated file, or a cfg that does not match it)")
        array = np.frombuffer(self.data, "<f4", count, self.offset).astype(np.float32).reshape(shape)
        self.offset = end
        return array

    def finish(self, last_layer: int) -> None:
        if self.data is not None and self.offset != len(self.data):
            raise ModelLoadError(f"{self.path}: {len(self.data) - self.offset} bytes left over after the last "
                                 f"layer with weights (layer {last_layer}): the weights do not match the cfg")


class _Builder:
    def __init__(self, cfg: Path, weights: _Weights):
        self.cfg, self.weights = cfg, weights
        self.graph = Graph(cfg.stem)
        self.outputs: list[Value] = []      # per darknet layer

    def node(self, op: str, inputs, name: str, **attrs) -> Value:
        node = self.graph.add_node(op, inputs, attrs=attrs, name=name, output_names=[name])
        fill_attributes(node)
        infer_node(node)
        return node.outputs[0]

    def const(self, name: str, array) -> Value:
        return self.graph.add_constant(name, array)

    def convolutional(self, s: _Section, x: Value) -> Value:
        n, size = s.positive("filters"), s.positive("size", 1)
        stride, groups = s.positive("stride", 1), s.positive("groups", 1)
        padding = size // 2 if s.get("pad", 0) else s.get("padding", 0)
        bn = s.get("batch_normalize", 0)
        activation = s.get("activation", "logistic", str)
        if activation not in ACTIVATIONS:
            raise s.error(f"activation {activation!r} is not supported (one of {sorted(ACTIVATIONS)})")
        if s.get("dilation", 1) != 1 or s.get("binary", 0) or s.get("xnor", 0):
            raise s.error("dilated, binary and xnor convolutions are not supported")
        c = x.type.shape[1]
        if padding < 0 or c % groups or n % groups:
            raise s.error(f"bad geometry: padding {padding}, {c} input channels, {n} filters, {groups} groups")
        name = f"conv{s.layer}"
        biases = self.weights.take((n,), "biases", s)
        if bn:
            scales = self.weights.take((n,), "scales", s, 1.0)
            mean = self.weights.take((n,), "rolling_mean", s)
            var = self.weights.take((n,), "rolling_variance", s, 1.0)
        w = self.weights.take((n, c // groups, size, size), "weights", s)
        inputs = [x, self.const(f"{name}_W", w)] + ([] if bn else [self.const(f"{name}_B", biases)])
        y = self.node("Conv", inputs, name, kernel_shape=(size, size), strides=(stride, stride),
                      pads=(padding,) * 4, group=groups, dilations=(1, 1))
        if bn:
            params = [self.const(f"{name}_bn_{k}", a) for k, a in
                      (("scale", scales), ("B", biases), ("mean", mean), ("var", var))]
            y = self.node("BatchNormalization", [y] + params, f"bn{s.layer}", epsilon=BN_EPSILON)
        op = ACTIVATIONS[activation]
        if op == "LeakyRelu":
            y = self.node(op, [y], f"{activation}{s.layer}", alpha=LEAKY_ALPHA)
        elif op is not None:
            y = self.node(op, [y], f"{activation}{s.layer}")
        return y

    def maxpool(self, s: _Section, x: Value) -> Value:
        stride = s.positive("stride", 1)
        size = s.positive("size", stride)
        padding = s.get("padding", size - 1)
        h, w = x.type.shape[2:]
        if padding < 0 or min(h, w) + padding < size:
            raise s.error(f"bad geometry: size {size}, padding {padding} on a {h}x{w} input")
        begin = padding // 2
        end = padding - begin
        return self.node("MaxPool", [x], f"maxpool{s.layer}", kernel_shape=(size, size),
                         strides=(stride, stride), pads=(begin, begin, end, end))

    def route(self, s: _Section, x: Value) -> Value:
        if "layers" not in s.options:
            raise s.error("missing required key 'layers'")
        try:
            refs = [int(v) for v in s.options["layers"].split(",") if v]
        except ValueError:
            raise s.error(f"layers={s.options['layers']!r} is not a list of integers") from None
        if s.get("groups", 1) != 1:
            raise s.error("route with groups is not supported")
        values = []
        for r in refs or [None]:
            index = None if r is None else (s.layer + r if r < 0 else r)
            if index is None or not 0 <= index < s.layer:
                raise s.error(f"layers={s.options['layers']!r}: {r} names no earlier layer")
            values.append(self.outputs[index])
        if len(values) == 1:
            return values[0]
        shapes = [v.type.shape for v in values]
        if len({sh[2:] for sh in shapes}) != 1:
            raise s.error(f"routed layers {refs} have different spatial sizes {[list(sh) for sh in shapes]}")
        return self.node("Concat", values, f"route{s.layer}", axis=1)

    def reorg(self, s: _Section, x: Value) -> Value:
        st = s.positive("stride", 1)
        if s.get("reverse", 0) or s.get("flatten", 0) or s.get("extra", 0):
            raise s.error("reorg with reverse, flatten or extra is not supported")
        _, c, h, w = x.type.shape
        if c % (st * st) or h % st or w % st:
            raise s.error(f"stride {st} does not divide the input [{c}, {h}, {w}] (channels by {st * st})")
        name = f"reorg{s.layer}"
        split = self.const(f"{name}_split", np.array([0, c // (st * st), h, st, w, st], np.int64))
        y = self.node("Reshape", [x, split], f"{name}_split")
        y = self.node("Transpose", [y], f"{name}_transpose", perm=(0, 3, 5, 1, 2, 4))
        merged = self.const(f"{name}_shape", np.array([0, c * st * st, h // st, w // st], np.int64))
        return self.node("Reshape", [y, merged], name)

    def region(self, s: _Section, x: Value) -> tuple[dict, Value]:
        num, classes, coords = s.positive("num", 1), s.positive("classes", 20), s.positive("coords", 4)
        if s.options.get("tree"):
            raise s.error("the softmax tree of YOLO9000 (tree=) is not supported")
        anchors = s.floats("anchors")
        if len(anchors) != 2 * num:
            raise s.error(f"{len(anchors)} anchor values for num={num} (need {2 * num})")
        if x.type.shape[1] != num * (coords + 1 + classes):
            raise s.error(f"input has {x.type.shape[1]} channels, num*(coords+1+classes) = "
                          f"{num * (coords + 1 + classes)}")
        params = {"anchors": anchors, "classes": classes, "num": num, "coords": coords,
                  "softmax": s.get("softmax", 0), "background": s.get("background", 0)}
        name = f"region{s.layer}"
        node = self.graph.add_node(PLUGIN_OP, [x], attrs={"plugin": RegionPlugin(**params)}, name=name,
                                   domain=RegionPlugin.domain, output_names=[name])
        fill_attributes(node)
        infer_node(node)
        info = {**params, "thresh": s.get("thresh", 0.5, float), "layer": s.layer, "input": x.name,
                "node": name, "options": dict(s.options)}
        return info, node.outputs[0]


def parse_darknet(cfg_path, weights_path=None, batch=None, *, width=None, height=None) -> Graph:
    """Parse a darknet cfg (and its .weights; None gives zero weights) into a type-checked IR graph.

    The input is ``data`` float32 [batch or "N", channels, height, width] from the [net] section
    (``width``/``height`` override it). The last layer's output is the graph's; a ``[region]`` layer
    (a node of the region plugin) must be last, and ``graph.region`` holds its parameters (else None).
    """
    cfg = Path(os.fspath(cfg_path))
    sections = read_cfg(cfg)
    net = _Section(cfg, 0, sections[0][0], sections[0][1], None)
    dims = [net.positive("channels"), height or net.positive("height"), width or net.positive("width")]
    if batch is not None and (not isinstance(batch, int) or batch <= 0):
        raise AttributeValueError(f"{cfg}: batch must be a positive int, got {batch!r}")
    b = _Builder(cfg, _Weights(weights_path))
    x = b.graph.add_input("data", TensorType("float32", (batch or "N", *dims)))
    region, last_weights = None, -1
    for layer, (kind, options) in enumerate(sections[1:]):
        s = _Section(cfg, layer + 1, kind, options, layer)
        if region is not None:
            raise UnsupportedOpError([(s.where(), f"[{kind}] after [region] (the region layer must be last)")])
        if kind not in LAYERS:
            raise UnsupportedOpError([(s.where(), f"darknet layer [{kind}]")])
        kind = {"conv": "convolutional", "max": "maxpool"}.get(kind, kind)
        if kind == "region":
            region, x = b.region(s, x)
            continue
        x = getattr(b, kind)(s, x)
        if kind == "convolutional":
            last_weights = layer
        b.outputs.append(x)
    if not b.outputs:
        raise AttributeValueError(f"{cfg}: the network has no layers")
    b.weights.finish(last_weights)
    b.graph.outputs.append(x)
    b.graph.region = region
    b.graph.verify()
    return b.graph
