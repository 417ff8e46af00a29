"""Schemas of the tensor, shape, reduction and quantization ops, merged from their modules.

- ``reshape.py``: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, SpaceToDepth
- ``shape.py``: Shape, ConstantOfShape, Expand, Gather, Identity, Dropout
- ``slicing.py``: Concat, Split, Slice, Pad
- ``resize.py``: Resize
- ``reduce.py``: ReduceSum, ReduceMean, ReduceMax
- ``quant.py``: QuantizeLinear, DequantizeLinear

Every op takes its latest ONNX opset form: values that older opsets passed as attributes (axes, split
sizes, pads, slice bounds, scales) are inputs here; ``frontends/onnx_upgrade.py`` rewrites old forms.
"""

from __future__ import annotations

from . import quant, reduce, reshape, resize, shape, slicing
from .schema import OpSchema

SCHEMAS: dict[str, OpSchema] = {
    **reshape.SCHEMAS, **shape.SCHEMAS, **slicing.SCHEMAS, **resize.SCHEMAS, **reduce.SCHEMAS,
    **quant.SCHEMAS,
}
