"""INT8 calibration: per-tensor scales from representative data, and the int8 numpy reference.

``calibrate(model, calibration_data, calibrator="entropy", cache="model.calib")`` runs the FP32 network
on every batch of ``calibration_data`` (an iterable of input dicts, or of arrays for a one-input model),
gathers an abs-max and a 2048-bin histogram of ``|x|`` per activation (:mod:`.histogram`,
:mod:`.collect`), turns each into a threshold with the chosen calibrator (:mod:`.calibrators`:
``entropy``, ``minmax``, ``percentile``) and returns a :class:`CalibrationTable` of tensor name ->
scale (``threshold / 127``). With ``cache``, a cache file made for this model and calibrator is read
instead of calibrating, and a new table is written there (atomically, :mod:`.cache`).

:mod:`.fake` simulates int8 (quantize, dequantize, :func:`run_fake_quant`) on the reference interpreter.
"""

from __future__ import annotations

import os

from ..errors import CalibrationError
from .cache import CalibrationTable, check_cache, fingerprint, read_cache, write_cache
from .calibrators import CALIBRATORS, check_calibrator, scale_of, threshold
from .collect import activations, collect, interpret, reference_runner
from .fake import dequantize, fake_quantize, quantize, run_fake_quant
from .histogram import AbsHistogram


def calibrate(graph_or_model_path, calibration_data=None, calibrator: str = "entropy", percentile: float = 99.99,
              cache=None, *, runner=None, progress: bool = True) -> CalibrationTable:
    """Calibrate ``graph_or_model_path`` (an ir.Graph, or an ONNX path, bytes or ModelProto).

    ``runner(inputs)`` replaces the reference interpreter (see :func:`collect`); ``progress`` shows a
    progress line on stderr. Raises CalibrationError (and subclasses) on bad data, an unknown
    calibrator, or a cache that is damaged or made for another model or calibrator.
    """
    from ..reference import as_graph
    label = check_calibrator(calibrator, percentile)
    graph = as_graph(graph_or_model_path)
    model = fingerprint(graph)
    if cache is not None and os.path.exists(cache):
        table = read_cache(cache)
        check_cache(cache, table, model, activations(graph), label)
        return table
    if calibration_data is None:
        where = f" and no calibration cache at {os.fspath(cache)}" if cache is not None else ""
        raise CalibrationError(f"no calibration data{where}: give calibration_data (an iterable of input "
                               f"dicts, or arrays for a one-input model)")
    stats = collect(graph, calibration_data, runner, progress)
    table = make_table(stats, calibrator, percentile, model)
    if cache is not None:
        write_cache(cache, table)
    return table


def make_table(stats: dict[str, AbsHistogram], calibrator: str = "entropy", percentile: float = 99.99,
               model: str = "") -> CalibrationTable:
    """The calibration table of collected statistics (``model``: the fingerprint to record)."""
    label = check_calibrator(calibrator, percentile)
    scales = {name: scale_of(threshold(h, calibrator, percentile)) for name, h in stats.items()}
    return CalibrationTable(scales, label, model)


__all__ = ["calibrate", "make_table", "collect", "activations", "reference_runner", "interpret", "AbsHistogram",
           "CalibrationTable", "read_cache", "write_cache", "check_cache", "fingerprint", "CALIBRATORS",
           "threshold", "scale_of", "quantize", "dequantize", "fake_quantize", "run_fake_quant"]
