"""The runtime on a real GPU with element-wise kernels only: ahead-of-time cubins, packed launches,
concat slices, views, CUDA-graph capture and replay."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import nbtrt
from nbtrt import reference

pytestmark = pytest.mark.gpu


def eltwise_model():
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    nodes = [helper.make_node("Mul", ["x", "y"], ["m"], name="mul"),
             helper.make_node("Add", ["m", "y"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
             helper.make_node("Concat", ["r", "s"], ["c"], name="cat", axis=1),
             helper.make_node("Flatten", ["c"], ["f"], name="flat", axis=1),
             helper.make_node("Tanh", ["f"], ["out"], name="tanh")]
    g = helper.make_graph(nodes, "g", [vi("x", [2, 3, 5, 7]), vi("y", [3, 1, 1])], [vi("out", None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_eltwise_engine_capture_and_replay():
    model = eltwise_model()
    engine = nbtrt.compile(model)
    assert [k.kind for k in engine.kernels] == ["eltwise"] * 3
    rng = np.random.default_rng(0)
    ctx = engine.create_context()
    for _ in range(3):
        feeds = {"x": rng.standard_normal((2, 3, 5, 7)).astype(np.float32),
                 "y": rng.standard_normal((3, 1, 1)).astype(np.float32)}
        got = ctx.run(feeds)["out"]
        np.testing.assert_allclose(got, reference.run(model, feeds)["out"], rtol=1e-6, atol=1e-6)
    assert ctx.captures == 1


def test_gpu_inputs_read_in_place_and_rebound():
    torch = pytest.importorskip("torch")
    model = eltwise_model()
    engine = nbtrt.compile(model)
    ctx = engine.create_context()
    for i in range(4):
        x = torch.randn(2, 3, 5, 7, device="cuda")
        y = torch.randn(3, 1, 1, device="cuda")
        feeds = {"x": x, "y": y} if i != 2 else {"x": x.cpu().numpy(), "y": y}
        want = reference.run(model, {"x": x.cpu().numpy(), "y": y.cpu().numpy()})["out"]
        np.testing.assert_allclose(ctx.run(feeds)["out"], want, rtol=1e-6, atol=1e-6)
    stream = torch.cuda.Stream()
    out = ctx.run_async({"x": x, "y": y}, stream.cuda_stream)["out"]
    stream.synchronize()
    np.testing.assert_allclose(torch.as_tensor(out, device="cuda").cpu().numpy(), want, rtol=1e-6, atol=1e-6)
    assert ctx.captures == 1
    with pytest.raises(nbtrt.InputError, match="dtype float64"):
        ctx.run({"x": x.double(), "y": y})
