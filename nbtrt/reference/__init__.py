"""The reference interpreter: numpy semantics of every op, run node by node.

``run(model, inputs)`` is the oracle for every test and for ``nbtrt compare``: written for clarity,
not speed. ``model`` is a path, bytes, ``onnx.ModelProto`` or an IR :class:`~nbtrt.ir.Graph`. Each
node's result is checked against the types shape inference gave it, so an inference bug shows up
where it happens.
"""

from __future__ import annotations

import numpy as np

from ..bindings import check_inputs
from ..errors import ExecutionError, NbtrtError, UnsupportedOpError, node_error
from ..ir import Graph, Node
from ..plugins import PLUGIN_OP
from ..plugins import run_reference as run_plugin
from . import elementwise, fused, nn, tensor

KERNELS = {**elementwise.KERNELS, **nn.KERNELS, **tensor.KERNELS}
KERNELS.update(fused.make_kernels(KERNELS))
KERNELS[PLUGIN_OP] = run_plugin  # a plugin's own numpy semantics (Plugin.reference)


def as_graph(model) -> Graph:
    if isinstance(model, Graph):
        return model
    from ..frontends.onnx import parse
    return parse(model)


def run(model, inputs: dict, outputs=None) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs`` (input name -> array); return output name -> array.

    ``outputs`` optionally names values to return instead of the graph outputs (any value by name).
    """
    graph = as_graph(model)
    missing = [(n.name, n.op) for n in graph.nodes if n.op not in KERNELS]
    if missing:
        raise UnsupportedOpError(missing)
    arrays, _ = check_inputs(graph, inputs)
    env = {id(v): arrays[v.name] for v in graph.inputs}
    env.update({id(v): v.const for v in graph.constants.values()})
    for node in graph.nodes:
        results = run_node(node, [None if v is None else env[id(v)] for v in node.inputs])
        for v, r in zip(node.outputs, results):
            env[id(v)] = r
    wanted = graph.outputs if outputs is None else [graph.value(n) for n in outputs]
    return {v.name: env[id(v)] for v in wanted}


def run_node(node: Node, args: list) -> list[np.ndarray]:
    """Run one node's numpy kernel and check its results against the node's inferred types.

    A kernel of a mixed-precision build (attribute ``math``, see ``passes/precision.py``) runs as its
    generated kernel does: float16 inputs widened to float32, float results rounded to the float16 or
    float32 of its outputs."""
    mixed = node.attrs.get("math") in ("fp32", "tf32", "fp16", "int8")
    if mixed:
        args = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float16 else a for a in args]
    try:
        with np.errstate(all="ignore"):
            out = KERNELS[node.op](node, *args)
    except NbtrtError:
        raise
    except Exception as e:  # a numpy error is a mismatch the static checks could not see
        raise node_error(ExecutionError, node, f"failed in the reference: {type(e).__name__}: {e}") from e
    results = [np.asarray(r) for r in (out if isinstance(out, (tuple, list)) else [out])]
    if mixed:
        results = [r.astype(v.type.dtype) if r.dtype.kind == "f" and v.type.dtype in ("float16", "float32") else r
                   for v, r in zip(node.outputs, results)] + results[len(node.outputs):]
    for v, r in zip(node.outputs, results):
        t = v.type
        if r.dtype.name != t.dtype or (t.shape is not None and (
                len(r.shape) != len(t.shape) or
                any(isinstance(d, int) and d != s for d, s in zip(t.shape, r.shape)))):
            raise node_error(ExecutionError, node, f"output {v.name!r} came out {r.dtype.name}{list(r.shape)} "
                             f"but was inferred as {t}")
    return results
