"""nbtrt: a TensorRT-style optimizer and runtime whose GPU kernels are generated Numba CUDA code.

Public surface so far: :func:`parse` (a model to the IR), :func:`plan` (the optimized graph of fused
groups and its build report), :class:`BuildConfig` and :mod:`nbtrt.reference` (the numpy interpreter).
The error family is :class:`NbtrtError`.
"""

from .errors import (AttributeValueError, ExecutionError, GraphError, InputError, ModelLoadError, NbtrtError,
                     ShapeError, UnsupportedOpError)

from .config import BuildConfig

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
            dims=None):
    """Build an :class:`~nbtrt.runtime.engine.Engine` for ``model``.

    Engines are built for fixed shapes: ``input_shapes`` ({input: shape}) or ``dims`` ({"N": 8}) fix
    them; symbolic dims left open are built as 1. On a GPU every kernel is compiled for its arch; with
    ``NUMBA_ENABLE_CUDASIM=1`` the engine runs in Numba's CUDA simulator.
    """
    from dataclasses import replace

    from .passes import optimize
    from .runtime.engine import build
    if precision != "fp32":
        raise NbtrtError(f"precision {precision!r} is not available yet (fp32 only)")
    config = config or BuildConfig(precision=precision, input_shapes=dict(input_shapes or {}),
                                   dims=dict(dims or {}))
    graph = parse(model)
    open_dims = {d for v in graph.inputs for d in (v.type.shape or ()) if isinstance(d, str)}
    config = replace(config, dims={**{d: 1 for d in open_dims}, **config.dims})
    report = optimize(graph, config)
    return build(graph, report, config)


__all__ = ["parse", "plan", "compile", "BuildConfig", "NbtrtError", "ModelLoadError", "GraphError", "ShapeError", "AttributeValueError",
           "UnsupportedOpError", "InputError", "ExecutionError", "__version__"]
