"""The whole engine in Numba's CUDA simulator: memory plan, generated kernels, execution context."""

import os

import numpy as np
import pytest

from conftest import SHARED

import nbtrt
from nbtrt import reference
from nbtrt.errors import InputError
from nbtrt.runtime.memory import plan_memory

DIGITS = os.path.join(SHARED, "models", "digits_cnn.onnx")


@pytest.fixture(scope="module")
def digits_engine():
    return nbtrt.compile(DIGITS, dims={"N": 2})


def test_digits_cnn_end_to_end(digits_engine):
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    x = data["images"][data["test_idx"][:2]]
    got = digits_engine.run({"image": x})["logits"]
    want = reference.run(DIGITS, {"image": x})["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_bad_inputs(digits_engine):
    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(InputError, match="missing input"):
        digits_engine.run({})
    with pytest.raises(InputError, match="unknown input"):
        digits_engine.run({"image": x, "other": x})
    with pytest.raises(InputError, match="dtype float64"):
        digits_engine.run({"image": x.astype(np.float64)})
    with pytest.raises(InputError, match=r"shape \[3, 1, 8, 8\]"):
        digits_engine.run({"image": np.zeros((3, 1, 8, 8), np.float32)})
    # non-contiguous host arrays are made contiguous
    y = np.asfortranarray(np.random.default_rng(0).random((2, 1, 8, 8), np.float32))
    np.testing.assert_allclose(digits_engine.run({"image": y})["logits"],
                               reference.run(DIGITS, {"image": np.ascontiguousarray(y)})["logits"], rtol=1e-4,
                               atol=1e-4)


def test_memory_plan_reuses_memory():
    graph, _ = nbtrt.plan(DIGITS, nbtrt.BuildConfig(dims={"N": 64}))
    mem = plan_memory(graph)
    assert 0 < mem.arena_bytes < mem.total_bytes
    # roots alive at the same time never overlap
    from nbtrt.runtime.memory import _lifetimes, nbytes
    life = _lifetimes(graph, mem.layouts)
    spans = [(mem.offsets[id(r)], mem.offsets[id(r)] + nbytes(r), *life[id(r)]) for r in mem.roots]
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if a[2] <= b[3] and b[2] <= a[3]:
                assert a[1] <= b[0] or b[1] <= a[0]


def test_no_gpu_without_simulator_is_a_clear_error(monkeypatch):
    from nbtrt.runtime import driver, engine
    monkeypatch.setattr(engine, "simulated", lambda: False)
    monkeypatch.setattr(driver, "_context", None)
    if driver_available():
        pytest.skip("a GPU is present")
    with pytest.raises(nbtrt.NbtrtError, match="no CUDA GPU"):
        nbtrt.compile(DIGITS)


def driver_available():
    try:
        from cuda.bindings import driver as drv
        return drv.cuInit(0)[0] == drv.CUresult.CUDA_SUCCESS
    except Exception:
        return False


class FakeGpuTensor:
    def __init__(self, shape, typestr="<f4", strides=None, ptr=0x7000_0000):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False),
                                         "version": 3, "strides": strides}


def test_gpu_tensor_checks():
    from nbtrt.runtime.context import _gpu_array
    ok = lambda ptr: 0
    assert _gpu_array("x", FakeGpuTensor((2, 3)), "float32", ("N", 3), {}, 0, ok) == 0x7000_0000
    with pytest.raises(InputError, match="on GPU 1, the engine runs on GPU 0"):
        _gpu_array("x", FakeGpuTensor((2, 3)), "float32", ("N", 3), {}, 0, lambda ptr: 1)
    with pytest.raises(InputError, match="no device memory"):
        _gpu_array("x", FakeGpuTensor((2, 3)), "float32", ("N", 3), {}, 0, lambda ptr: None)
    with pytest.raises(InputError, match="non-contiguous"):
        _gpu_array("x", FakeGpuTensor((2, 3), strides=(4, 8)), "float32", ("N", 3), {}, 0, ok)
    with pytest.raises(InputError, match="dtype float16"):
        _gpu_array("x", FakeGpuTensor((2, 3), "<f2"), "float32", ("N", 3), {}, 0, ok)
    with pytest.raises(InputError, match=r"shape \[2, 4\]"):
        _gpu_array("x", FakeGpuTensor((2, 4)), "float32", ("N", 3), {}, 0, ok)


def test_dump_writes_every_kernel_source(tmp_path, monkeypatch):
    from onnx import TensorProto, helper
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                             helper.make_node("Softmax", ["r"], ["y"], name="soft")], "g",
                                            [vi("x")], [vi("y")]), opset_imports=[helper.make_opsetid("", 17)])
    monkeypatch.setenv("NBTRT_DUMP", str(tmp_path))
    engine = nbtrt.compile(m)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == len(engine.kernels) == 2
    assert "# nbtrt" in (tmp_path / files[0]).read_text()


def test_kernel_scratch_is_the_contexts_zeroed_and_saved_with_the_engine(tmp_path):
    """A kernel asking for scratch (split K on the GPU) gets the context's ``work`` and ``flags``
    buffers as its last parameters, flags zero; the request survives an engine file."""
    from onnx import TensorProto, helper

    from nbtrt.codegen.kernel import KernelSpec, Scratch
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])])
    engine = nbtrt.compile(helper.make_model(graph).SerializeToString())
    (k,) = engine.kernels
    source = ("def scratched(out0, in0, work, flags):\n"
              "    i = cuda.grid(1)\n"
              "    if i < 64:\n"
              "        work[i] = max(in0[i], float32(0.0))\n"
              "        out0[i] = work[i] + float32(flags[i % 3])\n")
    k.spec = KernelSpec("scratched", source, ["out0", "in0", "work", "flags"], (1, 1, 1), (64, 1, 1),
                        ["float32", "float32", "float32", "int32"], {}, Scratch(work=64, flags=3))
    assert engine.scratch == Scratch(64, 3) and k.spec.tensor_params == ["out0", "in0"]
    engine.save(tmp_path / "scratch.nbtrt")
    x = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    for e in (engine, nbtrt.load(tmp_path / "scratch.nbtrt")):
        assert e.kernels[0].spec.scratch == Scratch(64, 3) and [v.name for v in e.kernels[0].args] == ["y", "x"]
        for _ in range(2):
            np.testing.assert_array_equal(e.run({"x": x})["y"], np.maximum(x, 0))
