"""Running the network over calibration data and gathering an :class:`AbsHistogram` per activation.

An *activation* is a float tensor that an int8 kernel would read or write: a graph input, or the
output of a node that depends on at least one graph input. Constants, and node outputs computed from
constants alone (e.g. weights built by ``ConstantOfShape``), are not activations.

``collect(graph, batches, runner)`` runs ``runner(inputs)`` on every batch. A runner returns the
activations of one batch, as a mapping of name to array or as an iterable of ``(name, array)`` pairs
(so that a runner may hand each tensor over as soon as it is computed and free it after). The default
runner is the numpy reference interpreter, :func:`reference_runner`; on a GPU, an engine's execution
context that keeps every activation (not only the outputs) can take its place. Arrays may be numpy
arrays or device arrays with ``copy_to_host()``; names the runner returns that are not activations
are ignored, activations it never returns get no statistics (and so no scale).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..bindings import check_inputs
from ..errors import CalibrationDataError, CalibrationError, InputError, UnsupportedOpError
from ..ir import Graph
from ..reference import KERNELS, run_node
from .histogram import AbsHistogram

FLOAT_TYPES = {"float16", "bfloat16", "float32", "float64"}


def activations(graph: Graph) -> list[str]:
    """Names of the float activations of ``graph``: its inputs and the outputs of input-dependent nodes."""
    live = {id(v) for v in graph.inputs}
    names = [v.name for v in graph.inputs if v.type.dtype in FLOAT_TYPES]
    for node in graph.nodes:
        if any(v is not None and id(v) in live for v in node.inputs):
            for v in node.outputs:
                live.add(id(v))
                if v.type is not None and v.type.dtype in FLOAT_TYPES:
                    names.append(v.name)
    return names


def reference_runner(graph: Graph):
    """A runner on the numpy interpreter: yields each activation as computed, drops dead tensors."""
    wanted = set(activations(graph))

    def run(inputs: dict):
        return ((v.name, array) for v, array in interpret(graph, inputs) if v.name in wanted)
    return run


def interpret(graph: Graph, inputs: dict, transform=None):
    """Run ``graph`` on checked ``inputs``, yielding ``(value, array)`` for each input and node output.

    ``transform(value, array)``, if given, replaces every input, constant and node output before
    anything reads it (fake quantization uses it). A tensor is dropped after its last reader.
    """
    missing = [(n.name, n.op) for n in graph.nodes if n.op not in KERNELS]
    if missing:
        raise UnsupportedOpError(missing)
    last_use = {}
    for index, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v is not None:
                last_use[id(v)] = index
    kept = {id(v) for v in graph.outputs}
    env = {}
    for v, array in [(v, inputs[v.name]) for v in graph.inputs] + [(v, v.const) for v in graph.constants.values()]:
        env[id(v)] = array if transform is None else transform(v, array)
    yield from ((v, env[id(v)]) for v in graph.inputs)
    for index, node in enumerate(graph.nodes):
        results = run_node(node, [None if v is None else env[id(v)] for v in node.inputs])
        for v, r in zip(node.outputs, results):
            env[id(v)] = r if transform is None else transform(v, r)
            yield v, env[id(v)]
        for v in node.inputs:
            if v is not None and last_use.get(id(v)) == index and id(v) not in kept:
                env.pop(id(v), None)


def collect(graph: Graph, batches, runner=None, progress: bool = True) -> dict[str, AbsHistogram]:
    """Run every batch of ``batches`` through ``runner``; return activation name -> statistics."""
    runner = runner or reference_runner(graph)
    names = activations(graph)
    wanted = set(names)
    stats: dict[str, AbsHistogram] = {}
    bar = Progress(_length(batches), enabled=progress)
    seen = 0
    for index, batch in enumerate(_iterate(graph, batches)):
        inputs = check_batch(graph, batch, index)
        produced = runner(inputs)
        for name, array in (produced.items() if hasattr(produced, "items") else produced):
            if name in wanted:
                stats.setdefault(name, AbsHistogram()).add(_host(array))
        seen += 1
        bar.update(seen, _batch_size(inputs))
    bar.close()
    if not seen:
        raise CalibrationError("calibration_data is empty: give at least one batch (an input dict, or an "
                               "array for a one-input model)")
    return {name: stats[name] for name in names if name in stats}


def check_batch(graph: Graph, batch, index: int) -> dict[str, np.ndarray]:
    """One batch as checked input arrays; a wrong name, shape or dtype raises CalibrationDataError."""
    if not isinstance(batch, dict):
        if len(graph.inputs) != 1:
            names = ", ".join(repr(v.name) for v in graph.inputs)
            raise CalibrationDataError(f"calibration batch {index}: the model has {len(graph.inputs)} inputs "
                                       f"({names}), so each batch must be a dict of input name to array, "
                                       f"got {type(batch).__name__}")
        batch = {graph.inputs[0].name: batch}
    try:
        arrays, _ = check_inputs(graph, batch)
    except InputError as e:
        raise CalibrationDataError(f"calibration batch {index}: {e}") from None
    return arrays


def _iterate(graph: Graph, batches):
    """The batches of ``calibration_data``; a dict, or an array of the input's rank, is one batch."""
    if batches is None:
        raise CalibrationError("no calibration data: give an iterable of batches (input dicts, or arrays "
                               "for a one-input model)")
    one_input_rank = graph.inputs[0].type.rank if len(graph.inputs) == 1 else None
    if isinstance(batches, dict) or (isinstance(batches, np.ndarray) and batches.ndim == one_input_rank):
        return iter([batches])
    try:
        return iter(batches)
    except TypeError:
        raise CalibrationError(f"calibration_data must be an iterable of batches, got "
                               f"{type(batches).__name__}") from None


def _host(array) -> np.ndarray:
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)


def _length(batches) -> int | None:
    try:
        return None if isinstance(batches, (dict, np.ndarray)) else len(batches)
    except TypeError:
        return None


def _batch_size(inputs: dict) -> int:
    first = next(iter(inputs.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


class Progress:
    """One progress line on stderr: redrawn in place on a terminal, a line every few seconds otherwise."""

    def __init__(self, total: int | None, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self.last = time.perf_counter()
        self.samples = 0
        self.text = ""

    def update(self, batches: int, batch_size: int) -> None:
        self.samples += batch_size
        now = time.perf_counter()
        of = f"/{self.total}" if self.total is not None else ""
        self.text = (f"calibration: batch {batches}{of}, {self.samples} samples, "
                     f"{now - self.start:.1f} s")
        if self.enabled and (self.tty or now - self.last >= 5.0):
            self.stream.write(("\r" if self.tty else "") + self.text + ("" if self.tty else "\n"))
            self.stream.flush()
            self.last = now

    def close(self) -> None:
        if self.enabled and self.text:
            self.stream.write(("\r" if self.tty else "") + self.text + " - done\n")
            self.stream.flush()
