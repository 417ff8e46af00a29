"""ONNX frontend: a path, bytes or ``onnx.ModelProto`` becomes an :class:`nbtrt.ir.Graph`.

This is the only module that imports ``onnx``. Steps: read the proto (external data included), turn
initializers and ``Constant`` nodes into constants, create one IR node per ONNX node (all unsupported
ops are reported together), sort topologically (a cycle is an error), then per node in order: upgrade
an older opset's form to the canonical one (``onnx_upgrade``), fill attribute defaults and infer the
output types, checking them against the types the model declares.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .. import dtypes
from ..errors import (AttributeValueError, GraphError, ModelLoadError, PluginNotFoundError, UnsupportedOpError,
                      node_error)
from ..ir import Graph, Node, TensorType, Value
from ..ops import SCHEMAS, fill_attributes, infer_node
from ..plugins import PLUGIN_OP, create_plugin, find_plugin, normal_domain, not_found
from .onnx_upgrade import upgrade

MIN_OPSET = 6
# The numpy dtype names of the ONNX element types nbtrt handles (see nbtrt/dtypes.py).
SUPPORTED_DTYPES = dtypes.NAMES
# Attributes that hold a TensorProto.DataType enum; the IR stores a numpy dtype name instead.
DTYPE_ATTRS = {("Cast", "to"), ("QuantizeLinear", "output_dtype"), ("DequantizeLinear", "output_dtype"),
               ("QuantizeLinear", "precision")}
# Ops handled here rather than by a schema: they become something else in the IR.
FRONTEND_OPS = {"Constant", "Upsample"}


def load_model(model) -> onnx.ModelProto:
    """Read ``model`` (path, bytes or ModelProto) into a ModelProto with external data loaded."""
    if isinstance(model, (onnx.ModelProto, bytes, bytearray, memoryview)):
        proto = model if isinstance(model, onnx.ModelProto) else _parse_bytes(bytes(model), "<bytes>")
        for t in _external_tensors(proto):
            raise ModelLoadError(f"initializer {t.name!r} keeps its data in an external file; "
                                 "load the model from its path")
        return proto
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read the model file ({e.strerror or e})") from None
        proto = _parse_bytes(data, str(path))
        for t in _external_tensors(proto):
            location = {e.key: e.value for e in t.external_data}.get("location", "")
            if not (path.parent / location).is_file():
                raise ModelLoadError(f"{path}: initializer {t.name!r} needs external data file "
                                     f"{location!r}, which is missing")
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as e:  # onnx raises several kinds for a damaged data file
            raise ModelLoadError(f"{path}: cannot load external data ({e})") from None
        return proto
    raise ModelLoadError(f"expected a path, bytes or onnx.ModelProto, got {type(model).__name__}")


def _parse_bytes(data: bytes, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"{where}: not an ONNX model (protobuf decoding failed: {e})") from None
    if not proto.HasField("graph") or not proto.graph.output:
        raise ModelLoadError(f"{where}: not an ONNX model (no graph with outputs; truncated file?)")
    return proto


def _external_tensors(proto: onnx.ModelProto):
    return [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def parse(model) -> Graph:
    """Parse an ONNX model (path, bytes or ModelProto) into a type-checked IR graph."""
    proto = load_model(model)
    opset = _opset(proto)
    domains = {normal_domain(o.domain): o.version for o in proto.opset_import}
    return _Converter(proto.graph, opset, domains).run()


def _opset(proto: onnx.ModelProto) -> int:
    versions = {o.domain: o.version for o in proto.opset_import}
    version = versions.get("", versions.get("ai.onnx"))
    if version is None:
        version = 1 if not proto.opset_import else None
    if version is None or version < MIN_OPSET:
        raise ModelLoadError(f"model uses ONNX opset {version}; nbtrt reads opset {MIN_OPSET} and newer")
    return version


def dtype_name(elem_type: int, what: str) -> str:
    name = dtypes.ONNX_DTYPES.get(elem_type)
    if name is None:
        raise UnsupportedOpError([(what, f"dtype {onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() else elem_type}")])
    return name


def tensor_type(type_proto: onnx.TypeProto, what: str) -> TensorType:
    if type_proto.WhichOneof("value") != "tensor_type":
        raise UnsupportedOpError([(what, f"non-tensor value ({type_proto.WhichOneof('value')})")])
    t = type_proto.tensor_type
    dtype = dtype_name(t.elem_type, what)
    if not t.HasField("shape"):
        return TensorType(dtype, None)
    dims = []
    for d in t.shape.dim:
        kind = d.WhichOneof("value")
        dims.append(d.dim_value if kind == "dim_value" else d.dim_param if kind == "dim_param" else None)
    if any(isinstance(d, int) and d < 0 for d in dims):
        raise GraphError(f"value {what!r} has a negative dimension {dims}")
    return TensorType(dtype, tuple(dims))


def to_array(t: onnx.TensorProto, what: str) -> np.ndarray:
    """The tensor's value; bfloat16, float8, float4 and int4/int2 come as ml_dtypes arrays (one element
    per byte, unpacked)."""
    name = dtype_name(t.data_type, what)
    try:
        array = np.array(numpy_helper.to_array(t))
    except Exception as e:
        raise GraphError(f"tensor {what!r} is damaged: {e}") from None
    # Older onnx versions decode bfloat16/float8 as float32 and int4 as int8: exact, so astype.
    return array if array.dtype == dtypes.np_dtype(name) else array.astype(dtypes.np_dtype(name))


class _Converter:
    def __init__(self, g: onnx.GraphProto, opset: int, domains: dict | None = None):
        self.proto, self.opset = g, opset
        self.domains = {**(domains or {}), "": opset}  # domain -> opset version, for plugin lookup
        self.graph = Graph(g.name or "graph")
        self.values: dict[str, Value] = {}
        self.declared = {vi.name: vi.type for vi in list(g.value_info) + list(g.output)}

    def run(self) -> Graph:
        g = self.proto
        for t in g.initializer:
            self._define(Value(t.name, const=to_array(t, t.name)), "an initializer")
        for vi in g.input:
            if vi.name not in self.values:
                self._define(Value(vi.name, tensor_type(vi.type, vi.name)), "a graph input")
        self._check_ops()
        for n in g.node:
            self._add_node(n)
        self._link()
        self.graph.toposort()
        for node in list(self.graph.nodes):
            self._finish(node)
        for vi in g.output:
            if vi.name not in self.values:
                raise GraphError(f"graph output {vi.name!r} is not produced by any node, input or initializer")
            self.graph.outputs.append(self.values[vi.name])
        self.graph.verify()
        return self.graph

    def _define(self, v: Value, what: str) -> Value:
        if v.name in self.values:
            raise GraphError(f"value {v.name!r} is defined twice (again by {what})")
        self.values[v.name] = v
        if v.const is not None:
            self.graph.constants[v.name] = v
        elif v.producer() is None:
            self.graph.inputs.append(v)
        self.graph._names.add(v.name)
        return v

    def _check_ops(self) -> None:
        """Every op is known, or a registered plugin (PluginNotFoundError lists all that are neither)."""
        bad = []
        for n in self.proto.node:
            domain = normal_domain(n.domain)
            if self._plugin_key(n) is None or find_plugin(*self._plugin_key(n)) is not None:
                continue
            bad += not_found(n.name or (n.output[0] if n.output else n.op_type), n.op_type, domain,
                             self.domains.get(domain)).unsupported
        if bad:
            raise PluginNotFoundError(bad)

    def _plugin_key(self, n: onnx.NodeProto) -> tuple[str, str, int | None] | None:
        """(op, domain, opset version) of a node no schema knows (a plugin op), else None."""
        domain = normal_domain(n.domain)
        if not domain and n.op_type != PLUGIN_OP and (n.op_type in SCHEMAS or n.op_type in FRONTEND_OPS):
            return None
        return n.op_type, domain, self.domains.get(domain)

    def _add_node(self, n: onnx.NodeProto) -> None:
        name = n.name or (n.output[0] if n.output else n.op_type)
        attrs = {a.name: self._attribute(n, name, a) for a in n.attribute}
        if n.op_type == "Constant":
            self._constant(name, n, attrs)
            return
        inputs = []
        for i, x in enumerate(n.input):
            if not x:
                inputs.append(None)
            elif x in self.values:
                inputs.append(self.values[x])
            else:
                inputs.append(_Pending(x, name, n.op_type))
        outs = [Value(o, self._declared(o)) if o else Value(f"{name}__unused{i}")
                for i, o in enumerate(n.output)]
        op, domain = n.op_type, ""
        if self._plugin_key(n) is not None:
            op, domain = PLUGIN_OP, normal_domain(n.domain)
            attrs = {"plugin": create_plugin(name, *self._plugin_key(n), attrs)}
        node = Node(op, [], outs, attrs, name=name, domain=domain)
        node._inputs = inputs  # resolved in _link once every output exists
        for v in outs:
            v._producer = node
            self._define(v, f"node {name!r}")
        self.graph.nodes.append(node)

    def _link(self) -> None:
        for node in self.graph.nodes:
            pending = node._inputs
            node._inputs = [None] * len(pending)
            for i, x in enumerate(pending):
                if isinstance(x, _Pending):
                    if x.name not in self.values:
                        raise GraphError(f"node {x.node!r} ({x.op}) reads {x.name!r}, which no graph input, "
                                         "initializer or node defines (a missing initializer?)")
                    x = self.values[x.name]
                node.set_input(i, x)

    def _declared(self, name: str) -> TensorType | None:
        t = self.declared.get(name)
        if t is None or t.WhichOneof("value") is None:
            return None
        return tensor_type(t, name)

    def _constant(self, name: str, n: onnx.NodeProto, attrs: dict) -> None:
        if len(attrs) != 1 or len(n.output) != 1:
            raise node_error(AttributeValueError, _Stub(name, "Constant"), "needs exactly one value attribute")
        (key, value), = attrs.items()
        dtype = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                 "value_ints": np.int64}.get(key)
        if key != "value" and dtype is None:
            raise UnsupportedOpError([(name, f"Constant with {key}")])
        self._define(Value(n.output[0], const=np.asarray(value, dtype=dtype)), f"Constant {name!r}")

    def _attribute(self, n: onnx.NodeProto, name: str, a: onnx.AttributeProto):
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnsupportedOpError([(name, f"{n.op_type} with a subgraph attribute {a.name!r}")])
        if a.type == onnx.AttributeProto.SPARSE_TENSOR:
            raise UnsupportedOpError([(name, f"{n.op_type} with a sparse tensor attribute {a.name!r}")])
        if a.type == onnx.AttributeProto.TENSOR:
            return to_array(a.t, f"{name}.{a.name}")
        try:
            value = onnx.helper.get_attribute_value(a)
        except Exception as e:
            raise node_error(AttributeValueError, _Stub(name, n.op_type), f"attribute {a.name!r}: {e}") from None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value)
        if (n.op_type, a.name) in DTYPE_ATTRS:
            value = None if value == 0 else dtype_name(value, f"{name}.{a.name}")
        return value

    def _finish(self, node: Node) -> None:
        """Upgrade to the canonical form, fill defaults and infer types for ``node``."""
        try:
            op, attrs, inputs = upgrade(node.op, self.opset, dict(node.attrs), list(node.inputs))
        except AttributeValueError as e:
            raise node_error(AttributeValueError, node, str(e)) from None
        inputs = [self.graph.add_constant(f"{node.name}_{op}_arg{i}", x) if isinstance(x, np.ndarray) else x
                  for i, x in enumerate(inputs)]
        node.op, node.attrs = op, attrs
        node.set_inputs(inputs)
        if self.opset < 13 and op in ("Softmax", "LogSoftmax"):
            self._legacy_softmax(node)
            return
        fill_attributes(node)
        infer_node(node)

    def _legacy_softmax(self, node: Node) -> None:
        """Before opset 13, (Log)Softmax flattened its input to 2-D at ``axis``: rewrite as
        Flatten -> (Log)Softmax(axis=-1) -> Reshape(Shape(x)) unless ``axis`` is already the last."""
        x = node.inputs[0]
        axis = node.attrs.pop("axis", 1)
        rank = x.type.rank
        if rank is not None and axis in (rank - 1, -1):
            node.attrs["axis"] = -1
            fill_attributes(node)
            infer_node(node)
            return
        g = self.graph
        at = g.nodes.index(node)
        flat = g.add_node("Flatten", [x], attrs={"axis": axis}, name=f"{node.name}_flatten", index=at)
        shape = g.add_node("Shape", [x], name=f"{node.name}_shape", index=at + 1)
        out = node.outputs[0]
        inner = Value(g.unique_name(f"{out.name}_2d"))
        inner._producer = node
        node.outputs[0] = inner
        node.set_input(0, flat.outputs[0])
        node.attrs["axis"] = -1
        reshape = g.insert(Node("Reshape", [inner, shape.outputs[0]], [out], name=f"{node.name}_reshape"),
                           at + 3)
        for n in (flat, shape, node, reshape):
            fill_attributes(n)
            infer_node(n)


class _Pending:
    """An input name seen before its producer; resolved once every node's outputs exist."""

    __slots__ = ("name", "node", "op")

    def __init__(self, name: str, node: str, op: str):
        self.name, self.node, self.op = name, node, op


class _Stub:
    """Enough of a node for node_error() before the IR node exists."""

    def __init__(self, name: str, op: str):
        self.name, self.op = name, op
