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


__all__ = ["parse", "plan", "BuildConfig", "NbtrtError", "ModelLoadError", "GraphError", "ShapeError", "AttributeValueError",
           "UnsupportedOpError", "InputError", "ExecutionError", "__version__"]
