"""Execution contexts: the activation memory, the stream and the launches of one engine.

On a GPU a context owns an arena (one allocation, laid out by the memory plan) and a stream. Kernel
parameters are packed once, when the context is created. The first run launches every kernel
under stream capture and instantiates the CUDA graph; every run after that (same shapes — an engine
is built for fixed shapes) is one ``cuGraphLaunch``. Numba's dispatcher is never used on a GPU.

Under the simulator the same plan is laid out in one host byte array and each kernel runs through
Numba's simulated dispatcher, in order (no graph capture there).

Inputs are numpy arrays (copied into the arena; made contiguous) or GPU tensors exposing
``__cuda_array_interface__`` (PyTorch, CuPy, Numba), which the kernels read in place: the graph's
kernel nodes that read an input are pointed at the caller's tensor (cuGraphExecKernelNodeSetParams)
whenever its address changes, so nothing is copied.
"""

from __future__ import annotations

import numpy as np

from ..bindings import check_inputs, check_names, check_shape, host_array
from ..codegen.build import jit
from ..codegen.kernel import SCRATCH, Scratch, scratch_arrays
from ..codegen.numba_env import simulated
from ..errors import ExecutionError, InputError
from .memory import nbytes, physical, strided
from .plugin_steps import finalize_with, gpu_array, numba_stream, plugin_steps, schedule, sim_array, workspace_bytes


class DeviceTensor:
    """A view of device memory exposing ``__cuda_array_interface__`` (valid until the next run)."""

    def __init__(self, ptr: int, shape, dtype: str):
        self.ptr, self.shape, self.dtype = ptr, tuple(shape), np.dtype(dtype)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3,
                "strides": None}


def _gpu_array(name: str, x, want_dtype: str, want_shape, dims: dict, device: int, device_of) -> int:
    """The device pointer of GPU tensor ``x`` after checking it against input ``name``;
    ``device_of(ptr)`` gives the GPU that owns a pointer (None: not device memory)."""
    cai = x.__cuda_array_interface__
    dtype, shape = np.dtype(cai["typestr"]), tuple(cai["shape"])
    if dtype.name != want_dtype:
        raise InputError(f"input {name!r} has dtype {dtype.name}, the model expects {want_dtype}")
    check_shape(name, shape, want_shape, dims)
    if cai.get("strides") not in (None, tuple(np.cumprod((1,) + shape[:0:-1])[::-1] * dtype.itemsize)):
        raise InputError(f"input {name!r} is a non-contiguous GPU tensor; pass a contiguous one")
    ptr = cai["data"][0]
    dev = device_of(ptr) if ptr else device
    if dev is None:
        raise InputError(f"input {name!r} exposes __cuda_array_interface__ but its pointer is no device memory")
    if dev != device:
        raise InputError(f"input {name!r} is on GPU {dev}, the engine runs on GPU {device}")
    return ptr


class ExecutionContext:
    def __init__(self, engine, scratch: Scratch | None = None):
        """``scratch``: at least this much kernel scratch memory (the tuner's candidates may ask for
        more than the engine's kernels)."""
        self.engine = engine
        self.captures = 0
        scratch = engine.scratch | scratch
        self._backend = _SimBackend(engine, scratch) if simulated() else _GpuBackend(engine, scratch)
        self._close = finalize_with(self, self._backend.steps)  # plugins' terminate()

    def close(self) -> None:
        """Terminate the context's plugins; the context cannot run after this."""
        self._close()

    def _check_open(self) -> None:
        if not self._close.alive:
            raise ExecutionError("this execution context is closed")

    def run(self, inputs: dict) -> dict:
        """Run synchronously; return output name -> numpy array."""
        self._check_open()
        return self._backend.run(inputs, self)

    def profile(self, inputs: dict, repeats: int = 20) -> list[dict]:
        """Run once, then time every kernel alone (ms per launch); one row per kernel."""
        if simulated():
            raise InputError("profiling needs a GPU")
        self.run(inputs)
        rows = []
        for k, (fn, grid, block, args) in zip(self.engine.kernels, self._backend.launches):
            ms = self._backend.drv.time_launches(fn, grid, block, args, self._backend.stream, repeats)
            rows.append({"name": k.node_name, "kind": k.kind, "ms": ms, "grid": grid, "block": block,
                         "tactic": k.spec.tactic, "dtypes": "/".join(k.spec.param_dtypes)})
        return rows

    def run_async(self, inputs: dict, stream) -> dict:
        """Enqueue a run on the caller's ``stream`` (a CUstream handle or an object with
        ``cuda_stream``/``handle``); return output name -> DeviceTensor, valid until the next run."""
        if simulated():
            raise InputError("run_async needs a GPU (the simulator runs synchronously)")
        self._check_open()
        return self._backend.run_async(inputs, stream, self)


class _SimBackend:
    def __init__(self, engine, scratch: Scratch):
        self.engine, mem = engine, engine.memory
        self.scratch = scratch_arrays(scratch)
        self.arena = np.zeros(max(mem.arena_bytes, 1), np.uint8)
        self.kernels = [(jit(k.spec), k) for k in engine.kernels]
        self.steps = plugin_steps(engine)
        self.order = schedule(len(self.kernels), self.steps)
        size = workspace_bytes(self.steps)
        self.workspace = sim_array(np.zeros(size, np.uint8), 0, (size,))
        self.constants = {id(v): device_constant(engine, v) for v in engine.graph.constants.values()}

    def buffer(self, root) -> np.ndarray:
        if root.is_constant:
            return self.constants[id(root)]
        off = self.engine.memory.offsets[id(root)]
        return self.arena[off:off + nbytes(root)].view(root.type.dtype)

    def array(self, v):
        """A plugin's (simulated) device array over tensor ``v``, in place."""
        layout = self.engine.memory.layout(v)
        return sim_array(self.buffer(layout.root), layout.offset, v.type.shape)

    def run(self, inputs, ctx) -> dict:
        graph, mem = self.engine.graph, self.engine.memory
        arrays, _ = check_inputs(graph, inputs)
        for v in graph.inputs:
            self.buffer(v)[:] = arrays[v.name].reshape(-1)
        for item in self.order:
            if isinstance(item, int):
                dispatcher, k = self.kernels[item]
                scratch = self.scratch if k.spec.scratch else []
                dispatcher[k.spec.grid, k.spec.block](*[self.buffer(mem.layout(v).root) for v in k.args], *scratch)
            else:
                item.enqueue(self.array, self.workspace, numba_stream())
        out = {}
        for v in graph.outputs:
            layout = mem.layout(v)
            out[v.name] = strided(self.buffer(layout.root), layout, v.type.shape)
        return out


class _GpuBackend:
    def __init__(self, engine, scratch: Scratch):
        from . import driver
        self.drv, self.engine, mem = driver, engine, engine.memory
        driver.init()
        self.scratch = scratch_arrays(scratch, lambda n, dtype: driver.upload(np.zeros(n, dtype)))
        self.device = driver.device_ordinal()
        self.constants = _engine_constants(engine)
        self.arena = driver.DeviceBuffer(mem.arena_bytes)
        self.stream = driver.stream_create()
        self.graph_exec = None
        self.roots = [[mem.layout(v).root for v in k.args] for k in engine.kernels]
        self.bound: dict[int, int] = {}  # id(input) -> the caller's device pointer the graph reads
        self.launches = [(fn, k.spec.grid, k.spec.block, self.packed(roots, k.spec, {}))
                         for fn, k, roots in zip(_engine_functions(engine), engine.kernels, self.roots)]
        self.steps = plugin_steps(engine)
        self.order = schedule(len(self.launches), self.steps)
        size = workspace_bytes(self.steps)
        self.workspace = driver.DeviceBuffer(size) if size else None
        self.plugin_roots = {id(mem.layout(v).root) for st in self.steps
                             for v in st.node.inputs + tuple(st.node.outputs) if v is not None}

    def bound_ptr(self, root) -> int:
        """Where ``root`` lives this run: a caller's GPU input tensor, or the arena/constants."""
        return self.bound.get(id(root), self.ptr(root))

    def packed(self, roots, spec, external: dict[int, int]):
        """Kernel ``spec``'s parameters: the tensors ``roots`` (a caller's GPU input where ``external``
        has it) and, when the kernel asks for them, the scratch buffers."""
        buffers = [(external.get(id(r), self.ptr(r)), int(np.prod(r.type.shape)), np.dtype(r.type.dtype).itemsize)
                   for r in roots]
        if spec.scratch:
            buffers += [(b.ptr, b.nbytes // np.dtype(dtype).itemsize, np.dtype(dtype).itemsize)
                        for b, (_, dtype) in zip(self.scratch, SCRATCH)]
        return self.drv.PackedArgs(buffers)

    def _rebind(self, external: dict[int, int]) -> None:
        """Point the graph's kernels at the caller's GPU input tensors (no copy); back to the arena
        for inputs that come from the host this time."""
        changed = {k for k in set(external) | set(self.bound) if external.get(k) != self.bound.get(k)}
        for i, (fn, grid, block, _) in enumerate(self.launches):
            if any(id(r) in changed for r in self.roots[i]):
                args = self.packed(self.roots[i], self.engine.kernels[i].spec, external)
                self.drv.set_kernel_args(self.graph_exec, self.nodes[i], fn, grid, block, args)
                self.launches[i] = (fn, grid, block, args)
        self.bound = dict(external)

    def ptr(self, root) -> int:
        if root.is_constant:
            return self.constants[id(root)].ptr
        return self.arena.ptr + self.engine.memory.offsets[id(root)]

    def _enqueue(self, inputs, stream, ctx) -> None:
        graph = self.engine.graph
        check_names(graph, inputs)
        dims: dict[str, int] = {}
        external: dict[int, int] = {}
        host = []
        for v in graph.inputs:
            x = inputs[v.name]
            if hasattr(x, "__cuda_array_interface__"):
                external[id(v)] = _gpu_array(v.name, x, v.type.dtype, v.type.shape, dims, self.device,
                                             self.drv.pointer_device)
            else:
                host.append((v, host_array(v, x, dims)))
        changed = {k for k in set(external) | set(self.bound) if external.get(k) != self.bound.get(k)}
        if self.graph_exec is None or changed & self.plugin_roots:  # plugins' pointers are captured as they are
            self._capture(external, ctx)
        for v, x in host:  # after a capture: its plugin warm-up may write where an input lives (memory reuse)
            # from pageable host memory the copy is staged before the call returns
            self.drv.copy_htod(self.ptr(v), x, stream)
        if external != self.bound:
            self._rebind(external)
        self.drv.graph_launch(self.graph_exec, stream)

    def _capture(self, external: dict[int, int], ctx) -> None:
        """Capture every launch, kernels and plugins, into a CUDA graph and instantiate it."""
        ws = self.workspace and gpu_array(self.workspace.ptr, (self.workspace.nbytes,), "uint8")
        stream = numba_stream(self.stream) if self.steps else None
        array_of = lambda v: self._plugin_array(v, external)  # noqa: E731
        if self.steps and self.graph_exec is None:  # Numba compiles the plugins' kernels outside the capture
            for step in self.steps:
                step.enqueue(array_of, ws, stream)
            self.drv.synchronize(self.stream)
        if self.graph_exec is not None:
            self.drv.graph_destroy(self._graph, self.graph_exec)
            self.graph_exec = None
        self.drv.begin_capture(self.stream)
        try:
            for item in self.order:
                if isinstance(item, int):
                    self.drv.launch(*self.launches[item], self.stream)
                else:
                    item.enqueue(array_of, ws, stream)
        except BaseException:
            self.drv.abandon_capture(self.stream)
            raise
        self._graph, self.graph_exec = self.drv.end_capture(self.stream)
        self.nodes = self.drv.kernel_nodes(self._graph, [fn for fn, *_ in self.launches])
        ctx.captures += 1

    def _plugin_array(self, v, external: dict[int, int]):
        layout = self.engine.memory.layout(v)
        ptr = external.get(id(layout.root), self.ptr(layout.root))
        return gpu_array(ptr + layout.offset * np.dtype(v.type.dtype).itemsize, v.type.shape, v.type.dtype)

    def run(self, inputs, ctx) -> dict:
        self._enqueue(inputs, self.stream, ctx)
        out = {}
        for v in self.engine.graph.outputs:
            out[v.name] = np.empty(v.type.shape, v.type.dtype)
            layout = self.engine.memory.layout(v)
            src = self.bound_ptr(layout.root) + layout.offset * out[v.name].itemsize
            self.drv.copy_dtoh(out[v.name], src, stream=self.stream)
        self.drv.synchronize(self.stream)
        return out

    def run_async(self, inputs, stream, ctx) -> dict:
        handle = getattr(stream, "cuda_stream", getattr(stream, "handle", stream))
        self._enqueue(inputs, handle, ctx)
        mem = self.engine.memory
        return {v.name: DeviceTensor(self.bound_ptr(mem.layout(v).root) + mem.layout(v).offset *
                                     np.dtype(v.type.dtype).itemsize, v.type.shape, v.type.dtype)
                for v in self.engine.graph.outputs}


def _engine_constants(engine) -> dict:
    """Device copies of the engine's constants, uploaded once per engine."""
    with engine._lock:
        if engine._device_constants is None:
            from . import driver
            engine._device_constants = {id(v): driver.upload(device_constant(engine, v))
                                        for v in engine.graph.constants.values()}
        return engine._device_constants


def device_constant(engine, v) -> np.ndarray:
    """Constant ``v`` as the flat buffer kernels read: laid out by its memory-plan strides (e.g. OHWI)."""
    return physical(v.const, engine.memory.layout(v).strides)


def _engine_functions(engine) -> list:
    """The loaded CUfunction of every kernel, loaded once per engine."""
    with engine._lock:
        if engine._functions is None:
            from . import driver
            loaded = [driver.load_function(k.compiled.cubin, k.compiled.entry) for k in engine.kernels]
            engine._modules = [m for m, _ in loaded]
            engine._functions = [f for _, f in loaded]
        return engine._functions
