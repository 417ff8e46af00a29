"""Numpy kernels of the tensor, shape, reduction and quantization ops, merged from their modules.

- ``reshape.py``: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Shape, ConstantOfShape, Expand,
  Gather, Identity, Dropout
- ``slicing.py``: Concat, Split, Slice, Pad
- ``resize.py``: Resize
- ``reduce.py``: ReduceSum, ReduceMean, ReduceMax
- ``quant.py``: QuantizeLinear, DequantizeLinear

A kernel is ``fn(node, *inputs)`` (omitted optional inputs are None or absent) and returns an array, or
a tuple for several outputs; it reads its attributes from ``node.attrs``.
"""

from __future__ import annotations

from . import quant, reduce, reshape, resize, slicing

KERNELS: dict[str, callable] = {
    **reshape.KERNELS, **slicing.KERNELS, "Resize": resize.resize, **reduce.KERNELS, **quant.KERNELS,
}
