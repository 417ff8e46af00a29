"""numpy semantics of the element-wise ops (see ops/elementwise.py for their schemas).

Float math is done in the input's own precision except where numpy lacks it (erf), and every kernel
returns the input's dtype, as ONNX requires.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

from ..dtypes import (FLOAT8_TYPES, ML_FLOAT_TYPES, ML_TYPES, SUBBYTE_INT_TYPES, float_max,
                      np_dtype)

_erf = np.frompyfunc(math.erf, 1, 1)


def _same(x: np.ndarray, y) -> np.ndarray:
    return np.asarray(y).astype(x.dtype, copy=False)


def erf(node, x):
    return _same(x, _erf(x.astype(np.float64)).astype(np.float64))


def sigmoid(node, x):
    # Split by sign so that exp never overflows.
    e = np.exp(-np.abs(x))
    return _same(x, np.where(x >= 0, 1 / (1 + e), e / (1 + e)))


def gelu(node, x):
    if node.attrs["approximate"] == "tanh":
        return _same(x, 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))))
    return _same(x, 0.5 * x * (1 + erf(node, x / np.sqrt(2).astype(x.dtype))))


def hard_sigmoid(node, x):
    return _same(x, np.clip(node.attrs["alpha"] * x + node.attrs["beta"], 0, 1))


def elu(node, x):
    a = node.attrs["alpha"]
    return _same(x, np.where(x > 0, x, a * (np.exp(np.minimum(x, 0)) - 1)))


def selu(node, x):
    a, g = node.attrs["alpha"], node.attrs["gamma"]
    return _same(x, np.where(x > 0, g * x, g * a * (np.exp(np.minimum(x, 0)) - 1)))


def softplus(node, x):
    return _same(x, np.logaddexp(0, x))


def clip(node, x, lo=None, hi=None):
    if lo is not None:
        x = np.maximum(x, lo.reshape(()))
    if hi is not None:
        x = np.minimum(x, hi.reshape(()))
    return x


def div(node, a, b):
    if np.issubdtype(a.dtype, np.integer):
        return _same(a, np.trunc(a / b))  # ONNX integer division truncates toward zero
    return a / b


def pow_(node, a, b):
    return _same(a, np.power(a, b.astype(a.dtype) if np.issubdtype(a.dtype, np.floating) else b))


def _float32_round_to_odd(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounding toward zero, with the last bit set when inexact ("round to odd").

    A second rounding of the result to a float of at most 22 significant bits (all of bfloat16, float8,
    float4) then equals rounding ``x`` once, which float64 -> float32 -> target with RNE twice is not.
    """
    y = x.astype(np.float32)
    wide = y.astype(np.float64)
    inexact = (wide != x) & ~np.isnan(x)
    y = np.where(inexact & (np.abs(wide) > np.abs(x)), np.nextafter(y, np.float32(0)), y)
    return (y.view(np.uint32) | inexact.astype(np.uint32)).view(np.float32)


def _as_float32(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 for a second, final rounding to a narrower float (see above). int32/int64 go
    through float64 (exact up to 2**53)."""
    if (x.dtype.kind in "iu" and x.dtype.itemsize >= 4) or x.dtype == np.float64:
        return _float32_round_to_odd(x.astype(np.float64))
    return x.astype(np.float32)


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """Cast to float8_e8m0fnu (2**(e - 127), e in 0..254; 255 is NaN) per the ONNX Cast spec.

    The exponent of ``|x|`` (negative inputs are unspecified) rounds ``up`` (any mantissa bit rounds up),
    ``down``, or to ``nearest`` (ties up, as onnx's reference does). Out of range, 0 and inf give the
    extreme of that side when saturating, else NaN; NaN stays NaN.
    """
    if round_mode not in ("up", "down", "nearest"):
        raise ValueError(f"round_mode {round_mode!r} is not up, down or nearest")
    a = np.abs(x.astype(np.float64))
    with np.errstate(all="ignore"):
        m, e = np.frexp(np.where(np.isfinite(a), a, 0))  # a = 2m * 2**(e-1), 2m - 1 in [0, 1)
    frac = 2 * m - 1
    e = e.astype(np.int64) - 1
    if round_mode == "up":
        e += frac > 0
    elif round_mode == "nearest":
        e += frac >= 0.5
    biased = e + 127
    low, high = (0, 254) if saturate else (255, 255)
    code = np.where(biased > 254, high, np.where((biased < 0) | (a == 0), low, biased))
    code = np.where(np.isinf(a), high, code)
    code = np.where(np.isnan(a), 255, code)
    return code.astype(np.uint8).view(np_dtype("float8_e8m0fnu"))


def convert(x: np.ndarray, to: str, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """``x`` cast to the dtype named ``to`` with ONNX Cast semantics.

    - float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz): round to nearest even; with ``saturate`` finite values
      out of range and +-inf become +-max of the type (NaN stays NaN); without it they become NaN, or
      +-inf for e5m2 (ml_dtypes' conversion). FNUZ types have no -0: it becomes +0.
    - bfloat16: round to nearest even, overflow to inf. float4_e2m1fn: round to nearest even,
      saturating to +-6 (inf too); NaN, which it cannot hold, becomes -0 like onnx's reference and its
      test data (the float4 technical note says 6).
    - float8_e8m0fnu: see :func:`_to_e8m0`.
    - int4/uint4/int2/uint2 and numpy types: like numpy's ``astype`` (integers wrap, floats truncate).
    Sources that ml_dtypes cannot convert directly go through float32 (floats) or int8 (sub-byte ints),
    both exact.
    """
    src = x.dtype.name
    if to == "float8_e8m0fnu":
        return _to_e8m0(x if x.dtype.kind in "fiub" else x.astype(np.float32), saturate, round_mode)
    if src in ML_TYPES and src != to:
        wide = x.astype(np.int8 if src in SUBBYTE_INT_TYPES else np.float32)
        if to not in ML_TYPES:
            return wide.astype(np_dtype(to))
        x = wide
    if to in ML_FLOAT_TYPES:
        f = _as_float32(x)
        if to in FLOAT8_TYPES and saturate:
            top = np.float32(float_max(to))
            f = np.clip(f, -top, top)
        return f.astype(np_dtype(to))
    return x.astype(np_dtype(to))


def cast(node, x):
    return convert(x, node.attrs["to"], bool(node.attrs["saturate"]), node.attrs.get("round_mode", "up"))


KERNELS = {
    "Relu": lambda node, x: np.maximum(x, x.dtype.type(0)),
    "LeakyRelu": lambda node, x: _same(x, np.where(x >= 0, x, node.attrs["alpha"] * x)),
    "PRelu": lambda node, x, slope: _same(x, np.where(x >= 0, x, slope * x)),
    "Sigmoid": sigmoid,
    "Tanh": lambda node, x: np.tanh(x),
    "HardSigmoid": hard_sigmoid,
    "HardSwish": lambda node, x: _same(x, x * np.clip(x / 6 + 0.5, 0, 1)),
    "Elu": elu,
    "Selu": selu,
    "Softplus": softplus,
    "Gelu": gelu,
    "Erf": erf,
    "Exp": lambda node, x: np.exp(x),
    "Log": lambda node, x: np.log(x),
    "Sqrt": lambda node, x: np.sqrt(x),
    "Reciprocal": lambda node, x: _same(x, 1 / x),
    "Neg": lambda node, x: np.negative(x),
    "Abs": lambda node, x: np.abs(x),
    "Clip": clip,
    "Pow": pow_,
    "Add": lambda node, a, b: a + b,
    "Sub": lambda node, a, b: a - b,
    "Mul": lambda node, a, b: a * b,
    "Div": div,
    "Sum": lambda node, *xs: reduce(np.add, xs),
    "Mean": lambda node, *xs: _same(xs[0], reduce(np.add, xs) / len(xs)),
    "Max": lambda node, *xs: reduce(np.maximum, xs),
    "Min": lambda node, *xs: reduce(np.minimum, xs),
    "Where": lambda node, c, a, b: np.where(c, a, b),
    "Cast": cast,
}
