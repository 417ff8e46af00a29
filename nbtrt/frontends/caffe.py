"""Caffe frontend: a ``.prototxt`` network and its ``.caffemodel`` weights become an :class:`nbtrt.ir.Graph`.

Message classes come from ``caffe.proto`` parsed at run time (``caffe_proto.py``; no protoc, no generated
code); the graph uses the ONNX frontend's canonical ops. Caffe's semantics (``src/caffe/layers``):

- Input layers and the legacy ``input:`` + ``input_shape``/``input_dim`` fields are graph inputs.
- ``Convolution`` → ``Conv``; ``ReLU`` → ``Relu`` (``LeakyRelu`` α = ``negative_slope`` when not 0).
- ``Pooling``: the output size is ``ceil((H + 2p − k)/s) + 1``, less one when the last window would start
  in the end padding (``(out − 1)·s ≥ H + p``): a floor-mode pool with pads p before and
  ``e = (out − 1)·s + k − H − p`` after (e < 0: the unread end is cropped by a ``Slice``). AVE divides by
  the window clipped to ``[−p, H + p)``: ``count_include_pad=0`` when p = 0, 1 when e ≤ p, else a zero
  ``Pad`` by p first. ``global_pooling`` → ``GlobalMaxPool`` / ``GlobalAveragePool``.
- ``LRN`` (ACROSS_CHANNELS) → ``LRN`` with bias = k (both divide alpha by the size).
- ``Concat`` (``axis`` or legacy ``concat_dim``); ``Dropout`` is the identity (an alias, no node).
- ``InnerProduct`` → ``Flatten(axis)`` + ``Gemm`` transB=1; ``Softmax`` → ``Softmax(axis)``.
- ``BatchNorm``: blobs mean, variance, scale factor s (0 counts as 1) → ``BatchNormalization`` with
  γ = 1, β = 0, mean/s, var/s; ``Scale`` → ``Mul`` (+ ``Add``) by per-channel constants (folded later).
- ``Eltwise``: SUM (``coeff``: ``Mul`` by scalars first) → ``Add``; PROD → ``Mul``; MAX → ``Max``.

In-place layers (top == bottom) give a new SSA value; a bottom reads the newest value of its blob. Blobs
no layer reads are the graph outputs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ..errors import AttributeValueError, GraphError, ModelLoadError, UnsupportedOpError
from ..ir import Graph, TensorType, Value
from ..ops import fill_attributes, infer_node
from .caffe_proto import load_messages

LAYERS = ("Input", "Convolution", "ReLU", "Pooling", "LRN", "Concat", "InnerProduct", "Dropout",
          "Softmax", "BatchNorm", "Scale", "Eltwise")
_CACHE: dict = {}


def proto_path(path=None) -> Path:
    """caffe.proto: ``path``, else ``$NBTRT_CAFFE_PROTO``, else ``caffe/caffe.proto`` in ``$NBTRT_SHARED`` or
    the ``shared/`` folder beside the checkout."""
    shared = os.environ.get("NBTRT_SHARED") or Path(__file__).resolve().parents[3] / "shared"
    path = Path(path or os.environ.get("NBTRT_CAFFE_PROTO") or Path(shared) / "caffe" / "caffe.proto")
    if not path.is_file():
        raise ModelLoadError(f"{path}: caffe.proto not found (pass proto_path= or set NBTRT_CAFFE_PROTO)")
    return path


def messages(path=None) -> dict:
    """Caffe's message classes (``"NetParameter"``, ``"BlobProto"``, ...), parsed once per proto file."""
    key = str(proto_path(path).resolve())
    if key not in _CACHE:
        _CACHE[key] = load_messages(key)
    return _CACHE[key]


def read_net(prototxt_path, proto=None):
    path = Path(os.fspath(prototxt_path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read the prototxt ({e.strerror or e})") from None
    try:
        return text_format.Parse(text, messages(proto)["NetParameter"]())
    except text_format.ParseError as e:
        raise ModelLoadError(f"{path}: not a Caffe NetParameter: {e}") from None


def read_weights(caffemodel_path, proto=None) -> dict:
    """{layer name: [BlobProto, ...]} of a binary .caffemodel (new ``layer`` or legacy V1 ``layers``)."""
    path = Path(os.fspath(caffemodel_path))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read the caffemodel ({e.strerror or e})") from None
    net = messages(proto)["NetParameter"]()
    try:
        net.ParseFromString(data)
    except DecodeError as e:
        raise ModelLoadError(f"{path}: not a binary Caffe NetParameter ({e})") from None
    return {layer.name: list(layer.blobs) for layer in list(net.layer) + list(net.layers) if layer.blobs}


def blob_array(blob) -> tuple[tuple[int, ...], np.ndarray]:
    dims = blob.shape.dim if blob.HasField("shape") else (blob.num, blob.channels, blob.height, blob.width)
    return tuple(int(d) for d in dims), np.asarray(blob.data if len(blob.data) else blob.double_data, np.float32)


def _pair(p, hw: str, default: int) -> tuple[int, int]:
    """Caffe's kernel/stride/pad/dilation: ``hw_h``/``hw_w``, else ``hw``(``_size``), one value or one per axis."""
    if f"{hw}_h" in p.DESCRIPTOR.fields_by_name and (p.HasField(f"{hw}_h") or p.HasField(f"{hw}_w")):
        return int(getattr(p, f"{hw}_h")), int(getattr(p, f"{hw}_w"))
    field = "kernel_size" if hw == "kernel" else hw
    value = getattr(p, field)
    values = ([value] if p.HasField(field) else []) if isinstance(value, int) else list(value)
    return (int(values[0]), int(values[-1])) if values else (default, default)


class _Builder:
    def __init__(self, net, weights, source: Path):
        self.weights, self.source = weights, source
        self.graph = Graph(net.name or source.stem)
        self.blobs: dict[str, Value] = {}
        self.read: set[str] = set()
        self.layer = None

    def error(self, message: str) -> AttributeValueError:
        return AttributeValueError(f"{self.source}: layer {self.layer.name!r} ({self.layer.type}): {message}")

    def node(self, op: str, inputs, name: str, **attrs) -> Value:
        node = self.graph.add_node(op, inputs, attrs=attrs, name=name, output_names=[name])
        fill_attributes(node)
        infer_node(node)
        return node.outputs[0]

    def const(self, suffix: str, array) -> Value:
        return self.graph.add_constant(f"{self.layer.name}_{suffix}", np.asarray(array, np.float32))

    def params(self, shapes: list[tuple[int, ...]], fills: list[float]) -> list[np.ndarray]:
        """The layer's blobs reshaped to ``shapes`` (fills without a caffemodel); counts must match."""
        if self.weights is None:
            return [np.full(s, f, np.float32) for s, f in zip(shapes, fills)]
        where = f"{self.source}: layer {self.layer.name!r} ({self.layer.type})"
        blobs = self.weights.get(self.layer.name)
        if blobs is None:
            raise ModelLoadError(f"{where} has no weights in the caffemodel")
        if len(blobs) < len(shapes):
            raise ModelLoadError(f"{where} has {len(blobs)} blob(s) in the caffemodel, needs {len(shapes)}")
        out = [blob_array(b) for b in blobs[:len(shapes)]]
        for i, ((blob_shape, data), shape) in enumerate(zip(out, shapes)):
            if data.size != math.prod(shape):
                raise ModelLoadError(f"{where}: blob {i} has shape {list(blob_shape)} ({data.size} values), "
                                     f"needs {list(shape)}")
        return [data.reshape(shape) for (_, data), shape in zip(out, shapes)]

    def Input(self, layer, xs):
        shapes = list(layer.input_param.shape)
        if len(shapes) not in (1, len(layer.top)):
            raise self.error(f"{len(shapes)} input shapes for {len(layer.top)} tops")
        return [self.shape_input(top, shapes[min(i, len(shapes) - 1)].dim) for i, top in enumerate(layer.top)]

    def shape_input(self, name, dims):
        dims = [int(d) for d in dims]
        if self.overrides.get(name) is not None:
            dims = list(self.overrides[name])
        if self.batch is not None and dims:
            dims[0] = self.batch
        if not dims or min(dims) <= 0:
            raise AttributeValueError(f"{self.source}: input {name!r} has a bad shape {dims}")
        return self.graph.add_input(name, TensorType("float32", tuple(dims)))

    def Convolution(self, layer, xs):
        p, x = layer.convolution_param, xs[0]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(p, f, d) for f, d in
                                                  (("kernel", 0), ("stride", 1), ("pad", 0), ("dilation", 1)))
        n, g, c = int(p.num_output), int(p.group), x.type.shape[1]
        if min(kh, kw, sh, sw, dh, dw, n, g) <= 0 or c % g or n % g or x.type.rank != 4:
            raise self.error(f"bad geometry: kernel {kh}x{kw}, stride {sh}x{sw}, {n} outputs, group {g}, "
                             f"input {list(x.type.shape)}")
        blobs = self.params([(n, c // g, kh, kw)] + ([(n,)] if p.bias_term else []), [0.0, 0.0])
        inputs = [x] + [self.const(s, b) for s, b in zip(("W", "B"), blobs)]
        return [self.node("Conv", inputs, layer.name, kernel_shape=(kh, kw), strides=(sh, sw),
                          pads=(ph, pw, ph, pw), dilations=(dh, dw), group=g)]

    def ReLU(self, layer, xs):
        slope = float(layer.relu_param.negative_slope)
        return [self.node("LeakyRelu", xs, layer.name, alpha=slope) if slope else self.node("Relu", xs, layer.name)]

    def Pooling(self, layer, xs):
        p, x = layer.pooling_param, xs[0]
        if p.pool not in (0, 1):
            raise UnsupportedOpError([(layer.name, "Pooling with pool: STOCHASTIC")])
        ave = p.pool == 1
        if x.type.rank != 4:
            raise self.error(f"input must be 4-D, got {list(x.type.shape)}")
        if p.global_pooling:
            return [self.node("GlobalAveragePool" if ave else "GlobalMaxPool", [x], layer.name)]
        if getattr(p, "round_mode", 0) != 0:
            raise self.error("round_mode FLOOR is not supported")
        k, s, pad = _pair(p, "kernel", 0), _pair(p, "stride", 1), _pair(p, "pad", 0)
        size = x.type.shape[2:]
        if min(k + s) <= 0 or min(pad) < 0 or any(pd >= kk for pd, kk in zip(pad, k)):
            raise self.error(f"bad geometry: kernel {k}, stride {s}, pad {pad}")
        end = []
        for h, kk, ss, pp in zip(size, k, s, pad):
            o = -(-(h + 2 * pp - kk) // ss) + 1
            if pp and (o - 1) * ss >= h + pp:
                o -= 1
            if o <= 0 or (o - 1) * ss - pp >= h:
                raise self.error(f"kernel {k}, stride {s}, pad {pad} on {list(size)}: Caffe's last window lies "
                                 f"outside the input (its output there is -FLT_MAX or NaN)")
            end.append((o - 1) * ss + kk - h - pp)
        attrs = {"kernel_shape": k, "strides": s}
        if min(end) < 0:            # the last window ends before the input does: crop what no window reads
            ends = np.array([h + min(e, 0) for h, e in zip(size, end)], np.int64)
            x = self.node("Slice", [x, self.graph.add_constant(f"{layer.name}_starts", np.zeros(2, np.int64)),
                                    self.graph.add_constant(f"{layer.name}_ends", ends),
                                    self.graph.add_constant(f"{layer.name}_axes", np.array([2, 3], np.int64))],
                          f"{layer.name}_crop")
            end = [max(e, 0) for e in end]
        if not ave:
            return [self.node("MaxPool", [x], layer.name, pads=(*pad, *end), **attrs)]
        if max(pad) == 0:
            return [self.node("AveragePool", [x], layer.name, pads=(0, 0, *end), count_include_pad=0, **attrs)]
        if all(e <= pp for e, pp in zip(end, pad)):
            return [self.node("AveragePool", [x], layer.name, pads=(*pad, *end), count_include_pad=1, **attrs)]
        before = [min(pp, e) for pp, e in zip(pad, end)]
        pads = self.graph.add_constant(f"{layer.name}_pads", np.array([0, 0, *pad, 0, 0, *before], np.int64))
        y = self.node("Pad", [x, pads], f"{layer.name}_pad")
        rest = tuple(e - b for e, b in zip(end, before))
        return [self.node("AveragePool", [y], layer.name, pads=(0, 0, *rest), count_include_pad=0, **attrs)]

    def LRN(self, layer, xs):
        p = layer.lrn_param
        if p.norm_region != 0:
            raise UnsupportedOpError([(layer.name, "LRN with norm_region: WITHIN_CHANNEL")])
        return [self.node("LRN", xs, layer.name, size=int(p.local_size), alpha=float(p.alpha),
                          beta=float(p.beta), bias=float(p.k))]

    def Dropout(self, layer, xs):
        return xs

    def Concat(self, layer, xs):
        p = layer.concat_param
        axis = p.concat_dim if p.HasField("concat_dim") and not p.HasField("axis") else p.axis
        return [self.node("Concat", xs, layer.name, axis=int(axis))]

    def InnerProduct(self, layer, xs):
        p, x = layer.inner_product_param, xs[0]
        axis = int(p.axis) % x.type.rank
        if p.transpose:
            raise self.error("transpose: true is not supported")
        k, n = math.prod(x.type.shape[axis:]), int(p.num_output)
        blobs = self.params([(n, k)] + ([(n,)] if p.bias_term else []), [0.0, 0.0])
        if axis != 1 or x.type.rank != 2:
            x = self.node("Flatten", [x], f"{layer.name}_flatten", axis=axis)
        inputs = [x] + [self.const(s, b) for s, b in zip(("W", "B"), blobs)]
        return [self.node("Gemm", inputs, layer.name, transB=1)]

    def Softmax(self, layer, xs):
        return [self.node("Softmax", xs, layer.name, axis=int(layer.softmax_param.axis))]

    def BatchNorm(self, layer, xs):
        p, x = layer.batch_norm_param, xs[0]
        if p.HasField("use_global_stats") and not p.use_global_stats:
            raise self.error("use_global_stats: false (batch statistics) is not supported at inference")
        c = x.type.shape[1]
        mean, var, factor = self.params([(c,), (c,), (1,)], [0.0, 1.0, 1.0])
        f = float(factor[0]) or 1.0
        inputs = [x, self.const("scale", np.ones(c)), self.const("B", np.zeros(c)),
                  self.const("mean", mean / f), self.const("var", var / f)]
        return [self.node("BatchNormalization", inputs, layer.name, epsilon=float(p.eps))]

    def Scale(self, layer, xs):
        p, x = layer.scale_param, xs[0]
        if len(xs) != 1:
            raise UnsupportedOpError([(layer.name, "Scale with a second bottom")])
        axis = int(p.axis) % x.type.rank
        num = x.type.rank - axis if p.num_axes == -1 else int(p.num_axes)
        shape = tuple(x.type.shape[axis:axis + num])
        blobs = self.params([shape] + ([shape] if p.bias_term else []), [1.0, 0.0])
        view = shape + (1,) * (x.type.rank - axis - num)
        y = self.node("Mul", [x, self.const("gamma", blobs[0].reshape(view))],
                      f"{layer.name}_mul" if p.bias_term else layer.name)
        if p.bias_term:
            y = self.node("Add", [y, self.const("beta", blobs[1].reshape(view))], layer.name)
        return [y]

    def Eltwise(self, layer, xs):
        p = layer.eltwise_param
        if len(xs) < 2:
            raise self.error("needs at least two bottoms")
        if p.operation == 1 and len(p.coeff):
            if len(p.coeff) != len(xs):
                raise self.error(f"{len(p.coeff)} coeffs for {len(xs)} bottoms")
            xs = [x if c == 1 else self.node("Mul", [x, self.const(f"coeff{i}", np.float32(c))],
                                             f"{layer.name}_coeff{i}") for i, (x, c) in enumerate(zip(xs, p.coeff))]
        op = {0: "Mul", 1: "Add", 2: "Max"}[p.operation]
        if op == "Max":
            return [self.node("Max", xs, layer.name)]
        y = xs[0]
        for i, x in enumerate(xs[1:], 1):
            y = self.node(op, [y, x], layer.name if i == len(xs) - 1 else f"{layer.name}_{i}")
        return [y]


def parse_caffe(prototxt_path, caffemodel_path=None, batch=None, *, input_shape=None, proto_path=None) -> Graph:
    """Parse a Caffe deploy prototxt (and its .caffemodel; None gives zero weights) into an IR graph.

    ``batch`` replaces every input's first dim; ``input_shape`` (a shape, or {input name: shape})
    replaces the prototxt's input shapes. ``proto_path`` (or ``$NBTRT_CAFFE_PROTO``) names caffe.proto.
    """
    source = Path(os.fspath(prototxt_path))
    net = read_net(source, proto_path)
    weights = None if caffemodel_path is None else read_weights(caffemodel_path, proto_path)
    if batch is not None and (not isinstance(batch, int) or batch <= 0):
        raise AttributeValueError(f"{source}: batch must be a positive int, got {batch!r}")
    if net.layers and not net.layer:
        raise ModelLoadError(f"{source}: legacy V1 'layers' prototxts are not supported (upgrade it first)")
    b = _Builder(net, weights, source)
    b.batch, b.overrides = batch, {}
    if isinstance(input_shape, dict):
        b.overrides = dict(input_shape)
    elif input_shape is not None:
        names = [t for layer in net.layer if layer.type == "Input" for t in layer.top] + list(net.input)
        b.overrides = {n: input_shape for n in names}
    for i, name in enumerate(net.input):
        legacy = net.input_shape[min(i, len(net.input_shape) - 1)].dim if net.input_shape else None
        b.blobs[name] = b.shape_input(name, net.input_dim[4 * i:4 * i + 4] if legacy is None else legacy)
    layers = [layer for layer in net.layer if _in_test_phase(layer)]
    unknown = [(layer.name, f"Caffe layer type {layer.type!r}") for layer in layers if layer.type not in LAYERS]
    if unknown:
        raise UnsupportedOpError(unknown)
    for layer in layers:
        b.layer = layer
        xs = []
        for bottom in layer.bottom:
            if bottom not in b.blobs:
                raise GraphError(f"{source}: layer {layer.name!r} ({layer.type}): bottom {bottom!r} is not "
                                 f"produced by an earlier layer")
            xs.append(b.blobs[bottom])
            b.read.add(bottom)
        ys = getattr(b, layer.type)(layer, xs)
        if len(ys) != len(layer.top):
            raise b.error(f"has {len(layer.top)} tops, the layer makes {len(ys)}")
        for top, y in zip(layer.top, ys):
            b.read.discard(top)       # a rewritten (in-place) blob is unread again until a later bottom
            b.blobs[top] = y
    for v in [v for name, v in b.blobs.items() if name not in b.read]:
        if v not in b.graph.inputs and v not in b.graph.outputs:
            b.graph.outputs.append(v)
    if not b.graph.outputs:
        raise AttributeValueError(f"{source}: the network has no output blob")
    b.graph.verify()
    return b.graph


def _in_test_phase(layer) -> bool:
    """Caffe's StateMeetsRule for a deploy net (phase TEST): include rules must match, exclude must not."""
    test = 1
    if any(r.HasField("phase") and r.phase != test for r in layer.include):
        return False
    return not any(r.HasField("phase") and r.phase == test for r in layer.exclude)
