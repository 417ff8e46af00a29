"""nbtrt: a TensorRT-style optimizer and runtime whose GPU kernels are generated Numba CUDA code.

Public surface so far: :func:`parse` (a model to the IR) and :mod:`nbtrt.reference` (the numpy
interpreter). The error family is :class:`NbtrtError`.
"""

from .errors import (AttributeValueError, ExecutionError, GraphError, InputError, ModelLoadError, NbtrtError,
                     ShapeError, UnsupportedOpError)

__version__ = "0.1.0"


def parse(model):
    """Parse a model (ONNX path, bytes or ModelProto) into a type-checked :class:`nbtrt.ir.Graph`."""
    from .frontends.onnx import parse as parse_onnx
    return parse_onnx(model)


__all__ = ["parse", "NbtrtError", "ModelLoadError", "GraphError", "ShapeError", "AttributeValueError",
           "UnsupportedOpError", "InputError", "ExecutionError", "__version__"]
