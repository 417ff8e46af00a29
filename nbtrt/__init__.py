"""nbtrt: a TensorRT-style optimizer and runtime whose GPU kernels are generated Numba CUDA code.

Public surface so far: :func:`parse` (a model to the IR), :class:`Network` (a layer-by-layer builder
of the IR), :func:`plan` (the optimized graph of fused groups and its build report),
:class:`BuildConfig`, :class:`Plugin` and :func:`register_plugin` (custom layers, see :mod:`nbtrt.plugins`)
and :mod:`nbtrt.reference` (the numpy interpreter). The error family is :class:`NbtrtError`.
"""

from .errors import (ArchMismatchError, AttributeValueError, EngineFileError, EngineVersionError, ExecutionError,
                     GraphError, InputError, ModelLoadError, NbtrtError, ShapeError, UnsupportedOpError)

from .config import BuildConfig
from .frontends.network import Network
from .errors import PluginError, PluginNotFoundError
from .plugins import Plugin, register_plugin

__version__ = "0.1.0"


def parse(model, weights=None):
    """Parse a model into a type-checked :class:`nbtrt.ir.Graph`: ONNX (a path, bytes or ModelProto),
    a Darknet ``.cfg`` or a Caffe ``.prototxt``. Their weights are ``weights`` or the file of the same
    stem beside them (``.weights``, ``.caffemodel``)."""
    from .frontends.routing import parse_path
    return parse_path(model, weights)


def plan(model, config: BuildConfig | None = None):
    """Parse and optimize ``model``; return (optimized graph, build report)."""
    from .passes import optimize
    graph = model if hasattr(model, "nodes") else parse(model)
    report = optimize(graph, config)
    return graph, report


def compile(model, precision: str = "fp32", config: BuildConfig | None = None, *, input_shapes=None,
            dims=None, tuning: str = "none", timing_cache: str | None = None, arch: str | None = None,
            layer_precision: dict | None = None, calibration_data=None, calibrator: str = "entropy",
            calibration_cache=None, layout: str = "auto"):
    """Build an :class:`~nbtrt.runtime.engine.Engine` for ``model``.

    Engines are built for fixed shapes: ``input_shapes`` ({input: shape}) or ``dims`` ({"N": 8}) fix
    them; symbolic dims left open are built as 1. On a GPU every kernel is compiled for its arch; with
    ``NUMBA_ENABLE_CUDASIM=1`` the engine runs in Numba's CUDA simulator. ``arch`` (e.g. ``"sm_90"``)
    compiles for that arch instead, also without a GPU (needs ``pip install 'nbtrt[cuda]'``); save the
    engine with ``engine.save(path)`` and run it elsewhere with :func:`load`. ``precision`` is "fp32",
    "tf32" or "fp16" (float16 activations and weights, float32 accumulation; inputs and outputs keep
    their dtypes); ``layer_precision`` ({"onnx_node_name": "fp32"}) overrides it per node. ``layout``
    ("auto", "nchw" or "nhwc") is how activations are laid out between kernels (``BuildConfig.layout``).

    ``precision="int8"``: conv and gemm kernels compute in int8 (quantized activations, per-channel
    int8 weights, int32 sums; activations stay float16 between kernels), the rest as fp16. The scales
    come from the model's Q/DQ nodes (``graph.quant_scales``), else from calibrating on
    ``calibration_data`` (an iterable of input dicts, or arrays for a one-input model) with
    ``calibrator`` ("entropy", "minmax" or "percentile"), or from ``calibration_cache`` (a file
    :func:`nbtrt.quant.calibrate` reads when it exists and writes otherwise).
    """
    from dataclasses import replace

    from .passes import optimize
    from .runtime.engine import build
    config = config or BuildConfig(precision=precision, input_shapes=dict(input_shapes or {}),
                                   dims=dict(dims or {}), tuning=tuning, timing_cache=timing_cache,
                                   layer_precision=dict(layer_precision or {}), layout=layout)
    from .ir import Graph
    graph = model if isinstance(model, Graph) else parse(model)  # a Graph (e.g. Network.graph()) is rewritten in place
    if config.precision == "int8":
        _int8_scales(graph, calibration_data, calibrator, calibration_cache)
    open_dims = {d for v in graph.inputs if v.name not in config.input_shapes  # those sized by input_shapes
                 for d in (v.type.shape or ()) if isinstance(d, str)}
    config = replace(config, dims={**{d: 1 for d in open_dims}, **config.dims})
    report = optimize(graph, config)
    return build(graph, report, config, arch=arch)


def _int8_scales(graph, calibration_data, calibrator: str, calibration_cache) -> None:
    """Put the activation scales of an int8 build on the parsed graph (``graph.quant_scales``): the
    model's own when it has them (QuantizeLinear nodes of activations, folded by passes/fold_qdq.py, or
    scales already there), else calibrated (nbtrt.quant.calibrate) before optimizing."""
    if getattr(graph, "quant_scales", None) or any(n.op == "QuantizeLinear" and not n.inputs[0].is_constant
                                                   for n in graph.nodes):
        return
    if calibration_data is None and calibration_cache is None:
        from .errors import CalibrationError
        raise CalibrationError("precision='int8' needs activation scales: give calibration_data (an iterable of "
                               "input dicts, or arrays for a one-input model) or a calibration_cache file, or "
                               "a model with QuantizeLinear/DequantizeLinear nodes")
    from .quant import calibrate
    graph.quant_scales = dict(calibrate(graph, calibration_data, calibrator, cache=calibration_cache))


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
           "ArchMismatchError", "load", "__version__", "Plugin", "register_plugin", "PluginError",
           "PluginNotFoundError"]
