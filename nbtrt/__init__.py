"""nbtrt: a TensorRT-style optimizer and runtime whose GPU kernels are generated Numba CUDA code.

Public surface so far: :func:`parse` (a model to the IR), :class:`Network` (a layer-by-layer builder
of the IR), :func:`plan` (the optimized graph of fused groups and its build report),
:class:`BuildConfig` and :mod:`nbtrt.reference` (the numpy interpreter). The error family is :class:`NbtrtError`.
"""

from .errors import (ArchMismatchError, AttributeValueError, EngineFileError, EngineVersionError, ExecutionError,
                     GraphError, InputError, ModelLoadError, NbtrtError, ShapeError, UnsupportedOpError)

from .config import BuildConfig
from .frontends.network import Network

__version__ = "0.1.0"


def parse(model):
    """Parse a model (ONNX path, bytes or ModelProto) into a type-checked :class:`nbtrt.ir.Graph`."""
    from .frontends.onnx import parse as parse_onnx
    return parse_onnx(model)


def plan(model, config: BuildConfig | None = None):
    """Parse and optimize ``model``; return (optimized graph, build report)."""
    from .passes import optimize
    graph = model if hasattr(model, "nodes") else parse(model)
    report = optimize(graph, config)
    return graph, report


def compile(model, precision: str = "fp32", config: BuildConfig | None = None, *, input_shapes=None,
            dims=None, tuning: str = "none", timing_cache: str | None = None, arch: str | None = None):
    """Build an :class:`~nbtrt.runtime.engine.Engine` for ``model``.

    Engines are built for fixed shapes: ``input_shapes`` ({input: shape}) or ``dims`` ({"N": 8}) fix
    them; symbolic dims left open are built as 1. On a GPU every kernel is compiled for its arch; with
    ``NUMBA_ENABLE_CUDASIM=1`` the engine runs in Numba's CUDA simulator. ``arch`` (e.g. ``"sm_90"``)
    compiles for that arch instead, also without a GPU (needs ``pip install 'nbtrt[cuda]'``); save the
    engine with ``engine.save(path)`` and run it elsewhere with :func:`load`.
    """
    from dataclasses import replace

    from .passes import optimize
    from .runtime.engine import build
    if precision != "fp32":
        raise NbtrtError(f"precision {precision!r} is not available yet (fp32 only)")
    config = config or BuildConfig(precision=precision, input_shapes=dict(input_shapes or {}),
                                   dims=dict(dims or {}), tuning=tuning, timing_cache=timing_cache)
    from .ir import Graph
    graph = model if isinstance(model, Graph) else parse(model)  # a Graph (e.g. Network.graph()) is rewritten in place
    open_dims = {d for v in graph.inputs if v.name not in config.input_shapes  # those sized by input_shapes
                 for d in (v.type.shape or ()) if isinstance(d, str)}
    config = replace(config, dims={**{d: 1 for d in open_dims}, **config.dims})
    report = optimize(graph, config)
    return build(graph, report, config, arch=arch)


def load(path_or_bytes, strict: bool = False):
    """Load an engine file (written by ``Engine.save``/``Engine.serialize``) without recompiling.

    Engine files hold cubins for one GPU arch: on a GPU of another arch (or for an engine built in the
    simulator) the kernels are recompiled from their stored sources with a warning, or
    :class:`ArchMismatchError` is raised when ``strict``. Bad files raise :class:`EngineFileError`.
    """
    from .runtime.serialize import load as load_engine
    return load_engine(path_or_bytes, strict=strict)


__all__ = ["parse", "plan", "compile", "BuildConfig", "Network", "NbtrtError", "ModelLoadError", "GraphError", "ShapeError", "AttributeValueError",
           "UnsupportedOpError", "InputError", "ExecutionError", "EngineFileError", "EngineVersionError",
           "ArchMismatchError", "load", "__version__"]
