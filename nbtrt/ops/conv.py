"""Schemas of Conv and ConvTranspose (N-d, grouped, dilated, strided, padded).

Conv:           X (N, C, D1..Dn), W (M, C/group, k1..kn), B (M)  ->  Y (N, M, O1..On)
                Y[n, m] = B[m] + Σ_{c in group(m), j} X_pad[n, c, o·s + j·d] · W[m, c, j]
ConvTranspose:  X (N, C, D1..Dn), W (C, M/group, k1..kn), B (M)  ->  Y (N, M, O1..On)
                the adjoint of Conv: every X element scatters X·W into a window at i·s (+ j·d)
The output sizes and pads follow ``window.py``.
"""

from __future__ import annotations

from ..ir import Dim, Node, TensorType
from .schema import FLOAT_TYPES, OpSchema, dim_mul, has_input, in_type, same_dim, shape_error
from .window import forward_shape, kernel_from_attr, positive_int, shape_or_none, transpose_shape, window_attrs

CONV_ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None,
              "pads": None, "strides": None}


def check_same_dtype(node: Node, *indices: int) -> str:
    """The common dtype of the given (present) inputs; a mismatch is a ShapeError."""
    dtypes = {i: in_type(node, i).dtype for i in indices if has_input(node, i)}
    first = dtypes[indices[0]]
    for i, dt in dtypes.items():
        if dt != first:
            raise shape_error(node, f"input {i} is {dt} but input {indices[0]} is {first}")
    return first


def conv_operands(node: Node):
    """Shapes of X and W with their ranks checked (None if neither rank is known), and the group count."""
    x, w = shape_or_none(node, 0), shape_or_none(node, 1)
    if x is None and w is None:
        return None, None, positive_int(node, "group")
    x, w = x or (None,) * len(w), w or (None,) * len(x)
    if len(x) < 3:
        raise shape_error(node, f"input X must be (N, C, spatial...) of rank >= 3, got {list(x)}")
    if len(w) != len(x):
        raise shape_error(node, f"weight W {list(w)} must have the rank of X {list(x)}")
    group = positive_int(node, "group")
    if isinstance(x[1], int) and x[1] % group:
        raise shape_error(node, f"group {group} does not divide the {x[1]} input channels")
    return x, w, group


def check_bias(node: Node, channels: Dim) -> None:
    if has_input(node, 2):
        b = shape_or_none(node, 2, 1)
        if len(b) != 1 or not same_dim(b[0], channels):
            raise shape_error(node, f"bias B {list(b)} must be a vector of the {channels} output channels")


def infer_conv(node: Node) -> list[TensorType]:
    dtype = check_same_dtype(node, 0, 1, 2)
    x, w, group = conv_operands(node)
    if x is None:
        return [TensorType(dtype)]
    m = w[0]
    if isinstance(m, int) and m % group:
        raise shape_error(node, f"group {group} does not divide the {m} output channels of W {list(w)}")
    if not same_dim(x[1], dim_mul(w[1], group)):
        raise shape_error(node, f"input X has {x[1]} channels but W {list(w)} with group {group} "
                                f"expects {dim_mul(w[1], group)}")
    check_bias(node, m)
    win = window_attrs(node, kernel_from_attr(node, w[2:]))
    spatial, _ = forward_shape(node, win, x[2:])
    return [TensorType(dtype, (x[0], m) + spatial)]


def infer_conv_transpose(node: Node) -> list[TensorType]:
    dtype = check_same_dtype(node, 0, 1, 2)
    x, w, group = conv_operands(node)
    if x is None:
        return [TensorType(dtype)]
    if not same_dim(x[1], w[0]):
        raise shape_error(node, f"input X has {x[1]} channels but W {list(w)} expects {w[0]} "
                                f"(ConvTranspose weights are (C, M/group, k...))")
    m = dim_mul(w[1], group)
    check_bias(node, m)
    win = window_attrs(node, kernel_from_attr(node, w[2:]))
    spatial, _ = transpose_shape(node, win, x[2:])
    return [TensorType(dtype, (x[0], m) + spatial)]


SCHEMAS = {
    "Conv": OpSchema("Conv", infer_conv, inputs=(2, 3), attrs=dict(CONV_ATTRS), dtypes=FLOAT_TYPES),
    "ConvTranspose": OpSchema("ConvTranspose", infer_conv_transpose, inputs=(2, 3),
                              attrs={**CONV_ATTRS, "output_padding": None, "output_shape": None},
                              dtypes=FLOAT_TYPES),
}
