"""The GPU suite (run through the device tool: NUMBA_ENABLE_CUDASIM=0 python -m pytest -m gpu).

Every light model, digits_cnn and torchvision networks built and run on the GPU, compared with the
reference; graph replay; several contexts on several threads.
"""

import os
import threading

import numpy as np
import pytest

from conformance import light_cases
from conftest import SHARED

import nbtrt
from nbtrt import reference

pytestmark = pytest.mark.gpu
LIGHT = {c.name: c for c in light_cases()}
DIGITS = os.path.join(SHARED, "models", "digits_cnn.onnx")


def rel_error(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.parametrize("name", sorted(LIGHT))
def test_light_model_on_gpu(name):
    case = LIGHT[name]
    engine = nbtrt.compile(case.model)
    inputs = dict(zip(engine.input_names, case.data_sets[0][0]))
    got = engine.run(inputs)
    want = reference.run(case.model, inputs)
    for k in want:
        assert rel_error(got[k], want[k]) <= 1e-4, k


def test_digits_cnn_top1_equals_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    x, labels = data["images"][data["test_idx"]], data["labels"][data["test_idx"]]
    engine = nbtrt.compile(DIGITS, dims={"N": len(x)})
    got = engine.run({"image": x})["logits"]
    theirs = ort.InferenceSession(DIGITS, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert rel_error(got, reference.run(DIGITS, {"image": x})["logits"]) <= 1e-4
    assert (got.argmax(1) == labels).mean() == (theirs.argmax(1) == labels).mean()


def test_second_run_replays_the_graph(monkeypatch):
    engine = nbtrt.compile(DIGITS, dims={"N": 4})
    ctx = engine.create_context()
    x = np.random.default_rng(0).random((4, 1, 8, 8), np.float32)
    first = ctx.run({"image": x})["logits"]
    from numba.cuda.dispatcher import CUDADispatcher
    monkeypatch.setattr(CUDADispatcher, "__call__", lambda *a, **k: pytest.fail("dispatcher used"))
    monkeypatch.setattr(CUDADispatcher, "__getitem__", lambda *a, **k: pytest.fail("dispatcher used"))
    second = ctx.run({"image": x})["logits"]
    assert ctx.captures == 1
    np.testing.assert_array_equal(first, second)


def test_threads_with_separate_contexts():
    engine = nbtrt.compile(DIGITS, dims={"N": 8})
    rng = np.random.default_rng(0)
    xs = [rng.random((8, 1, 8, 8), np.float32) for _ in range(4)]
    wants = [reference.run(DIGITS, {"image": x})["logits"] for x in xs]
    errors = []

    def worker(i):
        ctx = engine.create_context()
        for _ in range(200):
            got = ctx.run({"image": xs[i]})["logits"]
            if rel_error(got, wants[i]) > 1e-4:
                errors.append(i)
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_gpu_tensor_inputs_and_run_async():
    torch = pytest.importorskip("torch")
    engine = nbtrt.compile(DIGITS, dims={"N": 2})
    x = torch.rand(2, 1, 8, 8, device="cuda")
    want = reference.run(DIGITS, {"image": x.cpu().numpy()})["logits"]
    assert rel_error(engine.run({"image": x})["logits"], want) <= 1e-4
    stream = torch.cuda.Stream()
    ctx = engine.create_context()
    out = ctx.run_async({"image": x}, stream.cuda_stream)["logits"]
    stream.synchronize()
    assert rel_error(torch.as_tensor(out, device="cuda").cpu().numpy(), want) <= 1e-4
    with pytest.raises(nbtrt.InputError, match="non-contiguous"):
        engine.run({"image": torch.rand(1, 8, 8, 2, device="cuda").permute(3, 0, 1, 2)})


TORCHVISION = ["resnet50", "googlenet", "mobilenet_v2"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_network(name, tmp_path):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    model = getattr(tv.models, name)(weights=None, **({"aux_logits": False, "init_weights": True}
                                                     if name == "googlenet" else {})).eval()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(path), opset_version=17, dynamo=False)
    engine = nbtrt.compile(str(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    got = engine.run({engine.input_names[0]: x})
    want = reference.run(str(path), {engine.input_names[0]: x})
    for k in want:
        assert rel_error(got[k], want[k]) <= 1e-4
