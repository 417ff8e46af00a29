"""Which frontend reads a model: a Darknet ``.cfg`` (weights: ``.weights``), a Caffe ``.prototxt``
(weights: ``.caffemodel``), else ONNX. The weights are the given path or the file of the same stem
beside the model; a cfg or prototxt with neither is an error (the importers read None as zero weights,
for structure only: call them directly for that)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelLoadError

WEIGHTS = {".cfg": ".weights", ".prototxt": ".caffemodel"}


def parse_path(model, weights=None):
    suffix = Path(model).suffix.lower() if isinstance(model, (str, os.PathLike)) else None
    if suffix not in WEIGHTS:
        if weights is not None:
            raise ModelLoadError("weights= is for Darknet (.cfg) and Caffe (.prototxt) models; ONNX models "
                                 "carry their weights")
        from .onnx import parse
        return parse(model)
    path = Path(model)
    if weights is None:
        weights = path.with_suffix(WEIGHTS[suffix])
        if not weights.is_file():
            raise ModelLoadError(f"{path}: no weights given and no {weights.name} beside it (pass weights=PATH)")
    if suffix == ".cfg":
        from .darknet import parse_darknet
        return parse_darknet(path, weights)
    from .caffe import parse_caffe
    return parse_caffe(path, weights)
