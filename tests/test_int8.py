"""precision="int8" (issue 7, first step: int8 math, fp16 storage): the precision pass's int8 decisions
(passes/int8.py), nbtrt.compile's scales (calibration, cache, the graph's own Q/DQ scales) and its
errors, and digits_cnn end to end in the simulator (a GPU test runs all 597 test images)."""

import os

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nbtrt
from conftest import SHARED
from nbtrt import quant, reference
from nbtrt.errors import CalibrationDataError, CalibrationError, NbtrtError
from nbtrt.quant.fake import channel_scales

MODELS = os.path.join(SHARED, "models")
DIGITS = os.path.join(MODELS, "digits_cnn.onnx")
needs_digits = pytest.mark.skipif(not os.path.exists(DIGITS), reason="needs ../shared/models")


def small_model(channels=3):
    """x[N,3,6,6] -> conv1+relu -> conv2+relu -> maxpool -> flatten -> gemm(transB) -> y[N,5]."""
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((4, channels, 3, 3)), "b1": rng.standard_normal(4),
             "w2": rng.standard_normal((6, 4, 1, 1)), "wf": rng.standard_normal((5, 54)), "bf": rng.standard_normal(5)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             ["N", channels, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), inits


def kernel(graph, name):
    return next(n for n in graph.nodes if n.name == name)


def test_pass_int8_weights_multipliers_and_reasons():
    model, inits = small_model()
    graph = nbtrt.parse(model)
    graph.quant_scales = {"x": 0.05, "f": 0.1}  # r1 (conv2's input) has no scale
    graph.explicit_quantization = True  # as from Q/DQ nodes: conv1 computes in int8 although it reads the input
    graph, report = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": 2}))
    conv1, conv2, fc = kernel(graph, "conv1"), kernel(graph, "conv2"), kernel(graph, "fc")
    for node, w, axis, s_in in ((conv1, inits["w1"], 0, 0.05), (fc, inits["wf"], 0, 0.1)):
        s_w = channel_scales(w.astype(np.float32), axis)
        assert node.attrs["math"] == "int8" and node.attrs["int8_scale"] == s_in
        assert node.inputs[1].const.dtype == np.int8
        assert np.array_equal(node.inputs[1].const, quant.quantize(w.astype(np.float32), s_w))
        mult = node.inputs[node.attrs["int8_multiplier"]].const
        assert mult.dtype == np.float32 and mult.shape == (w.shape[0],)
        np.testing.assert_allclose(mult, np.float32(s_in) * s_w.reshape(-1), rtol=1e-7)
        assert report.precisions[node.name][0] == "int8" and "int8 weights" in report.precisions[node.name][1]
    assert conv2.attrs["math"] == "fp16" and conv2.inputs[1].const.dtype == np.float16
    assert report.precisions["conv2"] == ("fp16", "no calibration scale for its input 'r1'")
    assert report.precisions["pool"] == ("fp16", "pool kernels have no int8 form yet")
    assert not {"w1", "w2", "wf"} & set(graph.constants)  # the float32 weights are gone
    # activations float16 between kernels, the network's input and output as declared
    assert conv1.outputs[0].type.dtype == "float16" and fc.outputs[0].type.dtype == "float32"
    assert conv1.inputs[0].type.dtype == "float32"
    lines = report.summary()
    assert "precision: fp16 2, int8 2" in lines and "fp16: conv2: no calibration scale for its input 'r1'" in lines


def test_int8_engine_small_model_matches_its_reference_and_fake_quant():
    model, _ = small_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    scales = quant.calibrate(model, [x], "minmax", progress=False)
    engine = nbtrt.compile(model, precision="int8", dims={"N": 2}, calibration_data=[x], calibrator="minmax")
    assert {k["precision"] for k in engine.report.kernels} == {"int8", "fp16"}
    got = engine.run({"x": x})["y"]
    want = reference.run(engine.graph, {"x": x})["y"]  # the int8 graph's own semantics
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    fake = quant.run_fake_quant(nbtrt.parse(model), {"x": x}, scales, weights=True)["y"]
    fp32 = reference.run(model, {"x": x})["y"]
    assert np.abs(got - fake).max() <= 0.05 * np.abs(fp32).max()


def test_int8_uses_the_graphs_own_scales_without_calibration():
    """Scales already on the parsed graph (what Q/DQ import provides) skip calibration."""
    model, _ = small_model()
    graph = nbtrt.parse(model)
    graph.quant_scales = {"x": 0.05, "r1": 0.1, "f": 0.1}
    graph.explicit_quantization = True
    engine = nbtrt.compile(graph, precision="int8", dims={"N": 1}, layer_precision={"conv2": "fp16"})
    assert [k["precision"] for k in engine.report.kernels].count("int8") == 2
    assert engine.report.precisions["conv2"] == ("fp16", "layer_precision override (conv2)")


def test_int8_reuses_the_weight_scales_of_a_qdq_model():
    """Weights a Q/DQ model quantized (graph.weight_scales, per output channel or per tensor) keep their
    integers; the others get max|W|/127 per output channel."""
    model, inits = small_model()
    graph = nbtrt.parse(model)
    w1 = inits["w1"].astype(np.float32)
    own = channel_scales(w1, 0) * 2  # the model's integers stay within +-64
    graph.quant_scales, graph.weight_scales = {"x": 0.05, "f": 0.1}, {"w1": own, "wf": np.float32(0.5)}
    graph.explicit_quantization = True
    graph, _ = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": 1}))
    conv1, fc = kernel(graph, "conv1"), kernel(graph, "fc")
    assert np.array_equal(conv1.inputs[1].const, quant.quantize(w1, own)) and np.abs(conv1.inputs[1].const).max() <= 64
    np.testing.assert_allclose(conv1.inputs[conv1.attrs["int8_multiplier"]].const,
                               np.float32(0.05) * own.reshape(-1), rtol=1e-7)
    assert np.array_equal(fc.inputs[1].const, quant.quantize(inits["wf"].astype(np.float32), 0.5))


def test_int8_qdq_model_needs_no_calibration():
    """A model with QuantizeLinear/DequantizeLinear on its activations brings its own scales."""
    model, _ = small_model()
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "sx"),
                          numpy_helper.from_array(np.array(0, np.int8), "zx")])
    g.node.insert(0, helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="qx"))
    g.node.insert(1, helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xdq"], name="dqx"))
    g.node[2].input[0] = "xdq"
    engine = nbtrt.compile(model, precision="int8", dims={"N": 1})
    assert engine.report.precisions["conv1"][0] == "int8" and "scale 0.05" in engine.report.precisions["conv1"][1]


def test_int8_errors(tmp_path):
    model, _ = small_model()
    with pytest.raises(CalibrationError, match="calibration_data.*calibration_cache.*QuantizeLinear"):
        nbtrt.compile(model, precision="int8")
    with pytest.raises(CalibrationError, match="no calibration cache at"):
        nbtrt.compile(model, precision="int8", calibration_cache=tmp_path / "missing.calib")
    with pytest.raises(CalibrationDataError):
        nbtrt.compile(model, precision="int8", calibration_data=[{"image": np.zeros((1, 3, 6, 6), np.float32)}])
    with pytest.raises(NbtrtError, match="'int8'"):
        nbtrt.BuildConfig(precision="int4")
    assert hash(nbtrt.BuildConfig(precision="int8")) == hash(nbtrt.BuildConfig(precision="int8"))


@pytest.fixture(scope="module")
def digits():
    data = np.load(os.path.join(MODELS, "digits.npz"))
    return {k: data[k] for k in data.files}


@needs_digits
def test_digits_int8_engine(digits, tmp_path):
    calib = digits["images"][digits["calib_idx"]]
    cache = tmp_path / "digits.calib"
    batches = [calib[i:i + 50] for i in range(0, 200, 50)]
    engine = nbtrt.compile(DIGITS, precision="int8", dims={"N": 1}, calibration_data=batches, calibration_cache=cache)
    precisions = [k["precision"] for k in engine.report.kernels]
    # int8: 5 convs, the gemm, 2 max pools; fp16: the 1-channel first conv (on tensor cores, its input padded
    # to 8 channels by a Pad kernel), the 8-channel 3x3 (fp16 tensor cores; s8 ones need 16) and the average pool
    assert precisions.count("int8") == 8 and precisions.count("fp16") == 4
    image = digits["images"][digits["test_idx"][:1]]
    got = engine.run({"image": image})["logits"]
    own = reference.run(engine.graph, {"image": image})["logits"]
    np.testing.assert_allclose(got, own, rtol=1e-3, atol=1e-3 * np.abs(own).max())
    table = quant.read_cache(cache)
    fake = quant.run_fake_quant(nbtrt.parse(DIGITS), {"image": image}, table, weights=True)["logits"]
    assert np.abs(got - fake).max() <= 0.05 * np.abs(fake).max() and got.argmax() == fake.argmax()
    # the cache alone rebuilds the same engine; the engine file keeps the int8 weights
    again = nbtrt.compile(DIGITS, precision="int8", dims={"N": 1}, calibration_cache=cache)
    assert again.report.to_dict() == engine.report.to_dict()
    engine.save(tmp_path / "digits8.nbtrt")
    loaded = nbtrt.load(tmp_path / "digits8.nbtrt")
    assert sum(v.const.dtype == np.int8 for v in loaded.graph.constants.values()) == 6
    # top-1 of the int8 graph (the kernels' semantics, on the reference) on 48 images equals fp32's
    images = digits["images"][digits["test_idx"][:48]]
    graph = nbtrt.parse(DIGITS)
    graph.quant_scales = dict(table)
    graph, _ = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": 48}))
    int8_top1 = reference.run(graph, {"image": images})["logits"].argmax(1)
    assert (int8_top1 == reference.run(DIGITS, {"image": images})["logits"].argmax(1)).all()


@pytest.mark.gpu
@needs_digits
def test_digits_int8_top1_on_the_gpu(digits):
    calib = digits["images"][digits["calib_idx"]]
    images, labels = digits["images"][digits["test_idx"]], digits["labels"][digits["test_idx"]]
    engine = nbtrt.compile(DIGITS, precision="int8", dims={"N": len(images)},
                           calibration_data=[calib[i:i + 50] for i in range(0, 200, 50)])
    top1 = float(np.mean(engine.run({"image": images})["logits"].argmax(1) == labels))
    print(f"digits_cnn int8 (entropy) top-1 {100 * top1:.2f} % (fp32 98.99 %)")
    assert abs(top1 - 0.9899) <= 0.001 + 1e-9


@needs_digits
@pytest.mark.parametrize("calibrator", ["entropy", "minmax", "percentile"])
def test_int8_semantics_top1_on_597_images(digits, calibrator):
    """Issue 7's fidelity bound for every calibrator, on the int8 build's own semantics (the planned
    graph on the reference: what the kernels compute): top-1 within 0.1 point of fp32's 98.99 %."""
    calib = digits["images"][digits["calib_idx"]]
    images, labels = digits["images"][digits["test_idx"]], digits["labels"][digits["test_idx"]]
    graph = nbtrt.parse(DIGITS)
    graph.quant_scales = dict(quant.calibrate(graph, [calib[i:i + 50] for i in range(0, 200, 50)], calibrator,
                                              progress=False))
    graph, _ = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": len(images)}))
    assert sum("int8_multiplier" in n.attrs for n in graph.nodes) == 6  # 5 convs and the gemm
    top1 = float(np.mean(reference.run(graph, {"image": images})["logits"].argmax(1) == labels))
    assert abs(top1 - 0.9899) <= 0.001 + 1e-9


def test_int8_storage_between_int8_convs():
    """conv1's output, read only by the int8 conv2 as its quantized input, is stored as int8 —
    quantized once by conv1's epilogue with conv2's input scale; conv2's output, read by the fp16
    pool, stays float16; the engine agrees with its graph's own semantics."""
    model, _ = small_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    engine = nbtrt.compile(model, precision="int8", dims={"N": 2}, calibration_data=[x], calibrator="minmax")
    conv1, conv2 = kernel(engine.graph, "conv1"), kernel(engine.graph, "conv2")
    assert conv1.outputs[0].type.dtype == "int8" and conv1.attrs["out_scales"] == [conv2.attrs["int8_scale"]]
    assert conv2.outputs[0].type.dtype == "float16" and "out_scales" not in conv2.attrs
    assert "int8 output (scale" in engine.report.summary()
    got = engine.run({"x": x})["y"]
    want = reference.run(engine.graph, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


@needs_digits
def test_digits_int8_storage_through_pools_and_concat(digits):
    """digits_cnn's inception block: the tensors from the first conv's output to the last conv's input
    are int8, including two of the merged 1x1 convs' three outputs, the max pools (which pool the
    integers) and the in-place concat; each group has one scale, the largest of its readers'. The
    first conv (reading the 1-channel image) is fp16 and quantizes its output; so is b3's 3x3 (8
    input channels: fp16 tensor cores), whose float16 input is the merged conv's third output."""
    calib = digits["images"][digits["calib_idx"]]
    graph = nbtrt.parse(DIGITS)
    graph.quant_scales = table = dict(quant.calibrate(graph, [calib[:50]], "minmax", progress=False))
    graph, report = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": 4}))
    convs = [n for n in graph.nodes if n.op == "nbtrt.conv"]
    assert [n.attrs["math"] for n in convs] == ["fp16", "int8", "int8", "int8", "fp16", "int8", "int8"]
    assert [v.type.dtype for n in convs[:-1] for v in n.outputs] == ["int8"] * 4 + ["float16"] + ["int8"] * 3
    assert convs[-1].outputs[0].type.dtype == "float16"  # read by the average pool
    pools = [n for n in graph.nodes if n.op == "nbtrt.pool" and n.attrs["base"] == "MaxPool"]
    assert all(p.inputs[0].type.dtype == p.outputs[0].type.dtype == "int8" for p in pools)
    assert all(report.precisions[p.name][0] == "int8" for p in pools)
    assert all(v.type.dtype == "int8" for n in graph.nodes if n.op == "Concat" for v in [*n.inputs, *n.outputs])
    merged = convs[2]  # reads /3's output, also read by the b4 max pool: one scale for both readers
    s_pool = table["/6/b4/b4.0/MaxPool_output_0"]
    assert merged.attrs["int8_scale"] == max(table["/5/Relu_output_0"], s_pool) == convs[1].attrs["out_scales"][0]
    images = digits["images"][digits["test_idx"][:4]]
    want = reference.run(DIGITS, {"image": images})["logits"].argmax(1)
    assert (reference.run(graph, {"image": images})["logits"].argmax(1) == want).all()


def test_int8_conv_without_int8_input_runs_fp16_tensor_cores():
    """An int8 conv stays fp16 when fp16 tensor cores can run it and the int8 ones cannot: its input
    cannot be stored as int8 (a network input; 16·k channels, or padded to 8), or it has 8 channels per
    group (the s8 kernel needs 16). It quantizes its output for the int8 conv2."""
    for channels, why in ((16, "cannot be stored as int8"), (3, "cannot be stored as int8"),
                          (8, "8 channels per group: the int8 tensor cores need a multiple of 16")):
        model, _ = small_model(channels)
        x = np.random.default_rng(1).standard_normal((2, channels, 6, 6)).astype(np.float32)
        graph = nbtrt.parse(model)
        graph.quant_scales = dict(quant.calibrate(graph, [x], "minmax", progress=False))
        graph, report = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": 2}))
        conv1 = kernel(graph, "conv1")
        assert conv1.attrs["math"] == "fp16" and why in report.precisions["conv1"][1]
        assert conv1.outputs[0].type.dtype == "int8" and kernel(graph, "conv2").attrs["math"] == "int8"


def residual_model():
    """x[N,16,5,5] -> conv0+relu = a -> conv1+relu -> conv2 + a, relu -> conv3 -> y: a is read by conv1
    (input 0) and by conv2's epilogue (the residual)."""
    rng = np.random.default_rng(2)
    inits = {f"w{k}": rng.standard_normal((16, 16, 3, 3)) / 12 for k in range(4)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["a"], name="relu0"),
             helper.make_node("Conv", ["a", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["b"], name="relu1"),
             helper.make_node("Conv", ["b", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "a"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["r"], name="relu2"),
             helper.make_node("Conv", ["r", "w3"], ["y"], name="conv3", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 5, 5])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_storage_of_a_residual():
    """A block's input read by the next conv and as the residual of a later one is stored as int8:
    the residual is read dequantized (in_scales) with the group's scale; the engine agrees with its
    graph's semantics and stays close to fake quantization."""
    model = residual_model()
    x = np.random.default_rng(3).standard_normal((2, 16, 5, 5)).astype(np.float32)
    scales = quant.calibrate(model, [x], "minmax", progress=False)
    engine = nbtrt.compile(model, precision="int8", dims={"N": 2}, calibration_data=[x], calibrator="minmax")
    g = engine.graph
    conv0, conv1, conv2 = (next(n for n in g.nodes if name in n.attrs.get("sources", ())) for name in
                           ("conv0", "conv1", "conv2"))
    a = conv0.outputs[0]
    assert a.type.dtype == "int8" and conv0.attrs["out_scales"] == [conv1.attrs["int8_scale"]]
    k = next(i for i, v in enumerate(conv2.inputs) if v is a)
    assert k >= 2 and conv2.attrs["in_scales"][k] == conv1.attrs["int8_scale"]
    assert conv2.attrs["math"] == "int8" and conv2.outputs[0].type.dtype == "int8"  # read by conv3 only
    got = engine.run({"x": x})["y"]
    want = reference.run(g, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    fake = quant.run_fake_quant(nbtrt.parse(model), {"x": x}, scales, weights=True)["y"]
    assert np.abs(got - fake).max() <= 0.05 * np.abs(fake).max()


def test_no_int8_storage_for_a_graph_output():
    model, _ = small_model()
    model.graph.output.append(helper.make_tensor_value_info("r1", TensorProto.FLOAT, ["N", 4, 6, 6]))
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    graph = nbtrt.parse(model)
    graph.quant_scales = dict(quant.calibrate(graph, [x], "minmax", progress=False))
    graph, _ = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": 2}))
    conv1 = kernel(graph, "conv1")
    assert conv1.outputs[0].type.dtype == "float32" and "out_scales" not in conv1.attrs
    assert kernel(graph, "conv2").attrs["math"] == "int8"  # 4 channels: no fp16 tensor cores, int8 on CUDA cores


def test_resnet50_int8_plan_stores_every_activation_int8():
    """The light ResNet-50 with a scale on every activation: every conv computes in int8 and reads an
    int8 input (so the s8 tensor-core kernel can run it), residuals included (read dequantized); the
    stem reads the 16-channel SpaceToDepth of the image (passes/space_to_depth.py), which quantizes it.
    Float activations are left only where no int8 kernel reads: the input, the last block's output
    (read by the average pool), and the pool, fc and softmax tail."""
    from nbtrt.cli import resolve_model
    graph = nbtrt.parse(resolve_model("zoo:light_resnet50"))
    graph.quant_scales = {v.name: 0.05 for v in graph.values() if not v.is_constant}
    graph, report = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": 2}))
    convs = [n for n in graph.nodes if n.op == "nbtrt.conv"]
    stem, rest = convs[0], convs[1:]
    assert stem.inputs[0].producer().op == "SpaceToDepth" and stem.outputs[0].type.dtype == "int8"
    assert all(n.attrs["math"] == "int8" and n.inputs[0].type.dtype == "int8" for n in convs)
    residuals = [n for n in rest if n.attrs.get("in_scales")]
    assert len(residuals) == 16  # one per bottleneck block
    for n in residuals:
        int8_operands = [k for k, v in enumerate(n.inputs) if k >= 2 and v is not None and v.type.dtype == "int8"]
        assert [k for k, s in enumerate(n.attrs["in_scales"]) if s is not None] == int8_operands != []
    floats = [v for v in graph.values() if not v.is_constant and v.type.dtype in ("float16", "float32")]
    assert sorted(v.producer().op if v.producer() else "input" for v in floats) == [
        "Reshape", "Softmax", "input", "nbtrt.conv", "nbtrt.gemm", "nbtrt.pool"]
