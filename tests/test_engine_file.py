"""Engine files: round trips, loading without Numba's compiler, damaged files, arch mismatch.

The simulator tests build digits_cnn once (no compiler involved in the simulator) and run it twice
(the original engine and a loaded one). The GPU tests (``-m gpu``) also load with every compiler
disabled, recompile on an arch mismatch and time the loading of a ResNet-50 engine.
"""

import json
import os
import struct
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from conftest import SHARED

import nbtrt
from nbtrt.codegen.build import Compiled
from nbtrt.errors import ArchMismatchError, EngineFileError, EngineVersionError
from nbtrt.groups import Step
from nbtrt.runtime import codec, serialize
from nbtrt.runtime import engine as engine_module

DIGITS = os.path.join(SHARED, "models", "digits_cnn.onnx")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    engine = nbtrt.compile(DIGITS, dims={"N": 2})
    path = tmp_path_factory.mktemp("engine") / "digits.nbtrt"
    engine.save(path)
    return engine, str(path)


def digits_batch(n: int) -> np.ndarray:
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    return data["images"][data["test_idx"][:n]]


def no_compiler(monkeypatch, jit_too: bool) -> None:
    """Make every way to compile a kernel fail the test (``jit_too``: Numba's dispatcher as well)."""
    import numba.cuda

    from nbtrt.codegen import build
    from nbtrt.runtime import context

    def boom(*args, **kwargs):
        raise AssertionError("a kernel compiler was called while loading or running an engine file")

    for module, name in [(numba.cuda, "compile"), (numba.cuda, "compile_ptx"), (build, "compile_cubin"),
                         (engine_module, "compile_cubin"), (engine_module, "compile_all"),
                         (engine_module, "compile_kernels")]:
        monkeypatch.setattr(module, name, boom)
    if jit_too:
        for module, name in [(numba.cuda, "jit"), (build, "jit"), (context, "jit")]:
            monkeypatch.setattr(module, name, boom)


def same_engine(a, b) -> None:
    assert str(a.graph) == str(b.graph)
    assert a.report.summary() == b.report.summary() and a.report.to_dict() == b.report.to_dict()
    assert a.config == b.config and a.arch == b.arch
    for x, y in zip(a.graph.constants.values(), b.graph.constants.values()):
        assert x.const.dtype == y.const.dtype
        np.testing.assert_array_equal(x.const, y.const)
    for x, y in zip(a.graph.nodes, b.graph.nodes):
        assert repr(x.attrs) == repr(y.attrs)
    assert len(a.kernels) == len(b.kernels)
    for x, y in zip(a.kernels, b.kernels):
        assert (x.node_name, x.kind, x.spec, x.compiled) == (y.node_name, y.kind, y.spec, y.compiled)
        assert [v.name for v in x.args] == [v.name for v in y.args]
    ma, mb = a.memory, b.memory
    assert (ma.arena_bytes, ma.total_bytes) == (mb.arena_bytes, mb.total_bytes)
    assert {r.name: ma.offsets[id(r)] for r in ma.roots} == {r.name: mb.offsets[id(r)] for r in mb.roots}
    for v, w in zip(a.graph.values(), b.graph.values()):
        la, lb = ma.layout(v), mb.layout(w)
        assert (la.root.name, la.offset, la.strides) == (lb.root.name, lb.offset, lb.strides)


# -- round trips ------------------------------------------------------------------------------------
def test_saved_engine_runs_identically_without_a_compiler(built, monkeypatch):
    engine, path = built
    x = digits_batch(2)
    want = engine.run({"image": x})["logits"]
    # the simulator runs the stored sources through its dispatcher, so only the AOT compilers are off
    no_compiler(monkeypatch, jit_too=False)
    loaded = nbtrt.load(path)
    np.testing.assert_array_equal(loaded.run({"image": x})["logits"], want)


def test_serialize_and_load_bytes(built):
    engine, path = built
    data = engine.serialize()
    with open(path, "rb") as f:
        assert f.read() == data  # deterministic: the same engine gives the same bytes
    loaded = nbtrt.load(data)
    same_engine(engine, loaded)
    assert loaded.serialize() == data
    assert loaded.arch is None and all(k.compiled is None for k in loaded.kernels)  # sources only
    header = serialize.open_file(data).header
    assert header["arch"] is None and header["versions"]["numba"] and header["nbtrt"] == nbtrt.__version__
    assert [k["kind"] for k in header["kernels"]] == [k.kind for k in engine.kernels]


def test_attribute_codec_round_trip():
    import ml_dtypes
    attrs = {"i": -3, "big": 2 ** 62, "f": 0.1, "neg0": -0.0, "nan": float("nan"), "inf": float("-inf"),
             "s": "Relu", "none": None, "b": True, "t": (1, (2, "x"), ()), "l": [1, [2.5]],
             "d": {"a": 1, 2: (3,)}, "steps": (Step("Add", ("acc", "in2")), Step("Clip", ("s0",), (("min", 0.0),))),
             "a32": np.arange(6, dtype=np.float32).reshape(2, 3), "a16": np.ones(3, np.float16),
             "bool": np.array([True, False]), "bf16": np.ones(2, ml_dtypes.bfloat16), "empty": np.zeros((0, 4)),
             "scalar": np.float32(1.5), "i64": np.int64(7)}
    back = codec.decode_attr(json.loads(json.dumps(codec.encode_attr(attrs))))
    assert repr(back) == repr(attrs)
    for k in ("a32", "a16", "bool", "bf16", "empty"):
        assert back[k].dtype == attrs[k].dtype and back[k].shape == attrs[k].shape
    assert type(back["scalar"]) is np.float32 and type(back["t"]) is tuple and type(back["l"]) is list
    with pytest.raises(TypeError, match="set"):
        codec.encode_attr({1, 2})
    for bad in ({"t": "pickle", "v": "cos\nsystem\n"}, {"t": "array", "dtype": "object", "shape": [1], "data": ""},
                {"t": "array", "dtype": "float32", "shape": [2], "data": "AAAA"}, {"t": "float", "v": "1e999"}):
        with pytest.raises(codec.FormatError):
            codec.decode_attr(bad)


# -- damaged and hostile files ----------------------------------------------------------------------
def repack(data: bytes, edit) -> bytes:
    """The file with ``edit(graph_doc)`` applied to its graph.json and a valid checksum."""
    f = serialize.open_file(data)
    members = {name: f.read(name) for name in f.names()}
    doc = json.loads(members["graph.json"])
    edit(doc)
    members["graph.json"] = json.dumps(doc).encode()
    return serialize.pack(f.header, members)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


BAD = {
    "empty": (lambda d: b"", EngineFileError, "truncated"),
    "cut in the magic": (lambda d: d[:5], EngineFileError, "truncated"),
    "cut in the prelude": (lambda d: d[:40], EngineFileError, "truncated"),
    "cut in the header": (lambda d: d[:80], EngineFileError, "truncated"),
    "cut in the payload": (lambda d: d[:len(d) // 2], EngineFileError, "truncated"),
    "last byte missing": (lambda d: d[:-1], EngineFileError, "truncated"),
    "bytes appended": (lambda d: d + b"\0", EngineFileError, "after the end"),
    "zip file": (lambda d: b"PK\x03\x04" + d[4:], EngineFileError, "not an nbtrt engine file"),
    "onnx model": (lambda d: open(DIGITS, "rb").read(), EngineFileError, "not an nbtrt engine file"),
    "flipped payload byte": (lambda d: _flip(d, len(d) - 1000), EngineFileError, "checksum"),
    "flipped header byte": (lambda d: _flip(d, 70), EngineFileError, "checksum"),
    "newer format": (lambda d: d[:8] + struct.pack("<I", 2) + d[12:], EngineVersionError, "format version 2"),
    "unknown kernel kind": (lambda d: repack(d, lambda g: _set(g, ["kernels", 0, "kind"], "warp_drive")),
                            EngineFileError, "unknown kind 'warp_drive'"),
    "pickle in an attribute": (lambda d: repack(d, lambda g: _set(g, ["graph", "nodes", 0, "attrs"],
                                                                 {"t": "pickle", "v": "x"})),
                               EngineFileError, "unknown attribute tag 'pickle'"),
    "object constant": (lambda d: repack(d, lambda g: _set(g, ["graph", "constants", 0, "dtype"], "object")),
                        EngineFileError, "unknown dtype 'object'"),
    "constant past the weights": (lambda d: repack(d, lambda g: _set(g, ["graph", "constants", 0, "offset"], 10 ** 9)),
                                  EngineFileError, "outside the weights"),
    "undefined value": (lambda d: repack(d, lambda g: _set(g, ["kernels", 0, "args", 0], "nowhere")),
                        EngineFileError, "malformed"),
    "buffer past the arena": (lambda d: repack(d, lambda g: _set(g, ["memory", "arena_bytes"], 16)),
                              EngineFileError, "outside the arena"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_engine_files(built, tmp_path, case):
    damage, error, message = BAD[case]
    path = tmp_path / "bad.nbtrt"
    path.write_bytes(damage(built[0].serialize()))
    with pytest.raises(error, match=message) as info:
        nbtrt.load(str(path))
    assert str(path) in str(info.value)  # every error names the file


def test_unreadable_sources():
    with pytest.raises(EngineFileError, match="cannot read"):
        nbtrt.load("/nonexistent/engine.nbtrt")
    with pytest.raises(nbtrt.NbtrtError, match="path or the bytes"):
        nbtrt.load(42)


# -- arch -------------------------------------------------------------------------------------------
def fake_compiler(monkeypatch) -> list:
    """Stand-in for compiling on a GPU: records the arch, returns labelled fake cubins."""
    calls = []

    def compile_kernels(specs, arch):
        calls.append(arch)
        return [Compiled(b"cubin " + s.name.encode(), "// ptx", s.name, arch) for s in specs]

    monkeypatch.setattr(engine_module, "compile_kernels", compile_kernels)
    return calls


def test_arch_mismatch_warns_and_recompiles_or_raises_when_strict(built, monkeypatch):
    calls = fake_compiler(monkeypatch)
    monkeypatch.setattr(serialize, "device_arch", lambda: "sm_90")
    source_only = built[0].serialize()
    with pytest.raises(ArchMismatchError, match="no compiled code.*sm_90"):
        nbtrt.load(source_only, strict=True)
    assert calls == []
    with pytest.warns(serialize.ArchMismatchWarning, match="no compiled code.*this GPU is sm_90.*recompiling its 11"):
        on_90 = nbtrt.load(source_only)
    assert calls == ["sm_90"] and on_90.arch == "sm_90"
    assert all(k.compiled.arch == "sm_90" and k.compiled.cubin == b"cubin " + k.spec.name.encode()
               for k in on_90.kernels)
    file_90 = on_90.serialize()
    again = nbtrt.load(file_90, strict=True)  # the same arch: the stored cubins, no compiler
    assert calls == ["sm_90"]
    same_engine(on_90, again)
    monkeypatch.setattr(serialize, "device_arch", lambda: "sm_100")
    with pytest.raises(ArchMismatchError, match="built for sm_90, this GPU is sm_100"):
        nbtrt.load(file_90, strict=True)
    with pytest.warns(serialize.ArchMismatchWarning, match="built for sm_90, this GPU is sm_100"):
        on_100 = nbtrt.load(file_90)
    assert calls == ["sm_90", "sm_100"] and {k.compiled.arch for k in on_100.kernels} == {"sm_100"}


def test_explicit_arch_in_the_simulator_is_a_clear_error():
    with pytest.raises(nbtrt.NbtrtError, match="simulator.*NUMBA_ENABLE_CUDASIM=0.*nbtrt\\[cuda\\]"):
        nbtrt.compile(DIGITS, arch="sm_90")
    with pytest.raises(nbtrt.NbtrtError, match="like 'sm_90'"):
        nbtrt.compile(DIGITS, arch="hopper")


def test_cross_compile_without_a_gpu(tmp_path):
    """With NUMBA_ENABLE_CUDASIM=0 and no GPU: cubins for sm_90 when the CUDA toolkit wheels are
    installed (nbtrt[cuda]), else an error that names the extra."""
    out = tmp_path / "digits_sm90.nbtrt"
    code = ("import sys, nbtrt; e = nbtrt.compile(sys.argv[1], dims={'N': 1}, arch='sm_90'); "
            "e.save(sys.argv[2])")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    r = subprocess.run([sys.executable, "-c", code, DIGITS, str(out)], env=env, capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        assert "pip install 'nbtrt[cuda]'" in r.stderr, r.stderr[-2000:]
        return
    header = serialize.open_file(str(out)).header
    assert header["arch"] == "sm_90" and all(k["cubin_bytes"] > 0 for k in header["kernels"])


# -- on a GPU ---------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_load_runs_without_any_compiler(tmp_path, monkeypatch):
    engine = nbtrt.compile(DIGITS, dims={"N": 4})
    x = digits_batch(4)
    want = engine.run({"image": x})["logits"]
    engine.save(tmp_path / "digits.nbtrt")
    no_compiler(monkeypatch, jit_too=True)
    from numba.cuda.dispatcher import CUDADispatcher
    monkeypatch.setattr(CUDADispatcher, "compile", lambda *a, **k: pytest.fail("Numba compiled a kernel"))
    loaded = nbtrt.load(tmp_path / "digits.nbtrt", strict=True)
    assert loaded.arch == engine.arch and all(k.compiled is not None for k in loaded.kernels)
    np.testing.assert_array_equal(loaded.run({"image": x})["logits"], want)


@pytest.mark.gpu
@pytest.mark.parametrize("stale", ["other arch", "sources only"])
def test_gpu_recompiles_on_arch_mismatch(stale):
    engine = nbtrt.compile(DIGITS, dims={"N": 4})
    x = digits_batch(4)
    want = engine.run({"image": x})["logits"]
    arch = engine.arch
    for k in engine.kernels:
        k.compiled = replace(k.compiled, arch="sm_52") if stale == "other arch" else None
    engine.arch = "sm_52" if stale == "other arch" else None
    with pytest.warns(serialize.ArchMismatchWarning, match=f"this GPU is {arch}"):
        loaded = nbtrt.load(engine.serialize())
    assert loaded.arch == arch and all(k.compiled.arch == arch for k in loaded.kernels)
    np.testing.assert_array_equal(loaded.run({"image": x})["logits"], want)


@pytest.mark.gpu
def test_gpu_explicit_arch_build():
    from nbtrt.runtime import driver
    engine = nbtrt.compile(DIGITS, dims={"N": 2}, arch=driver.arch())
    x = digits_batch(2)
    from nbtrt import reference
    want = reference.run(DIGITS, {"image": x})["logits"]
    np.testing.assert_allclose(engine.run({"image": x})["logits"], want, rtol=1e-4, atol=1e-4)


LOAD_AND_RUN = """
import sys, time, json
t0 = time.perf_counter()
import numpy as np, nbtrt
from nbtrt.runtime import driver
t1 = time.perf_counter()
driver.init()  # CUDA context creation, which any GPU program pays once, timed apart from the load
t1b = time.perf_counter()
engine = nbtrt.load(sys.argv[1], strict=True)
t2 = time.perf_counter()
x = {v.name: np.zeros(v.type.shape, v.type.dtype) for v in engine.graph.inputs}
engine.run(x)
t3 = time.perf_counter()
engine.run(x)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "cuda_init_s": t1b - t1, "load_s": t2 - t1b, "first_run_s": t3 - t2,
                  "run_s": t4 - t3}))
"""


@pytest.mark.gpu
def test_gpu_resnet50_engine_loads_fast(tmp_path):
    import onnx
    model = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")
    t0 = time.perf_counter()
    nbtrt.compile(model).save(tmp_path / "r50.nbtrt")
    build_s = time.perf_counter() - t0
    r = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(tmp_path / "r50.nbtrt")], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    times = json.loads(r.stdout.strip().splitlines()[-1])
    size = os.path.getsize(tmp_path / "r50.nbtrt") / 1e6
    print(f"\nResNet-50 engine: {size:.0f} MB, built in {build_s:.1f} s; fresh process: " +
          ", ".join(f"{k} {v:.3f}" for k, v in times.items()))
    assert times["load_s"] <= 1.0  # issue #5: ResNet-50 reloads in at most 1 s


CROSS = os.environ.get("NBTRT_CROSS_ENGINES")  # a folder of engines built without a GPU (issue #5)


@pytest.mark.gpu
@pytest.mark.skipif(not CROSS, reason="NBTRT_CROSS_ENGINES names no folder of cross-compiled engines")
def test_gpu_runs_engines_cross_compiled_without_a_gpu(monkeypatch):
    """Engines written on a CPU-only machine by `nbtrt build MODEL --arch sm_90 --tuning none -o NAME.nbtrt`
    load here without any compiler and agree with the reference (NAME: digits_cnn or a zoo light model)."""
    import onnx

    from nbtrt import reference
    from nbtrt.runtime import driver
    names = sorted(f[:-len(".nbtrt")] for f in os.listdir(CROSS) if f.endswith(".nbtrt"))
    assert names, f"no .nbtrt files in {CROSS}"
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    no_compiler(monkeypatch, jit_too=True)
    for name in names:
        engine = nbtrt.load(os.path.join(CROSS, name + ".nbtrt"), strict=True)
        assert engine.arch == driver.arch()
        model = DIGITS if name == "digits_cnn" else os.path.join(light, name + ".onnx")
        rng = np.random.default_rng(0)
        x = {v.name: rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in engine.graph.inputs}
        got, want = engine.run(x), reference.run(model, x)
        for k in want:
            err = np.abs(got[k] - want[k]).max() / np.abs(want[k]).max()
            print(f"\ncross-compiled {name}: output {k} rel. error {err:.2e}")
            assert err <= 1e-4, (name, k)
