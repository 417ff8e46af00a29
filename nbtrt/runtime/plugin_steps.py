"""Plugin nodes as an execution context runs them (see :mod:`nbtrt.plugins` for the interface).

Each context runs its own copy of every plugin (``clone``), configured with the node's static input
types and the engine's precision, and initialized once, when the context is made; ``terminate`` runs
when the context is closed or collected. A plugin node is a step between the engine's kernels: the
:func:`schedule` interleaves them in graph order. Its tensors are contiguous (concat elimination
never makes a plugin write into a slice), handed over as device arrays over the context's memory,
with one workspace per context, as large as the largest plugin asks for (steps run one after the
other on the context's stream).
"""

from __future__ import annotations

import weakref

import numpy as np

from ..codegen.kernel import contiguous_strides
from ..errors import NbtrtError
from ..plugins import PLUGIN_OP, Plugin, call, fail, input_types, node_plugin


class PluginStep:
    """One plugin node of an engine in one context; ``after``: how many engine kernels run before it."""

    def __init__(self, node, after: int, precision: str):
        self.node, self.after, self.live = node, after, False
        proto = node_plugin(node)
        self.plugin = call(node.name, proto, "clone", proto.clone, Plugin)
        types = input_types(node)
        call(node.name, self.plugin, "configure", lambda: self.plugin.configure(types, precision))
        size = call(node.name, self.plugin, "workspace_size", lambda: self.plugin.workspace_size(types))
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            fail(node.name, self.plugin, f"workspace_size returned {size!r}, not a byte count >= 0")
        self.workspace = int(size)
        call(node.name, self.plugin, "initialize", self.plugin.initialize)
        self.live = True

    def enqueue(self, array_of, workspace, stream) -> None:
        """Run the plugin; ``array_of(value)`` is the device array of a tensor."""
        inputs = [None if v is None else array_of(v) for v in self.node.inputs]
        outputs = [array_of(v) for v in self.node.outputs]
        ws = workspace if self.workspace else None
        call(self.node.name, self.plugin, "enqueue", lambda: self.plugin.enqueue(inputs, outputs, ws, stream))

    def terminate(self) -> None:
        if self.live:
            self.live = False
            call(self.node.name, self.plugin, "terminate", self.plugin.terminate)


def plugin_steps(engine) -> list[PluginStep]:
    """A fresh step (a new, initialized plugin copy) per plugin node of ``engine``, in graph order."""
    position = {k.node_name: i for i, k in enumerate(engine.kernels)}
    steps, after = [], 0
    for node in engine.graph.nodes:
        if node.op == PLUGIN_OP:
            check_contiguous(engine.memory, node)
            steps.append(PluginStep(node, after, engine.config.precision))
        elif node.name in position:
            after = position[node.name] + 1
    return steps


def check_contiguous(memory, node) -> None:
    for v in [v for v in node.inputs if v is not None] + list(node.outputs):
        if memory.layout(v).strides != contiguous_strides(v.type.shape):
            raise NbtrtError(f"plugin node {node.name!r}: tensor {v.name!r} is not contiguous in the memory plan")


def schedule(n_kernels: int, steps: list[PluginStep]) -> list:
    """Kernel indices and plugin steps in the order they run."""
    order, s = [], 0
    for i in range(n_kernels + 1):
        while s < len(steps) and steps[s].after == i:
            order.append(steps[s])
            s += 1
        if i < n_kernels:
            order.append(i)
    return order


def workspace_bytes(steps: list[PluginStep]) -> int:
    return max((s.workspace for s in steps), default=0)


def finalize_with(owner, steps: list[PluginStep]):
    """Terminate the steps' plugins when ``owner`` is collected (or when the returned finalizer is
    called, e.g. by ``ExecutionContext.close``)."""
    return weakref.finalize(owner, terminate_all, list(steps))


def terminate_all(steps: list[PluginStep]) -> None:
    errors = []
    for s in steps:
        try:
            s.terminate()
        except NbtrtError as e:
            errors.append(e)
    if errors:
        raise errors[0]


# -- device arrays over the context's memory ----------------------------------------------------------
def sim_array(flat: np.ndarray, offset: int, shape):
    """A simulator device array over elements ``[offset, offset + size)`` of a numpy buffer (no copy)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    size = int(np.prod(shape, dtype=np.int64))
    return FakeCUDAArray(flat[offset:offset + size].reshape(shape))


def gpu_array(ptr: int, shape, dtype):
    """A Numba device array over device memory at ``ptr`` (nbtrt owns the memory)."""
    from ..codegen.numba_env import cuda
    desc = {"shape": tuple(int(d) for d in shape), "typestr": np.dtype(dtype).str, "data": (int(ptr), False),
            "version": 3, "strides": None}
    return cuda.from_cuda_array_interface(desc, owner=None, sync=False)


def numba_stream(handle=None):
    """The Numba stream plugins launch on: the simulator's default stream, or a wrapped CUstream."""
    from ..codegen.numba_env import cuda, simulated
    if simulated():
        return cuda.default_stream()
    return cuda.external_stream(int(handle))


def configure_plugins(graph, precision: str) -> None:
    """Build time: each plugin node's plugin sees its static input types and the precision."""
    for node in graph.nodes:
        if node.op == PLUGIN_OP:
            plugin, types = node_plugin(node), input_types(node)
            call(node.name, plugin, "configure", lambda: plugin.configure(types, precision))
