"""The timing cache: the best tactic per kernel signature, kept in a JSON file across builds and models.

A signature hashes what decides a kernel's speed and nothing else: its kind, the fused group's
attributes (without node names), every tensor's dtype, shape, strides and offset, the precision, the
GPU arch and the nbtrt and Numba versions. Two layers of one network with the same shapes share
an entry, and so do layers of two networks.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np


def _plain(value):
    """A JSON-able, name-free form of an attribute value."""
    if isinstance(value, np.ndarray):
        return {"array": list(value.shape), "dtype": value.dtype.name, "sha": hashlib.sha1(value.tobytes()).hexdigest()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items()) if k != "sources"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def signature(kind: str, node, outputs, inputs, precision: str, arch: str) -> str:
    import numba

    from .. import __version__
    args = [None if a is None else [a.dtype, a.shape, a.strides, a.offset] for a in list(outputs) + list(inputs)]
    consts = [v is not None and v.is_constant for v in node.inputs]
    text = json.dumps([kind, node.op, _plain(node.attrs), args, consts, precision, arch, __version__,
                       numba.__version__], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


class TimingCache:
    """signature -> {"tactic": dict, "ms": float}; ``path`` None keeps it in memory only."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.entries = json.load(f).get("entries", {})

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, tactic: dict, ms: float) -> None:
        self.entries[key] = {"tactic": tactic, "ms": ms}

    def save(self) -> None:
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"format": 1, "entries": self.entries}, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
