"""Precision: what each kernel computes in (fp16, tf32 or fp32) and the dtype of every tensor between
kernels. It runs last, on the fused groups.

A kernel's requested precision is ``config.precision``, or ``config.layer_precision`` of the ONNX nodes
fused into it (the most precise wins: fp32 > tf32 > fp16). It gets it when its family can:

  fp16  float16 storage, float32 math: the kernel reads float16 (and float32) tensors, widens every
        element it loads, computes and accumulates in float32 — softmax, norms, reductions and average
        pools included — and rounds what it stores: ``y = fp16(f(fp32(x), fp32(W)))``. Conv,
        ConvTranspose and Gemm/MatMul operands that are constants (the weights) become float16 constants
        at build time, ``W' = fp16(W)``; a weight beyond ±65504 keeps its kernel fp32. Epilogue
        constants (bias, folded BN scale) stay float32: the epilogue computes in float32.
  tf32  conv and gemm groups may use TF32 tensor cores (products of 10-bit mantissas, float32
        accumulation); every tensor stays float32; other kernels are fp32.
  fp32  strict float32.
  int8  conv and gemm groups with a calibrated input scale compute in int8 (quantized activation,
        int8 weights per output channel, int32 accumulation; ``passes/int8.py``); every other kernel,
        and every tensor, is as in fp16, except activations that only int8 kernels read (as their
        quantized input; through max pools and concats): those are stored as int8
        (``int8_storage.py``); an int8 conv whose input is not, and that fp16 tensor cores can run,
        stays fp16.

The node attribute ``math`` holds the result on every kernel of a family that takes float16
(``codegen.FLOAT16``) when anything is not fp32; the tensor-core tactics read it, and the reference
(``reference.run_node``) evaluates such a node the way its kernel does: float16 inputs widened to
float32, float outputs rounded to their dtypes. The build report lists each kernel's precision, with
the reason when it is not the requested one.

Tensor dtypes (only float32 tensors change). Tensors sharing memory — a view and its input, an
in-place Concat and its inputs — are one buffer of one dtype. A buffer becomes float16 when every
kernel writing it is fp16 and it holds no network input, output or constant: the network's inputs and
outputs keep the dtypes the model declares (as TensorRT does), so the first kernels read the float32
inputs and the last ones write the float32 outputs — the Casts at the edges are fused into those
kernels' loads and stores, and an fp32 kernel (an override) reads float16 and writes float32 the same
way. A kernel whose family takes no float16 (a plugin) reads a float16 buffer through a Cast kernel
inserted in front of it; its outputs stay float32.
"""

from __future__ import annotations

import numpy as np

from ..codegen import supports_float16
from ..config import BUILD_PRECISIONS, PRECISIONS
from ..errors import NbtrtError
from ..groups import Step, group_attrs, group_op, is_view, kernel_kind, sources
from ..ir import Graph, Node, TensorType, Value
from . import int8, int8_storage
from .rules import is_output
from .weights import drop_constants

NAME = "precision"
TF32_KINDS = ("conv", "gemm")
WEIGHT_KINDS = ("conv", "conv_transpose", "gemm")
FP16_MAX = 65504.0
FLOAT = ("float16", "float32")
HALF = ("fp16", "int8")  # kernels whose tensors are float16 between kernels


def check_names(graph: Graph, config) -> None:
    """NbtrtError when ``config.layer_precision`` names a node the model does not have."""
    names = {n.name for n in graph.nodes}
    unknown = sorted(set(getattr(config, "layer_precision", {}) or {}) - names)
    if unknown:
        raise NbtrtError(f"layer_precision names nodes the model does not have: {', '.join(map(repr, unknown))}")


def run(graph: Graph, config, report) -> None:
    kernels = [n for n in graph.nodes if kernel_kind(n) is not None]
    labels = {id(n): choose(n, config) for n in kernels}
    _unmatched(graph, config, report)
    int8.assign(graph, kernels, labels)
    changed: set[int] = set()
    if any(p in HALF for p, _ in labels.values()):
        _weights(graph, kernels, labels)
        changed = _buffers(graph, labels)
        for node in int8_storage.store(graph, labels, int8.scales_of(graph)):
            labels[id(node)] = _int8_writer(node, labels[id(node)])
        kernels += _casts(graph, kernels, labels, changed)
    active = any(p in ("fp16", "tf32", "int8") for p, _ in labels.values())
    for node in kernels:
        p, why = labels[id(node)]
        if active and p is not None and supports_float16(kernel_kind(node)):
            node.attrs["math"] = p
        report.precisions[node.name] = (p, why)


def _int8_writer(node: Node, label: tuple) -> tuple:
    """The label of a kernel that writes int8 storage: a conv keeps its precision and lists its
    outputs' scales; a SpaceToDepth quantizes; a max pool moves int8 in and out."""
    if kernel_kind(node) not in int8_storage.QUANTIZERS:
        return "int8", "int8 in and out (max commutes with quantization)"
    p, why = label
    scales = ", ".join(f"{s:.4g}" for s in node.attrs["out_scales"] if s is not None)
    if kernel_kind(node) == "space_to_depth":
        return "int8", f"quantizes its output (scale {scales})"
    return p, f"{why + '; ' if why else ''}int8 output (scale {scales})"


def choose(node: Node, config) -> tuple[str | None, str | None]:
    """(precision, reason) of a kernel; the reason is None when it is simply the one requested. "int8"
    is tentative: ``int8.assign`` keeps it or makes it fp16."""
    if not _floating(node):
        return None, None
    kind = kernel_kind(node)
    overrides = getattr(config, "layer_precision", {}) or {}
    named = [s for s in sources(node) if s in overrides]
    requested = config.precision if config.precision in BUILD_PRECISIONS else "fp32"
    why = None
    if named:
        wanted = min((overrides[s] for s in named), key=PRECISIONS.index)
        if wanted != requested:
            requested, why = wanted, f"layer_precision override ({', '.join(named)})"
    if requested == "int8" and kind not in int8.KINDS:
        requested, why = "fp16", f"{kind} kernels have no int8 form yet"
    if requested == "fp16" and not supports_float16(kind):
        return "fp32", f"{kind} has no fp16 kernel"
    if requested == "tf32" and kind not in TF32_KINDS:
        return "fp32", why and f"tf32 applies to conv and gemm kernels only; {why}"
    return requested, why


def _floating(node: Node) -> bool:
    """Whether the kernel moves float16/float32 tensors (not counting constants)."""
    values = [v for v in node.inputs if v is not None and not v.is_constant] + list(node.outputs)
    return any(v.type.dtype in FLOAT for v in values)


def _unmatched(graph: Graph, config, report) -> None:
    """Report layer_precision names that no kernel computes any more (folded into another node)."""
    fused = {s for n in graph.nodes for s in sources(n)}
    for name in sorted(set(getattr(config, "layer_precision", {}) or {}) - fused):
        report.decide(NAME, "layer_precision", [name], "no kernel computes this node any more (it was folded into "
                      "another node or removed)")


def _weights(graph: Graph, kernels: list[Node], labels: dict) -> None:
    """fp16 conv/gemm kernels read their constant operands as float16 constants (converted once)."""
    converted: dict[int, Value] = {}
    old: list[Value] = []
    for node in kernels:
        if labels[id(node)][0] != "fp16" or kernel_kind(node) not in WEIGHT_KINDS:
            continue
        n_base = int(node.attrs.get("n_base", 2))
        consts = [(k, v) for k, v in enumerate(node.inputs[:n_base])
                  if v is not None and v.is_constant and v.type.dtype == "float32"]
        if any(_beyond_fp16(v.const) for _, v in consts):
            labels[id(node)] = ("fp32", "weights beyond the float16 range")
            continue
        for k, v in consts:
            if id(v) not in converted:
                converted[id(v)] = graph.add_constant(f"{v.name}_fp16", v.const.astype(np.float16))
                old.append(v)
            node.set_input(k, converted[id(v)])
    drop_constants(graph, old)


def _beyond_fp16(w: np.ndarray) -> bool:
    finite = np.abs(w[np.isfinite(w)])
    return bool(finite.size) and float(finite.max()) > FP16_MAX


def _buffers(graph: Graph, labels: dict) -> set[int]:
    """Give float16 to the float32 buffers only fp16 kernels write; return the ids of the changed values."""
    changed: set[int] = set()
    for members in _alias_classes(graph):
        if any(v.type.dtype != "float32" or v.is_constant or is_output(graph, v) or v in graph.inputs
               for v in members):
            continue
        writers = [v.producer() for v in members if v.producer() is not None and not is_view(v.producer())]
        if writers and all(labels[id(w)][0] in HALF for w in writers):
            for v in members:
                v.type = TensorType("float16", v.type.shape)
                changed.add(id(v))
    return changed


def _alias_classes(graph: Graph) -> list[list[Value]]:
    """The values grouped by the buffer they live in (views and in-place concats join their inputs)."""
    parent: dict[int, int] = {}
    by_id: dict[int, Value] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for v in graph.values():
        by_id[id(v)] = v
        find(id(v))
    for node in graph.nodes:
        if is_view(node):
            joined = [v for v in (list(node.inputs) if node.op == "Concat" else list(node.inputs[:1])) + node.outputs
                      if v is not None]
            for v in joined[1:]:
                parent[find(id(v))] = find(id(joined[0]))
    classes: dict[int, list[Value]] = {}
    for i, v in by_id.items():
        classes.setdefault(find(i), []).append(v)
    return list(classes.values())


def _casts(graph: Graph, kernels: list[Node], labels: dict, changed: set[int]) -> list[Node]:
    """A Cast to float32 in front of every kernel without float16 kernels that reads a float16 buffer
    this pass made (one per buffer view); return the new Cast kernels."""
    made: dict[int, Value] = {}
    new: list[Node] = []
    for node in list(kernels):
        kind = kernel_kind(node)
        if supports_float16(kind):
            continue
        for i, v in enumerate(node.inputs):
            if v is None or id(v) not in changed:
                continue
            if id(v) not in made:
                cast = _cast_node(graph, v, node, kind)
                labels[id(cast)] = ("fp32", f"cast to float32 for {node.name} ({kind} has no fp16 kernel)")
                made[id(v)] = cast.outputs[0]
                new.append(cast)
            node.set_input(i, made[id(v)])
    return new


def _cast_node(graph: Graph, v: Value, reader: Node, kind: str) -> Node:
    step = Step("Cast", ("in0",), (("round_mode", "up"), ("saturate", 1), ("to", "float32")))
    name = f"{v.name}_to_fp32"
    attrs = group_attrs(None, {}, 0, (), ((step,),), (name,))
    cast = graph.add_node(group_op(None), [v], attrs=attrs, name=name, index=graph.nodes.index(reader))
    cast.outputs[0].type = TensorType("float32", v.type.shape)
    return cast
