"""Checking the inputs a caller passes against a graph's declared inputs.

Names must match exactly (every input given, none unknown), dtypes must be equal (no silent casts) and
shapes must agree with the declared ones: static dims equal, each symbolic dim (e.g. a dynamic batch
``N``) bound to one size across all inputs.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .ir import Graph


def check_inputs(graph: Graph, feeds: dict) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Return (contiguous numpy arrays by input name, symbolic dim bindings)."""
    check_names(graph, feeds)
    arrays, dims = {}, {}
    for v in graph.inputs:
        arrays[v.name] = host_array(v, feeds[v.name], dims)
    return arrays, dims


def check_names(graph: Graph, feeds) -> None:
    """Every graph input given, no unknown name."""
    if not isinstance(feeds, dict):
        raise InputError(f"inputs must be a dict of input name to array, got {type(feeds).__name__}")
    expected = [v.name for v in graph.inputs]
    unknown = sorted(set(feeds) - set(expected))
    missing = [n for n in expected if n not in feeds]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown input(s) {', '.join(map(repr, unknown))}")
        if missing:
            parts.append(f"missing input(s) {', '.join(map(repr, missing))}")
        raise InputError("; ".join(parts) + f" (the model's inputs: {', '.join(map(repr, expected))})")


def host_array(v, arr, dims: dict[str, int]) -> np.ndarray:
    """``arr`` as a contiguous numpy array matching input ``v`` (dtype equal, shape agreeing)."""
    if not isinstance(arr, np.ndarray):
        try:
            arr = np.asarray(arr)
        except Exception as e:
            raise InputError(f"input {v.name!r}: cannot convert {type(arr).__name__} to an array ({e})") from None
    if arr.dtype.name != v.type.dtype:
        raise InputError(f"input {v.name!r} has dtype {arr.dtype.name}, the model expects {v.type.dtype}")
    check_shape(v.name, arr.shape, v.type.shape, dims)
    return np.ascontiguousarray(arr)


def check_shape(name: str, shape, declared, dims: dict[str, int]) -> None:
    """Check ``shape`` against ``declared`` (with symbolic dims), binding symbols in ``dims``."""
    if declared is None:
        return
    if len(shape) != len(declared):
        raise InputError(f"input {name!r} has shape {list(shape)}, the model expects rank {len(declared)} "
                         f"{_fmt(declared)}")
    for axis, (got, want) in enumerate(zip(shape, declared)):
        if isinstance(want, int) and got != want:
            raise InputError(f"input {name!r} has shape {list(shape)}, the model expects {_fmt(declared)} "
                             f"(dim {axis} must be {want})")
        if isinstance(want, str):
            if dims.setdefault(want, got) != got:
                raise InputError(f"input {name!r}: dim {axis} ({want}) is {got}, but another input bound "
                                 f"{want} = {dims[want]}")


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
