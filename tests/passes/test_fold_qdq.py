"""fold_qdq (issue 7, explicit quantization): the Q/DQ models onnxruntime.quantization makes from the
trained digits CNN, and small Q/DQ patterns built by hand (supported and refused)."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nbtrt
from conftest import SHARED
from helpers import make_model, run_passes
from nbtrt import reference
from nbtrt.errors import UnsupportedOpError
from nbtrt.passes import bind_shapes, fold_qdq

MODELS = os.path.join(SHARED, "models")
DIGITS_CNN = os.path.join(MODELS, "digits_cnn.onnx")
needs_digits = pytest.mark.skipif(not os.path.exists(DIGITS_CNN), reason="needs ../shared/models")
QDQ = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def digits():
    data = np.load(os.path.join(MODELS, "digits.npz"))
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def qdq_models(digits, tmp_path_factory):
    """{per_channel: path} of digits_cnn quantized by onnxruntime (QDQ, symmetric int8, 200 images)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    calib = digits["images"][digits["calib_idx"]]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": calib[i:i + 50]} for i in range(0, len(calib), 50)])

        def get_next(self):
            return next(self.batches, None)

    paths = {}
    for per_channel in (True, False):
        path = str(tmp_path_factory.mktemp("qdq") / f"digits_qdq_{'axis' if per_channel else 'tensor'}.onnx")
        quantize_static(DIGITS_CNN, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": True})
        paths[per_channel] = path
    return paths


def _initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _expected_activation_scales(model):
    """The tensor each Q/DQ pair quantizes (by the name it keeps) -> the model's scale."""
    inits, outputs = _initializers(model), {o.name for o in model.graph.output}
    dq_of = {n.input[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    want = {}
    for q in model.graph.node:
        if q.op_type == "QuantizeLinear" and q.input[0] not in inits:
            y = dq_of[q.output[0]].output[0]
            want[y if y in outputs else q.input[0]] = float(inits[q.input[1]])
    return want


@needs_digits
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_axis", "per_tensor"])
def test_digits_qdq_pairs_fold_and_scales_are_the_models(qdq_models, per_channel):
    model = onnx.load(qdq_models[per_channel])
    inits = _initializers(model)
    graph, report = nbtrt.plan(qdq_models[per_channel])
    assert not any(n.op in QDQ for n in graph.nodes)
    n_qdq = sum(n.op_type in QDQ for n in model.graph.node)
    assert sum(len(d.nodes) for d in report.decisions if d.pass_name == "fold_qdq" and d.applied) == n_qdq
    want = _expected_activation_scales(model)
    assert len(want) >= 20 and graph.quant_scales == pytest.approx(want, rel=0, abs=0)
    # every conv/gemm weight of the optimized graph (merge_parallel's merged one too) has its scales
    kernels = [n for n in graph.nodes if n.op in ("nbtrt.conv", "nbtrt.gemm")]
    assert any("merged" in n.inputs[1].name for n in kernels)
    for n in kernels:
        ints = n.inputs[1].const / graph.weight_scales[n.inputs[1].name]
        assert np.abs(ints - np.rint(ints)).max() < 1e-3 and np.abs(ints).max() <= 128
    # weights: the float constant is the model's (W_q - zp) * s_w, and W / weight_scales gives W_q back
    folded, _, _ = run_passes(qdq_models[per_channel], bind_shapes, fold_qdq)
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert set(folded.weight_scales) == {n.output[0] for n in weights}
    for n in weights:
        q, s, zp = inits[n.input[0]], inits[n.input[1]], inits[n.input[2]]
        scale, w = folded.weight_scales[n.output[0]], folded.constants[n.output[0]].const
        assert scale.shape == (() if s.size == 1 else (s.size,) + (1,) * (q.ndim - 1))  # axis 0 here
        np.testing.assert_array_equal(scale.ravel(), s.ravel())
        ints = q.astype(np.int64) - zp.reshape(scale.shape)
        np.testing.assert_allclose(w, ints * scale.astype(np.float64), rtol=1e-7, atol=0)
        np.testing.assert_array_equal(np.rint(w / scale).astype(np.int64), ints)
    assert per_channel == any(s.size > 1 for s in folded.weight_scales.values())


@needs_digits
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_axis", "per_tensor"])
def test_digits_qdq_folded_graph_agrees_with_onnxruntime(qdq_models, digits, per_channel):
    """The folded graph keeps the quantized weights and drops the activation rounding. Measured on the
    597 test images: max |folded - onnxruntime QDQ| 0.71 (per axis) / 0.75 (per tensor) on logits up to
    15; max |folded - FP32| 0.17 / 0.18; top-1 98.99 % for the folded graph, onnxruntime's QDQ and FP32."""
    import onnxruntime as ort

    x, labels = digits["images"][digits["test_idx"]], digits["labels"][digits["test_idx"]]
    want = ort.InferenceSession(qdq_models[per_channel], providers=["CPUExecutionProvider"]).run(
        None, {"image": x})[0]
    graph, _ = nbtrt.plan(qdq_models[per_channel], nbtrt.BuildConfig(dims={"N": len(x)}))
    got = reference.run(graph, {"image": x})["logits"]
    fp32 = np.load(os.path.join(MODELS, "digits_cnn_test_logits.npy"))
    diff, weight_only = np.abs(got - want).max(), np.abs(got - fp32).max()
    top1, top1_ort = (got.argmax(1) == labels).mean() * 100, (want.argmax(1) == labels).mean() * 100
    print(f"\nQDQ {'per-axis' if per_channel else 'per-tensor'}: max |folded - onnxruntime| {diff:.3f}, "
          f"max |folded - fp32| {weight_only:.3f}; top-1 folded {top1:.2f} %, onnxruntime QDQ {top1_ort:.2f} %")
    assert diff < 0.1 * np.abs(want).max() and weight_only < 0.05 * np.abs(fp32).max()
    assert abs(top1 - top1_ort) <= 0.1


@needs_digits
def test_plain_fp32_model_is_untouched():
    graph, report, original = run_passes(DIGITS_CNN, fold_qdq)
    assert [(n.name, n.op) for n in graph.nodes] == [(n.name, n.op) for n in original.nodes]
    assert graph.quant_scales == {} and graph.weight_scales == {} and not report.decisions


# -- hand-built patterns ---------------------------------------------------------------------------------------

def _qdq_model(q_zp, dq_scale=0.05, dq_zp=None, between=(), out="y", extra_inits=()):
    """x[2,3] -> QuantizeLinear(0.05, q_zp) -> [between] -> DequantizeLinear(dq_scale, dq_zp) -> Relu -> y."""
    dq_zp = q_zp if dq_zp is None else dq_zp
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(q_zp, "zp"),
             numpy_helper.from_array(np.array(dq_scale, np.float32), "s2"), numpy_helper.from_array(dq_zp, "zp2")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="quant_x")] + list(between)
    nodes += [helper.make_node("DequantizeLinear", [nodes[-1].output[0], "s2", "zp2"], ["xd"], name="dequant_x"),
              helper.make_node("Relu", ["xd"], [out], name="relu")]
    return make_model(nodes, [("x", [2, 3])], [out], inits + list(extra_inits))


@pytest.mark.parametrize("zp", [np.array(0, np.int8), np.array(128, np.uint8)], ids=["int8", "uint8_128"])
def test_symmetric_pair_folds(zp):
    graph, report, _ = run_passes(_qdq_model(zp), fold_qdq)
    assert [n.op for n in graph.nodes] == ["Relu"] and graph.nodes[0].inputs[0].name == "x"
    assert graph.quant_scales == {"x": pytest.approx(0.05)} and graph.weight_scales == {}
    assert [d.nodes for d in report.decisions] == [("quant_x", "dequant_x")]


@pytest.mark.parametrize("model, match", [
    (_qdq_model(np.array(0, np.uint8)), "asymmetric uint8 zero point"),
    (_qdq_model(np.array(3, np.int8)), "asymmetric int8 zero point"),
    (_qdq_model(np.array(0, np.int8), dq_scale=0.1), "another scale"),
    (_qdq_model(np.array(0, np.int8), between=[helper.make_node("Identity", ["xq"], ["xi"], name="copy")]),
     "read by Identity 'copy'"),
], ids=["uint8_zero", "int8_asymmetric", "requantize", "not_a_dq"])
def test_unsupported_pairs_name_the_node(model, match):
    with pytest.raises(UnsupportedOpError, match=match) as e:
        run_passes(model, fold_qdq)
    assert "'quant_x'" in str(e.value)


def test_per_axis_activation_and_lone_dq_are_refused():
    s = numpy_helper.from_array(np.full(3, 0.05, np.float32), "s")
    zp = numpy_helper.from_array(np.zeros(3, np.int8), "zp")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_axis", axis=1),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["y"], name="dq_axis", axis=1)]
    with pytest.raises(UnsupportedOpError, match="'q_axis'.*per-axis activation scale"):
        run_passes(make_model(nodes, [("x", [2, 3])], ["y"], [s, zp]), fold_qdq)
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("DequantizeLinear", ["xi", "s", "zp"], ["y"], name="lone_dq", axis=1)],
                          "g", [vi("xi", TensorProto.INT8, [2, 3])], [vi("y", TensorProto.FLOAT, None)], [s, zp])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError, match="'lone_dq'.*not part of a QuantizeLinear"):
        run_passes(model, fold_qdq)


def test_pair_at_graph_output_keeps_the_name():
    s = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("QuantizeLinear", ["h", "s", "zp"], ["hq"]),
             helper.make_node("DequantizeLinear", ["hq", "s", "zp"], ["y"]),
             helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["z"])]
    graph, _, _ = run_passes(make_model(nodes, [("x", [2, 3])], ["y", "z"], [s, zp]), fold_qdq)
    assert [v.name for v in graph.outputs] == ["y", "z"] and [n.op for n in graph.nodes] == ["Relu", "Identity"]
    assert graph.quant_scales == {"y": pytest.approx(0.05), "x": pytest.approx(0.05)}
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    out = reference.run(graph, {"x": x})
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
    np.testing.assert_array_equal(out["z"], x)


def test_float_weight_with_its_own_qdq_pair():
    """QuantizeLinear of a constant (onnxruntime's AddQDQPairToWeight) is evaluated: the weight becomes the
    dequantized integers, with its per-channel scales."""
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    scale = (np.abs(w).max(1) / 127).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "sw"),
             numpy_helper.from_array(np.zeros(4, np.int8), "zw")]
    nodes = [helper.make_node("QuantizeLinear", ["w", "sw", "zw"], ["wq"], axis=0),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=0),
             helper.make_node("MatMul", ["x", "wd"], ["y"])]
    graph, _, _ = run_passes(make_model(nodes, [("x", [2, 4])], ["y"], inits), fold_qdq)
    assert [n.op for n in graph.nodes] == ["MatMul"] and graph.nodes[0].inputs[1].name == "wd"
    got = graph.constants["wd"].const
    ints = np.clip(np.rint(w / scale[:, None]), -128, 127)
    np.testing.assert_allclose(got, ints * scale[:, None], rtol=1e-6)
    assert graph.weight_scales["wd"].shape == (4, 1)
    np.testing.assert_array_equal(np.rint(got / graph.weight_scales["wd"]), ints)


@pytest.mark.parametrize("through_q", [False, True], ids=["dq", "q_dq"])
def test_asymmetric_weight_stays_float(through_q):
    """A weight an int8 kernel cannot reuse (zero point 3) is folded exactly by fold_constants instead, with
    the reason in the report and no weight scale."""
    w = np.arange(-6, 6, dtype=np.int8).reshape(4, 3)
    inits = [numpy_helper.from_array(w if not through_q else (w * 0.1).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(0.1, np.float32), "sw"),
             numpy_helper.from_array(np.array(3, np.int8), "zw")]
    nodes = [helper.make_node("QuantizeLinear", ["w", "sw", "zw"], ["wq"], name="quant_w")] if through_q else []
    nodes += [helper.make_node("DequantizeLinear", ["wq" if through_q else "w", "sw", "zw"], ["wd"], name="dq_w"),
              helper.make_node("MatMul", ["x", "wd"], ["y"])]
    model = make_model(nodes, [("x", [2, 4])], ["y"], inits)
    graph, report = nbtrt.plan(model)
    assert graph.weight_scales == {} and not any(n.op in QDQ for n in graph.nodes)
    refused = [d for d in report.decisions if d.pass_name == "fold_qdq" and not d.applied]
    assert refused and "asymmetric int8 zero point [3]" in refused[0].reason
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(reference.run(graph, {"x": x})["y"], reference.run(model, {"x": x})["y"], rtol=1e-6)
