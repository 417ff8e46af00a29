"""The engine: the optimized graph, its memory plan and one generated kernel per fused group.

``build(model, config)`` parses, optimizes, plans memory and generates a kernel per non-view node.
On a GPU each kernel is compiled ahead of time to a cubin for the device's arch; with an explicit
``arch`` (e.g. ``"sm_90"``) for that arch, also on a machine without a GPU ("cross-compiling", which
needs the CUDA toolkit wheels: ``pip install 'nbtrt[cuda]'``). Under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) kernels run through Numba's dispatcher instead and carry no compiled code.
Execution happens in an :class:`~nbtrt.runtime.context.ExecutionContext`; ``Engine.run`` uses a default
one. ``Engine.save``/``Engine.serialize`` write an engine file (``serialize.py``); ``nbtrt.load`` reads it.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

from .. import codegen
from ..codegen.build import Compiled, compile_cubin
from ..codegen.kernel import KernelSpec, Scratch, TensorArg
from ..codegen.numba_env import simulated
from ..config import BuildConfig
from ..errors import NbtrtError
from ..groups import kernel_kind, sources
from ..ir import Graph, Value
from ..report import BuildReport
from .memory import MemoryPlan, plan_memory
from .plugin_steps import configure_plugins


@dataclass
class Kernel:
    """One launch: the generated spec, the value behind each tensor parameter, and compiled code."""

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
    tuning: dict | None = None

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

    @property
    def scratch(self) -> Scratch:
        """The scratch memory a context needs: as much as the kernel that asks most."""
        total = Scratch()
        for k in self.kernels:
            total = total | k.spec.scratch
        return total

    def run(self, inputs: dict) -> dict:
        """Run synchronously on the engine's default context; returns output name -> numpy array."""
        with self._lock:
            if self._default is None:
                self._default = self.create_context()
            return self._default.run(inputs)

    def serialize(self) -> bytes:
        """The engine file's bytes: graph, weights, memory plan, kernels' sources and compiled code."""
        from .serialize import serialize
        return serialize(self)

    def save(self, path) -> None:
        """Write the engine file to ``path`` (read it back with :func:`nbtrt.load`)."""
        from .serialize import save
        save(self, path)


def tensor_arg(param: str, v: Value, memory: MemoryPlan) -> TensorArg:
    layout = memory.layout(v)
    return TensorArg(param, v.type.dtype, tuple(v.type.shape), layout.strides, layout.offset)


def generate_kernels(graph: Graph, memory: MemoryPlan, tactic_for=None) -> list[Kernel]:
    """One kernel per non-view node; ``tactic_for(kind, node, outs, ins)`` may name a tactic (a
    timing-cache hit), else the template's heuristic decides."""
    kernels = []
    for node in graph.nodes:
        kind = kernel_kind(node)
        if kind is None or kind == "plugin":  # views launch nothing; plugins run their own kernels
            continue
        outs = [tensor_arg(f"out{i}", v, memory) for i, v in enumerate(node.outputs)]
        ins = [None if v is None else tensor_arg(f"in{k}", v, memory) for k, v in enumerate(node.inputs)]
        spec = codegen.generate(node, outs, ins, tactic_for and tactic_for(kind, node, outs, ins))
        by_param = {a.param: v for a, v in zip(outs + ins, list(node.outputs) + list(node.inputs)) if a is not None}
        kernels.append(Kernel(node.name, kind, spec, [by_param[p] for p in spec.tensor_params]))
    return kernels


def dump(kernels: list[Kernel], folder: str) -> None:
    """Write each kernel's source to ``folder`` (``NBTRT_DUMP=dir``)."""
    os.makedirs(folder, exist_ok=True)
    for i, k in enumerate(kernels):
        with open(os.path.join(folder, f"{i:03d}_{k.spec.name}.py"), "w") as f:
            f.write(k.spec.source)


def build(graph: Graph, report: BuildReport, config: BuildConfig, arch: str | None = None) -> Engine:
    """Plan memory, generate the kernels and compile them for the GPU's arch, or for ``arch`` when
    given (cross-compiling: no GPU needed, no tuning); in the simulator without ``arch``, nothing."""
    if arch is not None:
        check_cross_compile(arch, config)
    memory = plan_memory(graph, config.memory_layout)
    configure_plugins(graph, config.precision)
    if arch is None and not simulated():
        from . import driver
        arch = driver.arch()
    cache = tactic_for = None
    if config.tuning != "none" and arch is not None:
        from ..tuning import TimingCache, cached_tactic
        cache = TimingCache(config.timing_cache)
        tactic_for = lambda kind, node, outs, ins: cached_tactic(cache, kind, node, outs, ins, config.precision, arch)
    kernels = generate_kernels(graph, memory, tactic_for)
    if os.environ.get("NBTRT_DUMP"):
        dump(kernels, os.environ["NBTRT_DUMP"])
    if arch is not None:
        for k, compiled in zip(kernels, compile_kernels([k.spec for k in kernels], arch)):
            k.compiled = compiled
    engine = Engine(graph, report, memory, kernels, config, arch)
    if cache is not None:
        from ..tuning import tune
        engine.tuning = tune(engine, config, cache)
    return engine


def compile_all(specs: list[KernelSpec], arch: str, tolerant: bool = False) -> list[Compiled | None]:
    """Compile every kernel; many kernels are compiled by a pool of worker processes (Numba's
    compiler is single-threaded, and a network has dozens of kernels). ``tolerant``: a kernel that
    fails to compile gives None (a tuning candidate scored infinite) instead of raising."""
    fn = _compile_or_none if tolerant else compile_cubin
    workers = min(len(specs) // 4, os.cpu_count() or 1, 16)
    if workers < 2:
        return [fn(s, arch) for s in specs]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(fn, specs, [arch] * len(specs), chunksize=2))


def _compile_or_none(spec: KernelSpec, arch: str) -> Compiled | None:
    try:
        return compile_cubin(spec, arch)
    except Exception:
        return None


def check_cross_compile(arch: str, config: BuildConfig) -> None:
    """NbtrtError unless ``arch`` looks like ``sm_90`` and this process can compile for it."""
    if not isinstance(arch, str) or not re.fullmatch(r"sm_\d{2,3}", arch):
        raise NbtrtError(f"arch must be 'sm_' and a compute capability, like 'sm_90'; got {arch!r}")
    if simulated():
        raise NbtrtError(f"cannot compile for {arch} in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), which "
                         "has no CUDA compiler: cross-compile with NUMBA_ENABLE_CUDASIM=0 (no GPU needed) and "
                         "the CUDA toolkit wheels (pip install 'nbtrt[cuda]')")
    if getattr(config, "tuning", "none") != "none":
        raise NbtrtError(f"tuning times kernels on the GPU; it cannot be combined with an explicit arch ({arch})")


TOOLKIT_HINTS = ("nvrtc", "nvvm", "nvjitlink", "dynamiclibnotfound", "cudatoolkit", "cuda toolkit")


def compile_kernels(specs: list[KernelSpec], arch: str) -> list[Compiled]:
    """:func:`compile_all`, with a clear error when this machine has no CUDA compiler."""
    try:
        return compile_all(specs, arch)
    except Exception as e:
        text = f"{type(e).__name__}: {str(e).strip()}"
        if not any(h in text.lower() for h in TOOLKIT_HINTS):
            raise
        raise NbtrtError(f"cannot compile CUDA kernels for {arch} on this machine ({text}). Without a local "
                         "CUDA installation Numba needs the CUDA toolkit wheels (NVRTC, NVVM, nvJitLink): "
                         "pip install 'nbtrt[cuda]' (that is numba-cuda[cu13])") from None


def kernel_table(engine: Engine) -> list[dict]:
    """One row per kernel: name, kind, ONNX nodes, launch shape (for reports and the CLI)."""
    nodes = {n.name: n for n in engine.graph.nodes}
    return [{"name": k.node_name, "kind": k.kind, "nodes": list(sources(nodes[k.node_name])),
             "grid": k.spec.grid, "block": k.spec.block, "tactic": k.spec.tactic} for k in engine.kernels]
