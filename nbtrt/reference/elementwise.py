"""numpy semantics of the element-wise ops (see ops/elementwise.py for their schemas).

Float math is done in the input's own precision except where numpy lacks it (erf), and every kernel
returns the input's dtype, as ONNX requires.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

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


def cast(node, x):
    return x.astype(np.dtype(node.attrs["to"]))


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
