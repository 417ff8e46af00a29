"""JSON encoding of an optimized graph and its memory plan, for engine files (see ``serialize.py``).

Everything is encoded *by value*, with no pickle, so that decoding a damaged or hostile file can build
nothing but IR objects:

- a value is ``{"name", "dtype", "shape"}`` (dims are ints, symbolic names or null);
- constants are rows ``{"name", "dtype", "shape", "offset", "nbytes"}`` into one weights blob (raw
  little-endian bytes, each array 64-byte aligned), in their final precision and logical row-major
  order (the memory plan's strides say how the device holds them: ``context.device_constant``);
- a node is ``{"op", "name", "domain", "inputs": [value name | null], "outputs": [value], "attrs"}``;
  a plugin node also has ``"plugin": {"op", "domain", "version", "data"}``: the key of its registered
  plugin and its ``serialize()`` bytes in base64 (loading deserializes them with that plugin);
- the memory plan is ``{"arena_bytes", "total_bytes", "offsets": {root: byte offset},
  "layouts": [[value, root, element offset, [element strides]], ...]}``.

Attribute values use JSON's own null/bool/int/str/list and finite floats; everything else is a tagged
object with one of the tags below. Decoding accepts exactly these tags and the dtypes of
:mod:`nbtrt.dtypes`; anything else raises :class:`FormatError`.

``{"t": "float", "v": "nan" | "inf" | "-inf"}``  a non-finite float
``{"t": "tuple", "v": [...]}``                    a tuple
``{"t": "dict", "v": [[key, value], ...]}``       a dict (keys encoded like values)
``{"t": "step", "op", "args", "attrs"}``          a :class:`nbtrt.groups.Step`
``{"t": "array", "dtype", "shape", "data"}``      a numpy array, data in base64
``{"t": "scalar", "dtype", "data"}``              a numpy scalar, data in base64
"""

from __future__ import annotations

import base64
import math

import numpy as np

from ..dtypes import NAMES, np_dtype
from ..errors import GraphError
from ..groups import Step
from ..ir import Graph, Node, TensorType, Value
from ..plugins import PLUGIN_OP, decode_state, encode_state
from .memory import Layout, MemoryPlan, nbytes

ALIGN = 64


class FormatError(ValueError):
    """The encoded graph is malformed (the loader turns it into an EngineFileError naming the file)."""


# -- attributes -------------------------------------------------------------------------------------
def encode_attr(x):
    """The JSON form of an attribute value; TypeError for a type engine files cannot hold."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.ndarray):
        return {"t": "array", "dtype": x.dtype.name, "shape": list(x.shape), "data": _b64(x)}
    if isinstance(x, np.generic):
        return {"t": "scalar", "dtype": x.dtype.name, "data": _b64(np.asarray(x))}
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"t": "float", "v": repr(x)}
    if isinstance(x, tuple):
        return {"t": "tuple", "v": [encode_attr(y) for y in x]}
    if isinstance(x, list):
        return [encode_attr(y) for y in x]
    if isinstance(x, dict):
        return {"t": "dict", "v": [[encode_attr(k), encode_attr(v)] for k, v in x.items()]}
    if isinstance(x, Step):
        return {"t": "step", "op": x.op, "args": list(x.args), "attrs": encode_attr(x.attrs)}
    raise TypeError(f"an engine file cannot hold a {type(x).__name__} attribute value")


def decode_attr(x):
    """Inverse of :func:`encode_attr`; FormatError on anything it would not have written."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        return [decode_attr(y) for y in x]
    if not isinstance(x, dict):
        raise FormatError(f"unexpected attribute value of type {type(x).__name__}")
    tag = x.get("t")
    if tag == "tuple":
        return tuple(decode_attr(y) for y in as_list(x["v"]))
    if tag == "dict":
        return {_hashable(decode_attr(k)): decode_attr(v) for k, v in as_list(x["v"])}
    if tag == "float":
        if x["v"] not in ("nan", "inf", "-inf"):
            raise FormatError(f"bad non-finite float {x['v']!r}")
        return float(x["v"])
    if tag == "step":
        args, attrs = as_list(x["args"]), decode_attr(x["attrs"])
        if not isinstance(x["op"], str) or not all(isinstance(a, str) for a in args) or not isinstance(attrs, tuple):
            raise FormatError("malformed epilogue step")
        return Step(x["op"], tuple(args), attrs)
    if tag == "array":
        return _array(x["dtype"], x["shape"], base64.b64decode(x["data"], validate=True))
    if tag == "scalar":
        return _array(x["dtype"], [], base64.b64decode(x["data"], validate=True))[()]
    raise FormatError(f"unknown attribute tag {tag!r}")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(_raw(a)).decode("ascii")


def _raw(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes()


def as_list(x) -> list:
    """``x`` if it is a JSON list, else FormatError."""
    if not isinstance(x, list):
        raise FormatError(f"expected a list, got {type(x).__name__}")
    return x


def _hashable(k):
    if isinstance(k, (list, dict)):
        raise FormatError("a dict key must be hashable")
    return k


def _dtype(name) -> np.dtype:
    if name not in NAMES:
        raise FormatError(f"unknown dtype {name!r}")
    return np_dtype(name)


def _array(dtype_name, shape, data) -> np.ndarray:
    dtype, shape = _dtype(dtype_name), _shape(shape)
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) != count * dtype.itemsize:
        raise FormatError(f"array of {dtype_name}{list(shape)} has {len(data)} bytes")
    return np.frombuffer(data, dtype, count).reshape(shape).copy()


def _shape(shape) -> tuple[int, ...]:
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in as_list(shape)):
        raise FormatError(f"bad shape {shape!r}")
    return tuple(shape)


# -- values and the graph ---------------------------------------------------------------------------
def encode_value(v: Value) -> dict:
    shape = None if v.type.shape is None else list(v.type.shape)
    return {"name": v.name, "dtype": v.type.dtype, "shape": shape}


def decode_type(doc: dict) -> TensorType:
    _dtype(doc["dtype"])
    shape = doc["shape"]
    if shape is not None:
        if not all(d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                   for d in as_list(shape)):
            raise FormatError(f"bad shape {shape!r} of {doc['name']!r}")
        shape = tuple(shape)
    return TensorType(doc["dtype"], shape)


def encode_graph(graph: Graph, blob: bytearray) -> dict:
    """The JSON form of ``graph``; constants' bytes are appended to ``blob``."""
    constants = []
    for v in graph.constants.values():
        raw = _raw(v.const)
        offset = -(-len(blob) // ALIGN) * ALIGN
        blob.extend(bytes(offset - len(blob)))
        blob.extend(raw)
        constants.append({**encode_value(v), "offset": offset, "nbytes": len(raw)})
    nodes = []
    for n in graph.nodes:
        attrs = {k: a for k, a in n.attrs.items() if not (n.op == PLUGIN_OP and k == "plugin")}
        try:
            attrs = encode_attr(attrs)
        except TypeError as e:
            raise TypeError(f"node {n.name!r} ({n.op}): {e}") from None
        nodes.append({"op": n.op, "name": n.name, "domain": n.domain, "attrs": attrs,
                      "inputs": [None if v is None else v.name for v in n.inputs],
                      "outputs": [encode_value(v) for v in n.outputs]})
        if n.op == PLUGIN_OP:
            nodes[-1]["plugin"] = encode_state(n)
    return {"name": graph.name, "inputs": [encode_value(v) for v in graph.inputs], "constants": constants,
            "nodes": nodes, "outputs": [v.name for v in graph.outputs]}


def decode_graph(doc: dict, blob) -> Graph:
    """Rebuild the graph of :func:`encode_graph`; constants are views of ``blob`` (a bytearray)."""
    graph = Graph(str(doc["name"]))
    by_name: dict[str, Value] = {}

    def define(name) -> str:
        if not isinstance(name, str) or name in by_name:
            raise FormatError(f"value name {name!r} is defined twice or is no string")
        return name

    for d in as_list(doc["inputs"]):
        define(d["name"])
        by_name[d["name"]] = graph.add_input(d["name"], decode_type(d))
    for d in as_list(doc["constants"]):
        t, offset, size = decode_type(d), d["offset"], d["nbytes"]
        dtype, shape = np_dtype(t.dtype), _shape(list(t.shape or ()))
        if not (isinstance(offset, int) and isinstance(size, int) and 0 <= offset and offset + size <= len(blob)
                and size == int(np.prod(shape, dtype=np.int64)) * dtype.itemsize):
            raise FormatError(f"constant {d['name']!r} lies outside the weights ({offset}+{size})")
        define(d["name"])
        array = np.frombuffer(blob, dtype, size // dtype.itemsize, offset).reshape(shape)
        by_name[d["name"]] = graph.add_constant(d["name"], array)
    for d in as_list(doc["nodes"]):
        try:
            inputs = [None if n is None else by_name[n] for n in as_list(d["inputs"])]
        except (KeyError, TypeError):
            raise FormatError(f"node {d.get('name')!r} reads an undefined value") from None
        outputs = [Value(define(o["name"]), decode_type(o)) for o in as_list(d["outputs"])]
        attrs = decode_attr(d["attrs"])
        if not isinstance(attrs, dict) or not all(isinstance(x, str) for x in (d["op"], d["name"], d["domain"])):
            raise FormatError(f"malformed node {d.get('name')!r}")
        if d["op"] == PLUGIN_OP:  # the registered plugin's deserialize makes it again
            attrs["plugin"] = decode_state(d["plugin"], d["name"])
        graph.insert(Node(d["op"], inputs, outputs, attrs, name=d["name"], domain=d["domain"]))
        by_name.update((v.name, v) for v in outputs)
    try:
        graph.outputs = [by_name[n] for n in as_list(doc["outputs"])]
        graph.verify()
    except (KeyError, TypeError, GraphError) as e:
        raise FormatError(f"inconsistent graph ({type(e).__name__}: {e})") from None
    return graph


# -- the memory plan --------------------------------------------------------------------------------
def encode_memory(memory: MemoryPlan, graph: Graph) -> dict:
    layouts = []
    for v in graph.values():
        lay = memory.layouts.get(id(v))
        if lay is not None:
            layouts.append([v.name, lay.root.name, lay.offset, list(lay.strides)])
    offsets = {r.name: memory.offsets[id(r)] for r in memory.roots if id(r) in memory.offsets}
    return {"arena_bytes": memory.arena_bytes, "total_bytes": memory.total_bytes,
            "roots": [r.name for r in memory.roots], "offsets": offsets, "layouts": layouts}


def decode_memory(doc: dict, graph: Graph) -> MemoryPlan:
    """Rebuild the plan by value name and check that every tensor lies inside its buffer."""
    by_name = {v.name: v for v in graph.values()}
    try:
        layouts = {id(by_name[v]): Layout(by_name[r], _int(off), tuple(_int(s) for s in as_list(strides)))
                   for v, r, off, strides in as_list(doc["layouts"])}
        offsets = {id(by_name[r]): _int(off) for r, off in doc["offsets"].items()}
        roots = [by_name[r] for r in as_list(doc["roots"])]
    except (KeyError, ValueError, TypeError) as e:
        raise FormatError(f"memory plan names an unknown value ({e})") from None
    plan = MemoryPlan(layouts, offsets, roots, _int(doc["arena_bytes"]), _int(doc["total_bytes"]))
    for v in graph.values():
        check_layout(plan, v)
    return plan


def check_layout(plan: MemoryPlan, v: Value) -> None:
    """FormatError unless ``v`` has a layout inside its root, and a non-constant root lies in the arena."""
    lay = plan.layouts.get(id(v))
    if lay is None:
        raise FormatError(f"the memory plan has no layout for {v.name!r}")
    if not v.type.is_static or len(lay.strides) != len(v.type.shape):
        raise FormatError(f"layout of {v.name!r} does not match its type {v.type}")
    root_size = int(np.prod(lay.root.type.shape, dtype=np.int64))
    last = lay.offset + sum((d - 1) * s for d, s in zip(v.type.shape, lay.strides))
    if lay.offset < 0 or min(lay.strides, default=0) < 0 or (math.prod(v.type.shape) and last >= root_size):
        raise FormatError(f"{v.name!r} reaches past the end of its buffer {lay.root.name!r}")
    if not lay.root.is_constant:
        start = plan.offsets.get(id(lay.root))
        if start is None or start < 0 or start + nbytes(lay.root) > plan.arena_bytes:
            raise FormatError(f"buffer {lay.root.name!r} lies outside the arena")


def _int(x) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise FormatError(f"expected an integer, got {x!r}")
    return x
