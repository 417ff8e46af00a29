"""The engine: the optimized graph, its memory plan and one generated kernel per fused group.

``build(model, config)`` parses, optimizes, plans memory and generates a kernel per non-view node.
On a GPU each kernel is compiled ahead of time to a cubin for the device's arch; under the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) kernels run through Numba's dispatcher instead. Execution
happens in an :class:`~nbtrt.runtime.context.ExecutionContext`; ``Engine.run`` uses a default one.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from .. import codegen
from ..codegen.build import Compiled, compile_cubin
from ..codegen.kernel import KernelSpec, TensorArg
from ..codegen.numba_env import simulated
from ..config import BuildConfig
from ..groups import kernel_kind, sources
from ..ir import Graph, Value
from ..report import BuildReport
from .memory import MemoryPlan, plan_memory


@dataclass
class Kernel:
    """One launch: the generated spec, the value behind each parameter, and compiled code."""

    node_name: str
    kind: str
    spec: KernelSpec
    args: list[Value]
    compiled: Compiled | None = None


@dataclass
class Engine:
    graph: Graph
    report: BuildReport
    memory: MemoryPlan
    kernels: list[Kernel]
    config: BuildConfig
    arch: str | None = None
    _default: object = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _device_constants: dict | None = field(default=None, repr=False)
    _functions: list | None = field(default=None, repr=False)
    _modules: list | None = field(default=None, repr=False)

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.graph.outputs]

    def create_context(self):
        """A new execution context with its own activation memory and stream."""
        from .context import ExecutionContext
        return ExecutionContext(self)

    def run(self, inputs: dict) -> dict:
        """Run synchronously on the engine's default context; returns output name -> numpy array."""
        with self._lock:
            if self._default is None:
                self._default = self.create_context()
            return self._default.run(inputs)


def tensor_arg(param: str, v: Value, memory: MemoryPlan) -> TensorArg:
    layout = memory.layout(v)
    return TensorArg(param, v.type.dtype, tuple(v.type.shape), layout.strides, layout.offset)


def generate_kernels(graph: Graph, memory: MemoryPlan) -> list[Kernel]:
    kernels = []
    for node in graph.nodes:
        kind = kernel_kind(node)
        if kind is None:
            continue
        outs = [tensor_arg(f"out{i}", v, memory) for i, v in enumerate(node.outputs)]
        ins = [None if v is None else tensor_arg(f"in{k}", v, memory) for k, v in enumerate(node.inputs)]
        spec = codegen.generate(node, outs, ins)
        by_param = {a.param: v for a, v in zip(outs + ins, list(node.outputs) + list(node.inputs)) if a is not None}
        kernels.append(Kernel(node.name, kind, spec, [by_param[p] for p in spec.params]))
    return kernels


def dump(kernels: list[Kernel], folder: str) -> None:
    """Write each kernel's source to ``folder`` (``NBTRT_DUMP=dir``)."""
    os.makedirs(folder, exist_ok=True)
    for i, k in enumerate(kernels):
        with open(os.path.join(folder, f"{i:03d}_{k.spec.name}.py"), "w") as f:
            f.write(k.spec.source)


def build(graph: Graph, report: BuildReport, config: BuildConfig) -> Engine:
    memory = plan_memory(graph)
    kernels = generate_kernels(graph, memory)
    if os.environ.get("NBTRT_DUMP"):
        dump(kernels, os.environ["NBTRT_DUMP"])
    arch = None
    if not simulated():
        from . import driver
        arch = driver.arch()
        for k, compiled in zip(kernels, compile_all([k.spec for k in kernels], arch)):
            k.compiled = compiled
    return Engine(graph, report, memory, kernels, config, arch)


def compile_all(specs: list[KernelSpec], arch: str) -> list[Compiled]:
    """Compile every kernel; many kernels are compiled by a pool of worker processes (Numba's
    compiler is single-threaded, and a network has dozens of kernels)."""
    workers = min(len(specs) // 4, os.cpu_count() or 1, 16)
    if workers < 2:
        return [compile_cubin(s, arch) for s in specs]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(compile_cubin, specs, [arch] * len(specs), chunksize=2))


def kernel_table(engine: Engine) -> list[dict]:
    """One row per kernel: name, kind, ONNX nodes, launch shape (for reports and the CLI)."""
    nodes = {n.name: n for n in engine.graph.nodes}
    return [{"name": k.node_name, "kind": k.kind, "nodes": list(sources(nodes[k.node_name])),
             "grid": k.spec.grid, "block": k.spec.block, "tactic": k.spec.tactic} for k in engine.kernels]
