"""fold_batchnorm: BN into the Conv / ConvTranspose / Gemm before it; a lone BN becomes Mul + Add."""

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import nbtrt
from helpers import RNG, assert_same, const, make_model, run_passes
from nbtrt import reference
from nbtrt.config import BuildConfig
from nbtrt.passes import fold_batchnorm, fold_constants
from nbtrt.report import BuildReport

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
FOLD, LONE = "fold_batchnorm", "batchnorm_to_scale_shift"


def bn_params(prefix, c):
    """γ, β, μ, σ² initializers (σ² > 0) and the names in BN input order."""
    names = [f"{prefix}_{p}" for p in ("gamma", "beta", "mean", "var")]
    var = numpy_helper.from_array((np.abs(RNG.standard_normal(c)) + 0.5).astype(np.float32), names[3])
    return [const(names[0], [c]), const(names[1], [c]), const(names[2], [c]), var], names


def bn_node(x, y, prefix, c, **attrs):
    inits, names = bn_params(prefix, c)
    return helper.make_node("BatchNormalization", [x] + names, [y], name=prefix, **attrs), inits


def refusals(report, rule=FOLD):
    return [d.reason for d in report.decisions if d.rule == rule and not d.applied]


def ops(graph):
    return [n.op for n in graph.nodes]


def conv_bn_model(op="Conv", group=1, bias=True, c_in=4, c_out=6, spatial=(5, 5), **attrs):
    k = [3] * len(spatial)
    w_shape = [c_out, c_in // group] + k if op == "Conv" else [c_in, c_out // group] + k
    inits = [const("w", w_shape)] + ([const("b", [c_out])] if bias else [])
    conv = helper.make_node(op, ["x", "w"] + (["b"] if bias else []), ["c"], name="conv", group=group, **attrs)
    bn, bn_inits = bn_node("c", "y", "bn", c_out)
    return make_model([conv, bn], [("x", ["N", c_in] + list(spatial))], ["y"], inits + bn_inits)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group,c_in,c_out", [(1, 4, 6), (2, 4, 6), (4, 4, 4), (4, 4, 8)])
def test_conv_bn_folds(group, c_in, c_out, bias):
    graph, report, original = run_passes(conv_bn_model("Conv", group, bias, c_in, c_out, pads=[1, 1, 1, 1]),
                                         fold_batchnorm)
    assert len(report.applied(FOLD)) == 1 and not report.applied(LONE)
    assert ops(graph) == ["Conv"]
    conv = graph.nodes[0]
    assert conv.name == "conv" and conv.outputs[0].name == "y" and graph.outputs[0] is conv.outputs[0]
    assert len(graph.constants) == 2  # W' and b': the old weights and BN parameters are dropped
    assert_same(graph, original)


@pytest.mark.parametrize("spatial", [(7,), (3, 4, 4)])
def test_conv_1d_3d_bn_folds(spatial):
    graph, report, original = run_passes(conv_bn_model("Conv", 2, True, spatial=spatial), fold_batchnorm)
    assert ops(graph) == ["Conv"] and len(report.applied(FOLD)) == 1
    assert_same(graph, original)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group,c_in,c_out", [(1, 4, 6), (2, 4, 6), (4, 4, 4), (2, 6, 4)])
def test_conv_transpose_bn_folds(group, c_in, c_out, bias):
    model = conv_bn_model("ConvTranspose", group, bias, c_in, c_out, strides=[2, 2], pads=[1, 0, 0, 1])
    graph, report, original = run_passes(model, fold_batchnorm)
    assert len(report.applied(FOLD)) == 1 and ops(graph) == ["ConvTranspose"]
    assert_same(graph, original)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, [6], [1, 6], [3, 6], [3, 1], []])
def test_gemm_bn_folds(trans_b, c_shape):
    inputs = ["a", "w"] + ([] if c_shape is None else ["c"])
    inits = [const("w", [6, 5] if trans_b else [5, 6])] + ([] if c_shape is None else [const("c", c_shape)])
    gemm = helper.make_node("Gemm", inputs, ["g"], name="gemm", transB=trans_b, alpha=0.7, beta=1.3)
    bn, bn_inits = bn_node("g", "y", "bn", 6)
    model = make_model([gemm, bn], [("a", [3, 5])], ["y"], inits + bn_inits)
    graph, report, original = run_passes(model, fold_batchnorm)
    assert len(report.applied(FOLD)) == 1 and ops(graph) == ["Gemm"]
    assert graph.nodes[0].attrs["beta"] == 1.0 and graph.nodes[0].attrs["alpha"] == pytest.approx(0.7)
    assert_same(graph, original)


@pytest.mark.parametrize("shape", [["N", 3], ["N", 3, 5], ["N", 3, 4, 5], [2, 3, 2, 2, 2]])
def test_lone_bn_after_graph_input(shape):
    bn, inits = bn_node("x", "y", "bn", 3)
    graph, report, original = run_passes(make_model([bn], [("x", shape)], ["y"], inits), fold_batchnorm)
    assert not report.applied(FOLD) and len(report.applied(LONE)) == 1
    assert ops(graph) == ["Mul", "Add"]
    mul, add = graph.nodes
    assert (mul.name, add.name) == ("bn_scale", "bn_shift")
    assert add.outputs[0].name == "y" and graph.outputs == [add.outputs[0]]
    assert mul.inputs[1].const.shape == (3,) + (1,) * (len(shape) - 2)
    assert add.inputs[1].const.shape == (3,) + (1,) * (len(shape) - 2)
    assert_same(graph, original)


def test_lone_bn_after_concat():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Concat", ["x", "r"], ["cat"], name="cat", axis=1)]
    bn, inits = bn_node("cat", "y", "bn", 6)
    graph, report, original = run_passes(make_model(nodes + [bn], [("x", ["N", 3, 4, 4])], ["y"], inits),
                                         fold_batchnorm)
    assert ops(graph) == ["Relu", "Concat", "Mul", "Add"] and len(report.applied(LONE)) == 1
    assert_same(graph, original)


def shared_weights_model():
    inits = [const("w", [4, 3, 3, 3]), const("b0", [4]), const("b1", [4])]
    nodes = [helper.make_node("Conv", ["x", "w", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1])]
    for i in range(2):
        bn, bn_inits = bn_node(f"c{i}", f"y{i}", f"bn{i}", 4)
        nodes.append(bn)
        inits += bn_inits
    return make_model(nodes, [("x", ["N", 3, 5, 5])], ["y0", "y1"], inits)


def test_shared_weights_refused_and_not_mutated():
    model = shared_weights_model()
    w_before = numpy_helper.to_array(model.graph.initializer[0]).copy()
    graph, report, original = run_passes(model, fold_batchnorm)
    assert refusals(report) == ["not folded: weights shared with another node"] * 2
    assert len(report.applied(LONE)) == 2 and "BatchNormalization" not in ops(graph)
    w = graph.constants["w"]
    assert len(w.uses()) == 2 and np.array_equal(w.const, w_before)
    assert_same(graph, original)


def test_shared_bias_refused():
    inits = [const("w0", [4, 3, 1, 1]), const("w1", [4, 3, 1, 1]), const("b", [4])]
    nodes = [helper.make_node("Conv", ["x", "w0", "b"], ["c0"], name="conv0"),
             helper.make_node("Conv", ["x", "w1", "b"], ["c1"], name="conv1")]
    bn, bn_inits = bn_node("c0", "y0", "bn", 4)
    graph, report, original = run_passes(make_model(nodes + [bn], [("x", ["N", 3, 5, 5])], ["y0", "c1"],
                                                    inits + bn_inits), fold_batchnorm)
    assert refusals(report) == ["not folded: bias shared with another node"]
    assert_same(graph, original)


def test_conv_output_also_graph_output_refused():
    model = conv_bn_model()
    model.graph.output.append(helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, None))
    graph, report, original = run_passes(model, fold_batchnorm)
    assert refusals(report) == ["not folded: Conv output is also a graph output"]
    assert ops(graph) == ["Conv", "Mul", "Add"]
    assert [v.name for v in graph.outputs] == ["y", "c"]
    assert_same(graph, original)


def test_conv_output_read_by_others_refused():
    model = conv_bn_model()
    model.graph.node.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
    model.graph.output.append(helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, None))
    graph, report, original = run_passes(model, fold_batchnorm)
    assert refusals(report) == ["not folded: Conv output read by other nodes"]
    assert len(report.applied(LONE)) == 1
    assert_same(graph, original)


def test_non_constant_bn_parameters_refused():
    model = conv_bn_model()
    gamma = model.graph.initializer[2]  # w, b, then γ
    assert gamma.name == "bn_gamma"
    model.graph.initializer.remove(gamma)
    model.graph.input.append(helper.make_tensor_value_info("bn_gamma", onnx.TensorProto.FLOAT, [6]))
    graph, report, original = run_passes(model, fold_batchnorm)
    assert refusals(report) == ["not folded: BN parameters are not constant"]
    assert refusals(report, LONE) == ["BN parameters are not constant"]
    assert ops(graph) == ["Conv", "BatchNormalization"]
    rng = np.random.default_rng(3)
    assert_same(graph, original, {"x": rng.standard_normal((2, 4, 5, 5)).astype(np.float32),
                                  "bn_gamma": rng.standard_normal(6).astype(np.float32)})


def test_training_mode_refused():
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    bn, inits = bn_node("c", "y", "bn", 4, training_mode=1)
    model = make_model([conv, bn], [("x", [2, 3, 4, 4])], ["y"], [const("w", [4, 3, 1, 1])] + inits)
    graph, report, original = run_passes(model, fold_batchnorm)
    assert all(r.startswith("not folded: training_mode") for r in refusals(report)) and refusals(report)
    assert refusals(report, LONE)[0].startswith("training_mode")
    assert ops(graph) == ["Conv", "BatchNormalization"]


# -- the model zoo's light models ---------------------------------------------------------------------

def light_input(graph):
    x = graph.inputs[0]
    n = int(np.prod(x.type.shape))
    return {x.name: (np.arange(n).reshape(x.type.shape) / n).astype(np.float32)}


def randomize_weights(graph, seed=0):
    """Replace every float constant by random numbers (σ² of BNs positive, conv weights He-scaled), so
    that the comparison sees distinct channels (the light models' weights are ConstantOfShape fills)."""
    rng = np.random.default_rng(seed)
    role = {id(n.inputs[i]): (n.op, i) for n in graph.nodes for i in range(len(n.inputs))
            if n.inputs[i] is not None}
    for name in sorted(graph.constants):
        v = graph.constants[name]
        if v.const.dtype != np.float32:
            continue
        op, i = role.get(id(v), (None, None))
        r = rng.standard_normal(v.const.shape)
        if op == "BatchNormalization":
            r = np.abs(r) * 0.5 + 0.5 if i == 4 else (1 + 0.1 * r if i == 1 else 0.1 * r)
        elif op in ("Conv", "Gemm") and i == 1:
            r = r * np.sqrt(2.0 / max(1, v.const[0].size if op == "Conv" else v.const.shape[1]))
        elif op == "Mul":
            r = 1 + 0.1 * r
        else:
            r = 0.1 * r
        v.const = r.astype(np.float32)


def light_models(name, *passes, randomize=False):
    """(optimized graph, report, original graph) of a light model after fold_constants + ``passes``."""
    path = os.path.join(LIGHT, f"{name}.onnx")
    graph, original = nbtrt.parse(path), nbtrt.parse(path)
    report = BuildReport()
    for g in (graph, original):
        fold_constants.run(g, BuildConfig(), report if g is graph else BuildReport())
        if randomize:
            randomize_weights(g)
    for p in passes:
        p.run(graph, BuildConfig(), report)
    graph.verify()
    return graph, report, original


def assert_light_same(graph, original, rtol=1e-4):
    """Outputs equal on the light input; a Softmax output saturates, so its logits are compared too."""
    inputs = light_input(original)
    names = [v.name for v in original.outputs]
    names += [v.producer().inputs[0].name for v in original.outputs if v.producer().op == "Softmax"]
    want, got = reference.run(original, inputs, names), reference.run(graph, inputs, names)
    assert [v.name for v in graph.outputs] == [v.name for v in original.outputs]
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=rtol * np.abs(want[name]).max())


@pytest.mark.parametrize("randomize", [False, True])
def test_light_resnet50_every_bn_folds(randomize):
    graph, report, original = light_models("light_resnet50", fold_batchnorm, randomize=randomize)
    assert "BatchNormalization" not in ops(graph)
    assert len(report.applied(FOLD)) == 53 and not report.applied(LONE) and not refusals(report)
    assert ops(graph).count("Conv") == 53
    assert_light_same(graph, original)
