"""Engine files: an engine saved with everything needed to run it again without recompiling.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"\\x89NBTRT\\r\\n"  (the \\x89 and \\r\\n catch text-mode and 7-bit damage)
    8       4     format version (uint32), FORMAT_VERSION
    12      4     flags (uint32), 0
    16      32    sha256 of every byte from offset 48 to the end
    48      8     header length H (uint64)
    56      8     payload length P (uint64)
    64      H     header: JSON (UTF-8), readable without decoding the payload
    64+H    P     payload: a zip archive

The header holds ``format``, ``nbtrt``, ``versions`` (python, numpy, numba, numba-cuda, cuda-bindings,
cuda-core, llvmlite), ``arch`` (the GPU arch the cubins are for; null for a simulator build, which
carries kernel sources only), ``config`` (the BuildConfig), ``report`` (the build report), ``tuning``,
``inputs``/``outputs`` (name, dtype, shape), ``memory`` (arena peak and sum of buffers), ``weights_bytes``
and ``kernels`` (a display table: name, kind, ONNX nodes, grid, block, tactic, entry, code sizes).

The payload's members: ``graph.json`` (the optimized graph, memory plan and kernel records, see
``codec.py``: nodes with attributes, constants as rows into ``weights.bin``, and per kernel its node,
kind, entry function, parameters with the value behind each, dtypes, grid, block, tactic, entry symbol,
arch and member names), ``weights.bin`` (the constants' raw bytes in their final precision, in logical
row-major order: the memory plan's strides, e.g. OHWI conv weights, are applied when they are loaded
onto the device),
and per kernel ``kernels/NNN_<name>.py`` (generated source), ``.cubin`` and ``.ptx`` (when compiled).
Plugin nodes keep their plugin's key and ``serialize()`` state in ``graph.json``; loading recreates
them with the registered plugin's ``deserialize`` (an unregistered one raises PluginNotFoundError);
the header's ``plugins`` lists them.
Zip tools skip the prelude: ``unzip -l ENGINE`` lists the members, ``nbtrt inspect`` summarises them.

Loading parses JSON and raw arrays only, nothing is unpickled or executed, and it never calls Numba's
compiler when the file's arch is the GPU's: contexts load the cubins with the driver. A file for
another arch (or a simulator build, on a GPU) warns and recompiles from its stored sources, or raises
:class:`ArchMismatchError` with ``strict=True``. In the simulator the stored sources run. Note that an
engine file *is* code, like any compiled library: its kernels (cubins, and in the simulator or on
recompiling their Python sources) run when the engine runs, so load only engines you trust; the
checksum catches damage, not tampering.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import struct
import warnings
import zipfile
import zlib
from dataclasses import fields

from ..codegen.build import Compiled
from ..codegen.kernel import SCRATCH, KernelSpec, Scratch
from ..codegen.numba_env import simulated
from ..config import BuildConfig
from ..errors import ArchMismatchError, EngineFileError, EngineVersionError, NbtrtError, PluginError, PluginNotFoundError
from ..groups import kernel_kind
from ..plugins import PLUGIN_OP, describe
from ..report import BuildReport, Decision
from . import codec
from . import engine as engine_module
from .engine import Engine, Kernel, kernel_table

MAGIC = b"\x89NBTRT\r\n"
FORMAT_VERSION = 1
PRELUDE = struct.Struct("<8sII32sQQ")  # magic, version, flags, sha256, header length, payload length
_SUMMED = 48                           # the checksum covers bytes [48:]
_DATE = (1980, 1, 1, 0, 0, 0)          # fixed zip timestamps: the same engine gives the same bytes


class ArchMismatchWarning(UserWarning):
    """An engine file for another GPU arch was loaded; its kernels were recompiled."""


# -- writing ----------------------------------------------------------------------------------------
def serialize(engine: Engine) -> bytes:
    """The engine file's bytes."""
    blob = bytearray()
    try:
        graph_doc = codec.encode_graph(engine.graph, blob)
    except TypeError as e:
        raise NbtrtError(f"cannot serialize the engine: {e}") from None
    members, records = {}, []
    for i, k in enumerate(engine.kernels):
        records.append(_kernel_record(i, k, members))
    doc = {"graph": graph_doc, "memory": codec.encode_memory(engine.memory, engine.graph), "kernels": records}
    members = {"graph.json": json.dumps(doc).encode(), "weights.bin": blob, **members}
    return pack(_header(engine, len(blob)), members)


def save(engine: Engine, path) -> None:
    """Write the engine file to ``path`` (atomically: a temporary file is renamed)."""
    data = serialize(engine)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise NbtrtError(f"cannot write the engine file {os.fspath(path)!r} ({e.strerror or e})") from None


def _kernel_record(i: int, k: Kernel, members: dict) -> dict:
    s, stem = k.spec, f"kernels/{i:03d}_{k.spec.name}"
    members[stem + ".py"] = s.source.encode()
    record = {"node": k.node_name, "kind": k.kind, "name": s.name, "params": list(s.params),
              "args": [v.name for v in k.args], "param_dtypes": list(s.param_dtypes), "grid": list(s.grid),
              "block": list(s.block), "tactic": codec.encode_attr(dict(s.tactic)), "source": stem + ".py",
              "scratch": [s.scratch.work, s.scratch.flags] if s.scratch else None,
              "entry": None, "arch": None, "cubin": None, "ptx": None}
    if k.compiled is not None:
        c = k.compiled
        members[stem + ".cubin"] = bytes(c.cubin)
        record.update(entry=c.entry, arch=c.arch, cubin=stem + ".cubin")
        if c.ptx:
            members[stem + ".ptx"] = c.ptx.encode() if isinstance(c.ptx, str) else bytes(c.ptx)
            record["ptx"] = stem + ".ptx"
    return record


def _header(engine: Engine, weights_bytes: int) -> dict:
    from .. import __version__
    table = kernel_table(engine)
    for row, k in zip(table, engine.kernels):
        c = k.compiled
        row.update(entry=c.entry if c else None, cubin_bytes=len(c.cubin) if c else 0,
                   ptx_bytes=len(c.ptx) if c and c.ptx else 0, source_lines=k.spec.source.count("\n"))
    return _plain({
        "format": FORMAT_VERSION, "nbtrt": __version__, "versions": versions(), "arch": engine.arch,
        "config": {f.name: getattr(engine.config, f.name) for f in fields(engine.config)},
        "report": engine.report.to_dict(), "tuning": engine.tuning,
        "inputs": [codec.encode_value(v) for v in engine.graph.inputs],
        "outputs": [codec.encode_value(v) for v in engine.graph.outputs],
        "memory": {"arena_bytes": engine.memory.arena_bytes, "total_bytes": engine.memory.total_bytes},
        "weights_bytes": weights_bytes, "kernels": table, "plugins": plugin_table(engine.graph)})


def plugin_table(graph) -> list[dict]:
    """The plugin nodes, for display: node name and plugin (op, domain, version)."""
    return [{"node": n.name, "plugin": describe(*n.attrs["plugin"].key())} for n in graph.nodes if n.op == PLUGIN_OP]


def _plain(x):
    """``x`` as plain JSON data (tuples and sets to lists, unknown objects to strings): for display."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(_plain(v) for v in x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "item"):
        return x.item() if getattr(x, "size", 1) == 1 else str(x)
    return str(x)


def versions() -> dict:
    """The versions of the software that builds (or loads) engines."""
    from importlib import metadata
    import numpy as np
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("numba", "numba-cuda", "cuda-bindings", "cuda-core", "llvmlite"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def pack(header: dict, members: dict[str, bytes]) -> bytes:
    """The container: prelude, header JSON and a zip of ``members`` (deterministic bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, _DATE)
            stored = name.endswith((".bin", ".cubin"))
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    head, payload = json.dumps(header, allow_nan=False).encode(), buf.getvalue()
    lengths = struct.pack("<QQ", len(head), len(payload))
    digest = hashlib.sha256(lengths)
    digest.update(head)
    digest.update(payload)
    return PRELUDE.pack(MAGIC, FORMAT_VERSION, 0, digest.digest(), len(head), len(payload)) + head + payload


# -- reading ----------------------------------------------------------------------------------------
class EngineFile:
    """A checked engine file: its header, and its payload members by name (nothing decoded yet)."""

    def __init__(self, label: str, version: int, header: dict, archive: zipfile.ZipFile):
        self.label, self.version, self.header, self._zip = label, version, header, archive

    def error(self, message: str, cls=EngineFileError) -> EngineFileError:
        return cls(f"{self.label}: {message}")

    def names(self) -> list[str]:
        return self._zip.namelist()

    def read(self, name: str) -> bytes:
        if not isinstance(name, str):
            raise self.error(f"bad member name {name!r}")
        try:
            return self._zip.read(name)
        except KeyError:
            raise self.error(f"damaged: member {name!r} is missing") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
            raise self.error(f"damaged: member {name!r} cannot be read ({e})") from None

    def text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"damaged: member {name!r} is not UTF-8 text") from None


def open_file(source) -> EngineFile:
    """Read and check an engine file (a path, or the bytes): magic, version, lengths, checksum, header."""
    label, data = _read_source(source)
    view = memoryview(data)
    if len(data) < 8 or bytes(view[:8]) != MAGIC:
        if len(data) < 8 and MAGIC.startswith(bytes(data)):
            raise EngineFileError(f"{label}: truncated ({len(data)} bytes)")
        hint = " (an ONNX model? build an engine from it with `nbtrt build` or nbtrt.compile)" \
            if data[:1] == b"\x08" else ""  # an ONNX ModelProto starts with field 1, ir_version
        raise EngineFileError(f"{label}: not an nbtrt engine file (it starts with {bytes(view[:8])!r}, "
                              f"engine files with {MAGIC!r}){hint}")
    if len(data) < 12:
        raise EngineFileError(f"{label}: truncated ({len(data)} bytes)")
    version = struct.unpack_from("<I", data, 8)[0]
    if version > FORMAT_VERSION or version == 0:
        raise EngineVersionError(f"{label}: engine format version {version}; this nbtrt reads versions 1 to "
                                 f"{FORMAT_VERSION}: load it with a newer nbtrt, or rebuild the engine")
    if len(data) < PRELUDE.size:
        raise EngineFileError(f"{label}: truncated ({len(data)} bytes)")
    _, _, _, digest, head_len, payload_len = PRELUDE.unpack_from(data, 0)
    size = PRELUDE.size + head_len + payload_len
    if len(data) != size:
        what = "truncated" if len(data) < size else "damaged: unexpected bytes after the end"
        raise EngineFileError(f"{label}: {what} ({len(data)} bytes, the file says {size})")
    if hashlib.sha256(view[_SUMMED:]).digest() != digest:
        raise EngineFileError(f"{label}: checksum mismatch, the file is damaged")
    try:
        header = json.loads(bytes(view[PRELUDE.size:PRELUDE.size + head_len]))
        archive = zipfile.ZipFile(io.BytesIO(data))  # zipfile skips the prelude and header itself
    except (ValueError, zipfile.BadZipFile) as e:
        raise EngineFileError(f"{label}: malformed engine file ({e})") from None
    if not isinstance(header, dict) or header.get("format") != version:
        raise EngineFileError(f"{label}: malformed engine file (bad header)")
    return EngineFile(label, version, header, archive)


def _read_source(source) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "engine bytes", bytes(source)
    if isinstance(source, (str, os.PathLike)):
        label = f"engine file {os.fspath(source)!r}"
        try:
            with open(source, "rb") as f:
                return label, f.read()
        except OSError as e:
            raise EngineFileError(f"{label}: cannot read it ({e.strerror or e})") from None
    raise NbtrtError(f"load() takes a path or the bytes of an engine file, not a {type(source).__name__}")


def load(source, strict: bool = False) -> Engine:
    """Rebuild the :class:`Engine` of an engine file (see the module docstring)."""
    f = open_file(source)
    try:
        engine = _decode(f)
    except EngineFileError:
        raise
    except PluginNotFoundError as e:
        raise PluginNotFoundError(e.unsupported, f"{f.label}: the engine needs a plugin that is not registered "
                                  "(register it before loading)") from None
    except PluginError as e:
        raise PluginError(f"{f.label}: {e}") from e
    except (codec.FormatError, KeyError, TypeError, ValueError, IndexError, AttributeError, NbtrtError) as e:
        raise f.error(f"malformed engine file ({type(e).__name__}: {e})") from None
    _ensure_code(engine, f.label, strict)
    return engine


def _decode(f: EngineFile) -> Engine:
    doc = json.loads(f.read("graph.json"))
    blob = bytearray(f.read("weights.bin"))
    graph = codec.decode_graph(doc["graph"], blob)
    memory = codec.decode_memory(doc["memory"], graph)
    nodes = {n.name: n for n in graph.nodes}
    values = {v.name: v for v in graph.values()}
    kernels = [_decode_kernel(f, i, r, nodes, values) for i, r in enumerate(codec.as_list(doc["kernels"]))]
    h = f.header
    report = h["report"]
    report = BuildReport([Decision(d["pass_name"], d["rule"], tuple(d["nodes"]), d["applied"], d.get("reason"))
                          for d in report["decisions"]], report["kernels"], report["views"], report["nodes_before"])
    engine = Engine(graph, report, memory, kernels, _config(h["config"]), h["arch"])
    engine.tuning = h.get("tuning")
    return engine


def _decode_kernel(f: EngineFile, i: int, r: dict, nodes: dict, values: dict) -> Kernel:
    from ..codegen import FAMILIES
    if r["kind"] not in FAMILIES:
        raise f.error(f"kernel {i} ({r.get('node')!r}) has an unknown kind {r['kind']!r} (this nbtrt knows "
                      f"{', '.join(sorted(FAMILIES))}): written by another nbtrt version?")
    node = nodes.get(r["node"])
    if node is None or kernel_kind(node) != r["kind"]:
        raise f.error(f"kernel {i} names node {r['node']!r}, which is no {r['kind']} node of the graph")
    grid, block = tuple(r["grid"]), tuple(r["block"])
    if not (len(grid) == len(block) == 3 and all(isinstance(x, int) and x > 0 for x in grid + block)):
        raise f.error(f"kernel {i} has a bad launch shape {grid} x {block}")
    scratch = r.get("scratch")
    if scratch is not None:
        if not (isinstance(scratch, list) and len(scratch) == 2
                and all(isinstance(n, int) and n >= 0 for n in scratch)):
            raise f.error(f"kernel {i} has a bad scratch size {scratch!r}")
        scratch = Scratch(*scratch)
    trailing = [dtype for _, dtype in SCRATCH] if scratch else []
    if not (isinstance(r["name"], str) and r["name"].isidentifier()
            and len(r["params"]) == len(r["args"]) + len(trailing) == len(r["param_dtypes"])
            and r["param_dtypes"][len(r["args"]):] == trailing):
        raise f.error(f"kernel {i} has a malformed signature")
    spec = KernelSpec(r["name"], f.text(r["source"]), list(r["params"]), grid, block, list(r["param_dtypes"]),
                      codec.decode_attr(r["tactic"]), scratch)
    args = [values[name] for name in r["args"]]
    if [v.type.dtype for v in args] != spec.param_dtypes[:len(args)]:
        raise f.error(f"kernel {i} has parameter dtypes that do not match its tensors")
    compiled = None
    if r["cubin"] is not None:
        ptx = f.text(r["ptx"]) if r["ptx"] else ""
        compiled = Compiled(f.read(r["cubin"]), ptx, str(r["entry"]), str(r["arch"]))
    return Kernel(r["node"], r["kind"], spec, args, compiled)


def _config(doc: dict) -> BuildConfig:
    known = {fl.name for fl in fields(BuildConfig)}
    kwargs = {k: v for k, v in doc.items() if k in known}
    if "input_shapes" in kwargs:
        kwargs["input_shapes"] = {k: tuple(v) for k, v in kwargs["input_shapes"].items()}
    if "disabled_passes" in kwargs:
        kwargs["disabled_passes"] = frozenset(kwargs["disabled_passes"])
    return BuildConfig(**kwargs)


def device_arch() -> str | None:
    """The GPU's arch, or None in the simulator (which runs kernel sources)."""
    if simulated():
        return None
    from . import driver
    return driver.arch()


def _ensure_code(engine: Engine, label: str, strict: bool) -> None:
    """Make sure every kernel has a cubin for this GPU: recompile from the sources if not."""
    device = device_arch()
    if device is None:
        return
    stale = [k for k in engine.kernels if k.compiled is None or k.compiled.arch != device]
    if engine.arch == device and not stale:
        return
    what = f"was built for {engine.arch}" if engine.arch else "has no compiled code (it was built in the simulator)"
    message = f"{label}: the engine {what}, this GPU is {device}"
    if strict:
        raise ArchMismatchError(f"{message}; rebuild it for {device}, or load with strict=False to recompile")
    warnings.warn(f"{message}; recompiling its {len(stale)} kernels from the stored sources", ArchMismatchWarning,
                  stacklevel=4)  # the caller of nbtrt.load
    for k, compiled in zip(stale, engine_module.compile_kernels([k.spec for k in stale], device)):
        k.compiled = compiled
    engine.arch = device
