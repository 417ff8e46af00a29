"""The element types nbtrt knows, and resolving their names to numpy dtypes.

The IR names a dtype by its numpy name (``"float32"``, ``"int8"``, ...). Types numpy lacks come from
``ml_dtypes`` and keep its names: ``"bfloat16"``, ``"float8_e4m3fn"``, ``"float8_e4m3fnuz"``,
``"float8_e5m2"``, ``"float8_e5m2fnuz"``, ``"float8_e8m0fnu"``, ``"float4_e2m1fn"``, ``"int4"``,
``"uint4"``, ``"int2"``, ``"uint2"``. An array of such a type is an ``ml_dtypes`` numpy array (dtype kind
``"V"``): resolve names with :func:`np_dtype`, never with ``np.dtype(name)``, which only works once
``ml_dtypes`` has been imported.

``ONNX_DTYPES`` maps the ONNX ``TensorProto.DataType`` enum values (stable integers, so this module does
not import onnx) to these names. Strings, complex numbers and float6 are not supported.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

# TensorProto.DataType value -> numpy dtype name.
_ONNX_NAMES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
    10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz",
    21: "uint4", 22: "int4", 23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2",
}

# The ml_dtypes types, by name (only those this ml_dtypes version has).
ML_TYPES: dict[str, type] = {name: getattr(ml_dtypes, name) for name in _ONNX_NAMES.values()
                             if hasattr(ml_dtypes, name) and not hasattr(np, name)}

ONNX_DTYPES: dict[int, str] = {k: v for k, v in _ONNX_NAMES.items() if hasattr(np, v) or v in ML_TYPES}
ONNX_ENUMS: dict[str, int] = {v: k for k, v in ONNX_DTYPES.items()}
NAMES: frozenset[str] = frozenset(ONNX_DTYPES.values())

# float8 types with the Cast/QuantizeLinear ``saturate`` attribute (they can encode inf or NaN).
FLOAT8_TYPES = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
# Floats from ml_dtypes (all but e8m0, which has no sign, zero or mantissa, are converted by ml_dtypes).
ML_FLOAT_TYPES = tuple(n for n in ("bfloat16",) + FLOAT8_TYPES + ("float4_e2m1fn", "float8_e8m0fnu")
                       if n in ML_TYPES)
# Integers narrower than a byte (one per byte in memory, packed only in ONNX tensors).
SUBBYTE_INT_TYPES = tuple(n for n in ("int4", "uint4", "int2", "uint2") if n in ML_TYPES)


def np_dtype(name) -> np.dtype:
    """The numpy dtype of an IR dtype name (numpy's or ml_dtypes'); a dtype or type passes through."""
    if isinstance(name, str):
        t = ML_TYPES.get(name)
        if t is not None:
            return np.dtype(t)
    return np.dtype(name)


def is_float(name) -> bool:
    """Floating-point (numpy's float16/32/64 or an ml_dtypes float)."""
    d = np_dtype(name)
    return d.kind == "f" or d.name in ML_FLOAT_TYPES


def is_int(name) -> bool:
    """An integer type (numpy's or int4/uint4/int2/uint2); bool is not one."""
    d = np_dtype(name)
    return d.kind in "iu" or d.name in SUBBYTE_INT_TYPES


def int_range(name) -> tuple[int, int]:
    """(min, max) of an integer type."""
    d = np_dtype(name)
    info = ml_dtypes.iinfo(d) if d.name in SUBBYTE_INT_TYPES else np.iinfo(d)
    return int(info.min), int(info.max)


def float_max(name) -> float:
    """The largest finite value of a float type."""
    d = np_dtype(name)
    return float(ml_dtypes.finfo(d).max if d.name in ML_FLOAT_TYPES else np.finfo(d).max)
