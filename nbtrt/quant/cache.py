"""The calibration table and its cache file.

A cache is a text file (UTF-8) that a person can read and diff::

    # nbtrt calibration cache v1
    # nbtrt: 0.1.0
    # model: 3f2a9c0d1e4b5a67
    # calibrator: entropy
    image: 0.007874015748031496
    /2/Relu_output_0: 0.03601174224124812

Header lines start with ``#`` and hold ``key: value``; then one ``tensor_name: scale`` line per
activation, the scale written with ``repr`` (the shortest text that reads back to the same float;
``float.hex`` text is read too). A name that is empty, starts with ``"`` or ``#``, has surrounding
spaces or a line break is written as a JSON string. The scale is the text after the last ``": "``.

The model fingerprint (:func:`fingerprint`) hashes the graph's structure (inputs with names, dtypes
and shapes, every node's op, attributes and the names and types of what it reads and writes, the
outputs) and its weights. It is computed on the graph that was calibrated, so calibrate the graph as
parsed (before shapes are bound or passes run) for a cache that serves every build of the model.

:func:`write_cache` is atomic: it writes a temporary file in the same folder and ``os.replace``\\ s it
into place, so an interrupted calibration leaves the old cache (or none), never half of a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from ..errors import CalibrationCacheError, CalibrationCacheMismatch
from ..ir import Graph

FORMAT = "nbtrt calibration cache v1"


class CalibrationTable(Mapping):
    """Tensor name -> int8 scale (``threshold / 127``), with the calibrator and model fingerprint."""

    def __init__(self, scales: dict, calibrator: str, fingerprint: str, version: str | None = None):
        self.scales = {str(k): float(v) for k, v in scales.items()}
        self.calibrator = calibrator
        self.fingerprint = fingerprint
        self.version = version

    def __getitem__(self, name: str) -> float:
        return self.scales[name]

    def __iter__(self):
        return iter(self.scales)

    def __len__(self) -> int:
        return len(self.scales)

    def threshold(self, name: str) -> float:
        """The clipping threshold of ``name``: ``127 * scale``."""
        return self.scales[name] * 127.0

    def __eq__(self, other) -> bool:
        return (isinstance(other, CalibrationTable) and self.scales == other.scales
                and self.calibrator == other.calibrator and self.fingerprint == other.fingerprint)

    __hash__ = None

    def __repr__(self) -> str:
        return (f"CalibrationTable({len(self.scales)} tensors, calibrator={self.calibrator!r}, "
                f"model={self.fingerprint!r})")


def fingerprint(graph: Graph) -> str:
    """A 16-hex-digit hash of the graph's structure, tensor names and types, and weights."""
    h = hashlib.sha256()
    for v in graph.inputs:
        h.update(f"input {v.name!r} {v.type}\n".encode())
    for v in graph.constants.values():
        h.update(f"const {v.name!r} {v.type}\n".encode())
        h.update(np.ascontiguousarray(v.const).tobytes())
    for node in graph.nodes:
        ins = ",".join("_" if v is None else repr(v.name) for v in node.inputs)
        outs = ",".join(f"{v.name!r}:{v.type}" for v in node.outputs)
        h.update(f"node {node.domain}.{node.op}({ins})->({outs})\n".encode())
        for key in sorted(node.attrs):
            h.update(f"  {key}=".encode())
            _hash_attr(h, node.attrs[key])
    h.update(("outputs " + ",".join(repr(v.name) for v in graph.outputs)).encode())
    return h.hexdigest()[:16]


def _hash_attr(h, value) -> None:
    if isinstance(value, np.ndarray):
        h.update(f"array{value.dtype.name}{list(value.shape)}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Graph):
        h.update(f"graph {fingerprint(value)}".encode())
    elif isinstance(value, (tuple, list)):
        h.update(b"(")
        for item in value:
            _hash_attr(h, item)
            h.update(b",")
        h.update(b")")
    else:
        h.update(repr(value).encode())


def write_cache(path, table: CalibrationTable) -> None:
    """Write ``table`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    from .. import __version__
    path = os.fspath(path)
    lines = [f"# {FORMAT}", f"# nbtrt: {__version__}", f"# model: {table.fingerprint}",
             f"# calibrator: {table.calibrator}"]
    lines += [f"{_quote(name)}: {scale!r}" for name, scale in table.scales.items()]
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_cache(path) -> CalibrationTable:
    """Read a cache written by :func:`write_cache`; a damaged or foreign file raises CalibrationCacheError."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise CalibrationCacheError(f"{path}: not a calibration cache (not UTF-8 text)") from None
    except OSError as e:
        raise CalibrationCacheError(f"{path}: cannot read the calibration cache ({e.strerror})") from None
    if not lines or lines[0] != f"# {FORMAT}":
        found = repr(lines[0][:60]) if lines else "an empty file"
        raise CalibrationCacheError(f"{path}: not an nbtrt calibration cache (first line should be "
                                    f"'# {FORMAT}', found {found})")
    header, scales = {}, {}
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep:
                header[key] = value
        elif line.strip():
            name, scale = _parse_entry(path, number, line)
            if name in scales:
                raise CalibrationCacheError(f"{path}:{number}: tensor {name!r} is listed twice")
            scales[name] = scale
    for key in ("model", "calibrator"):
        if key not in header:
            raise CalibrationCacheError(f"{path}: the header has no '# {key}: ...' line")
    return CalibrationTable(scales, header["calibrator"], header["model"], header.get("nbtrt"))


def _parse_entry(path: str, number: int, line: str) -> tuple[str, float]:
    name, sep, text = line.rpartition(": ")
    if not sep:
        raise CalibrationCacheError(f"{path}:{number}: expected 'tensor_name: scale', found {line[:80]!r}")
    if name.startswith('"'):
        try:
            name = json.loads(name)
        except ValueError:
            raise CalibrationCacheError(f"{path}:{number}: badly quoted tensor name {name[:80]!r}") from None
    try:
        scale = float.fromhex(text) if text.strip().lower().startswith(("0x", "-0x")) else float(text)
    except ValueError:
        raise CalibrationCacheError(f"{path}:{number}: the scale of {name!r} is not a number: {text[:40]!r}") from None
    if not np.isfinite(scale) or scale <= 0:
        raise CalibrationCacheError(f"{path}:{number}: the scale of {name!r} must be positive and finite, "
                                    f"found {text!r}")
    return name, scale


def _quote(name: str) -> str:
    plain = name == name.strip() and name.splitlines() == [name] and not name.startswith(('"', "#"))
    return name if plain else json.dumps(name)


def check_cache(path, table: CalibrationTable, model: str, names: list[str], calibrator: str) -> None:
    """Raise CalibrationCacheMismatch unless ``table`` was made for this model and calibrator."""
    if table.fingerprint != model:
        missing = [n for n in names if n not in table.scales]
        known = set(names)
        unknown = [n for n in table.scales if n not in known]
        if missing or unknown:
            parts = [f"{len(missing)} tensor(s) of the model are not in the cache: {_some(missing)}"] if missing else []
            parts += [f"{len(unknown)} tensor(s) in the cache are not in the model: {_some(unknown)}"] if unknown else []
            detail = "; ".join(parts)
        else:
            detail = "the tensor names agree, but the structure, shapes or weights differ"
        raise CalibrationCacheMismatch(f"{path}: calibration cache made for another model (model {table.fingerprint}, "
                                       f"this one is {model}): {detail}. Delete the cache to calibrate again.",
                                       missing, unknown)
    if table.calibrator != calibrator:
        raise CalibrationCacheMismatch(f"{path}: calibration cache made with calibrator {table.calibrator}, not "
                                       f"{calibrator}: ask for that calibrator, or delete the cache to calibrate again")


def _some(names: list[str], most: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")
