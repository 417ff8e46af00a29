"""A thin, checked layer over the CUDA driver API (cuda.bindings): context, memory, modules,
pre-packed kernel launches and CUDA graphs. Every call's status is checked; a failure raises
:class:`CudaError` naming the call.
"""

from __future__ import annotations

import numpy as np

from ..errors import NbtrtError


class CudaError(NbtrtError):
    """A CUDA driver call failed, or no CUDA GPU is present."""


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError as e:
        raise CudaError(f"cuda.bindings is not installed ({e})") from None
    return driver


def check(result, what: str):
    """Unpack a cuda.bindings (status, *values) result, raising on error."""
    drv = _driver()
    status, *values = result if isinstance(result, tuple) else (result,)
    if status != drv.CUresult.CUDA_SUCCESS:
        name = drv.cuGetErrorName(status)[1]
        raise CudaError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else tuple(values) if values else None


_context = None


def init() -> object:
    """Make the device's primary context current (shared with Numba, PyTorch and CuPy); return it."""
    global _context
    drv = _driver()
    if _context is None:
        try:
            check(drv.cuInit(0), "cuInit")
            count = check(drv.cuDeviceGetCount(), "cuDeviceGetCount")
        except (CudaError, RuntimeError, OSError) as e:  # no driver library at all raises RuntimeError
            raise CudaError(f"no CUDA GPU is available ({e}); set NUMBA_ENABLE_CUDASIM=1 to use the simulator") from None
        if count == 0:
            raise CudaError("no CUDA GPU is available; set NUMBA_ENABLE_CUDASIM=1 to use the simulator")
        device = check(drv.cuDeviceGet(0), "cuDeviceGet")
        _context = check(drv.cuDevicePrimaryCtxRetain(device), "cuDevicePrimaryCtxRetain")
    check(drv.cuCtxSetCurrent(_context), "cuCtxSetCurrent")
    return _context


def arch() -> str:
    drv = _driver()
    init()
    dev = check(drv.cuCtxGetDevice(), "cuCtxGetDevice")
    attr = drv.CUdevice_attribute
    major = check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "attr")
    minor = check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "attr")
    return f"sm_{major}{minor}"


def device_ordinal() -> int:
    init()
    return int(check(_driver().cuCtxGetDevice(), "cuCtxGetDevice"))


class DeviceBuffer:
    """Device memory owned by nbtrt (freed when garbage collected)."""

    def __init__(self, nbytes: int):
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(_driver().cuMemAlloc(self.nbytes), f"cuMemAlloc({self.nbytes})"))

    def __del__(self):
        try:
            _driver().cuMemFree(self.ptr)
        except Exception:
            pass


def upload(array: np.ndarray) -> DeviceBuffer:
    array = np.ascontiguousarray(array)
    buf = DeviceBuffer(array.nbytes)
    check(_driver().cuMemcpyHtoD(buf.ptr, array.ctypes.data, array.nbytes), "cuMemcpyHtoD")
    return buf


def copy_htod(dst: int, array: np.ndarray, stream) -> None:
    check(_driver().cuMemcpyHtoDAsync(dst, array.ctypes.data, array.nbytes, stream), "cuMemcpyHtoDAsync")


def copy_dtoh(array: np.ndarray, src: int, stream) -> None:
    check(_driver().cuMemcpyDtoHAsync(array.ctypes.data, src, array.nbytes, stream), "cuMemcpyDtoHAsync")


def pointer_device(ptr: int) -> int | None:
    """The ordinal of the GPU that owns device pointer ``ptr`` (None if it is no device memory)."""
    drv = _driver()
    status, value = drv.cuPointerGetAttribute(drv.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr)
    return int(value) if status == drv.CUresult.CUDA_SUCCESS else None


def stream_create():
    return check(_driver().cuStreamCreate(_driver().CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")


def synchronize(stream) -> None:
    check(_driver().cuStreamSynchronize(stream), "cuStreamSynchronize")


def load_function(cubin: bytes, entry: str):
    """Load a cubin and return (module, function)."""
    drv = _driver()
    module = check(drv.cuModuleLoadData(cubin), "cuModuleLoadData")
    return module, check(drv.cuModuleGetFunction(module, entry.encode()), f"cuModuleGetFunction({entry})")


class PackedArgs:
    """Kernel parameters packed once: each flat-buffer parameter is Numba's array ABI
    (meminfo, parent, nitems, itemsize, data, shape[0], strides[0] in bytes), 8 bytes per field."""

    FIELDS = 7

    def __init__(self, buffers: list[tuple[int, int, int]]):
        """``buffers``: (device pointer, number of elements, itemsize) per parameter."""
        self.values = np.zeros(self.FIELDS * len(buffers), np.int64)
        for i, (ptr, n, itemsize) in enumerate(buffers):
            self.values[self.FIELDS * i:self.FIELDS * (i + 1)] = [0, 0, n, itemsize, ptr, n, itemsize]
        base = self.values.ctypes.data
        self.pointers = np.array([base + 8 * k for k in range(len(self.values))], np.uint64)
        self.address = int(self.pointers.ctypes.data)


def launch(function, grid, block, args: PackedArgs, stream) -> None:
    check(_driver().cuLaunchKernel(function, *grid, *block, 0, stream, args.address, 0), "cuLaunchKernel")


def begin_capture(stream) -> None:
    mode = _driver().CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    check(_driver().cuStreamBeginCapture(stream, mode), "cuStreamBeginCapture")


def end_capture(stream):
    """End the capture on ``stream``; return (graph, instantiated executable graph)."""
    drv = _driver()
    graph = check(drv.cuStreamEndCapture(stream), "cuStreamEndCapture")
    return graph, check(drv.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")


def abandon_capture(stream) -> None:
    """End a capture that failed part way, dropping what was captured (the stream is usable again)."""
    drv = _driver()
    status, graph = drv.cuStreamEndCapture(stream)
    if status == drv.CUresult.CUDA_SUCCESS and graph:
        drv.cuGraphDestroy(graph)


def graph_destroy(graph, graph_exec) -> None:
    """Free a captured graph and its executable (before capturing again)."""
    check(_driver().cuGraphExecDestroy(graph_exec), "cuGraphExecDestroy")
    check(_driver().cuGraphDestroy(graph), "cuGraphDestroy")


def kernel_nodes(graph, functions) -> list:
    """The graph's kernel node for each function (each of our kernels has a function of its own)."""
    drv = _driver()
    _, count = check(drv.cuGraphGetNodes(graph, 0), "cuGraphGetNodes")
    nodes, _ = check(drv.cuGraphGetNodes(graph, count), "cuGraphGetNodes")
    by_function = {}
    for node in nodes:
        if check(drv.cuGraphNodeGetType(node), "cuGraphNodeGetType") == drv.CUgraphNodeType.CU_GRAPH_NODE_TYPE_KERNEL:
            params = check(drv.cuGraphKernelNodeGetParams(node), "cuGraphKernelNodeGetParams")
            by_function[int(params.func)] = node
    return [by_function[int(f)] for f in functions]


def set_kernel_args(graph_exec, node, function, grid, block, args: PackedArgs) -> None:
    """Point an instantiated graph's kernel node at other buffers (same kernel, same launch shape)."""
    drv = _driver()
    p = drv.CUDA_KERNEL_NODE_PARAMS()
    p.func = function
    p.gridDimX, p.gridDimY, p.gridDimZ = grid
    p.blockDimX, p.blockDimY, p.blockDimZ = block
    p.sharedMemBytes = 0
    p.kernelParams = args.address
    check(drv.cuGraphExecKernelNodeSetParams(graph_exec, node, p), "cuGraphExecKernelNodeSetParams")


def time_launches(function, grid, block, args: PackedArgs, stream, repeats: int) -> float:
    """Milliseconds per launch of one kernel, by CUDA events around ``repeats`` launches."""
    drv = _driver()
    start, end = (check(drv.cuEventCreate(0), "cuEventCreate") for _ in range(2))
    check(drv.cuEventRecord(start, stream), "cuEventRecord")
    for _ in range(repeats):
        launch(function, grid, block, args, stream)
    check(drv.cuEventRecord(end, stream), "cuEventRecord")
    check(drv.cuEventSynchronize(end), "cuEventSynchronize")
    ms = check(drv.cuEventElapsedTime(start, end), "cuEventElapsedTime")
    for e in (start, end):
        drv.cuEventDestroy(e)
    return ms / repeats


def graph_launch(graph_exec, stream) -> None:
    check(_driver().cuGraphLaunch(graph_exec, stream), "cuGraphLaunch")
