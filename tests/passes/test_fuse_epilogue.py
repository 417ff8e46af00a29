"""fuse_epilogue: anchors become groups that absorb bias, scale/shift, activations and one residual."""

import os

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import assert_same, const, make_model, random_inputs, run_passes

import nbtrt
from nbtrt import reference
from nbtrt.config import BuildConfig
from nbtrt.groups import describe, kernel_kind
from nbtrt.passes import dead_code, fold_constants, fuse_elementwise, fuse_epilogue, remove_identity
from nbtrt.report import BuildReport

N = helper.make_node


def _conv_model(tail, extra_inputs=(), outputs=("y",), inits=(), cout=8):
    nodes = [N("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3])] + tail
    inits = [const("w", [cout, 4, 3, 3]), const("b", [cout])] + list(inits)
    return make_model(nodes, [("x", [2, 4, 6, 6])] + list(extra_inputs), list(outputs), inits)


def _groups(graph):
    return [n for n in graph.nodes if kernel_kind(n) is not None]


def _refusals(report, rule=None):
    return [d for d in report.decisions if not d.applied and (rule is None or d.rule == rule)]


def test_conv_bias_relu_is_one_group():
    model = _conv_model([N("Add", ["c", "bias"], ["a"], name="add"), N("Relu", ["a"], ["y"], name="relu")],
                        inits=[const("bias", [1, 8, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert kernel_kind(g) == "conv" and g.attrs["sources"] == ("conv", "add", "relu")
    assert g.attrs["n_base"] == 2 and g.attrs["splits"] == (8,) and g.outputs[0].name == "y"
    assert describe(g.attrs["epilogues"][0]) == "s0 = Add(acc, in2); s1 = Add(s0, in3); s2 = Relu(s1)"
    assert g.inputs[2].type.shape == (8, 1, 1) and g.inputs[3].type.shape == (8, 1, 1)
    assert len(report.applied("fuse_bias")) == 1 and len(report.applied("fuse_activation")) == 1
    assert_same(graph, original)


def test_conv_bias_residual_relu():
    model = _conv_model([N("Add", ["c", "bias"], ["a"], name="add"), N("Add", ["r", "a"], ["s"], name="res"),
                         N("Relu", ["s"], ["y"], name="relu")],
                        extra_inputs=[("r", [2, 8, 6, 6])], inits=[const("bias", [8, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert g.attrs["sources"] == ("conv", "add", "res", "relu")
    assert describe(g.attrs["epilogues"][0]) == \
        "s0 = Add(acc, in2); s1 = Add(s0, in3); s2 = Add(in4, s1); s3 = Relu(s2)"
    assert g.inputs[4].name == "r"
    assert len(report.applied("fuse_residual")) == 1 and not _refusals(report)
    assert_same(graph, original)


@pytest.mark.parametrize("sigmoid_first", [False, True])
def test_silu_is_one_activation(sigmoid_first):
    mul_in = ["sg", "c"] if sigmoid_first else ["c", "sg"]
    model = _conv_model([N("Sigmoid", ["c"], ["sg"], name="sig"), N("Mul", mul_in, ["y"], name="mul")])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert g.attrs["sources"] == ("conv", "sig", "mul")
    assert [d.nodes for d in report.applied("fuse_activation")] == [("conv", "sig", "mul")]
    assert_same(graph, original)


ACTIVATIONS = [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("Tanh", {}), ("HardSwish", {}),
               ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("Elu", {"alpha": 0.7}), ("Selu", {}),
               ("Softplus", {}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"})]


@pytest.mark.parametrize("op,attrs", ACTIVATIONS, ids=lambda a: str(a))
def test_each_activation(op, attrs):
    model = _conv_model([N(op, ["c"], ["y"], name="act", **attrs)])
    model.opset_import[0].version = 20  # Gelu
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert g.attrs["epilogues"][0][-1].op == op and dict(g.attrs["epilogues"][0][-1].attrs) == \
        nbtrt.parse(model).nodes[1].attrs
    assert len(report.applied("fuse_activation")) == 1
    assert_same(graph, original)


@pytest.mark.parametrize("bounds", [["lo", "hi"], ["", "hi"], ["lo"]])
def test_clip_with_constant_bounds(bounds):
    inits = [helper.make_tensor("lo", onnx.TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("hi", onnx.TensorProto.FLOAT, [], [0.5])]
    model = _conv_model([N("Clip", ["c"] + bounds, ["y"], name="relu6")], inits=inits)
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert g.attrs["epilogues"][0][-1].op == "Clip" and len(g.attrs["epilogues"][0][-1].args) == 3
    assert len(report.applied("fuse_activation")) == 1
    assert_same(graph, original)


def test_clip_with_computed_bound_is_refused():
    model = _conv_model([N("Clip", ["c", "lo"], ["y"], name="clip")], extra_inputs=[("lo", [])])
    graph, report, original = run_passes(model, fuse_epilogue)
    assert len(graph.nodes) == 2
    (d,) = _refusals(report, "fuse_activation")
    assert "not constant" in d.reason
    assert_same(graph, original)


def test_prelu_per_channel_slope():
    model = _conv_model([N("PRelu", ["c", "slope"], ["y"], name="prelu")], inits=[const("slope", [8, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue)
    assert len(graph.nodes) == 1 and len(report.applied("fuse_activation")) == 1
    assert_same(graph, original)


@pytest.mark.parametrize("op", ["Sub", "Div"])
@pytest.mark.parametrize("const_first", [False, True])
def test_sub_div_keep_operand_order(op, const_first):
    ins = ["k", "c"] if const_first else ["c", "k"]
    k = const("k", [8, 1, 1])
    k.CopyFrom(onnx.numpy_helper.from_array(np.abs(onnx.numpy_helper.to_array(k)) + 0.5, "k"))
    model = _conv_model([N(op, ins, ["y"], name="op")], inits=[k])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    last = g.attrs["epilogues"][0][-1]
    assert last.op == op and last.args == (("in3", "s0") if const_first else ("s0", "in3"))
    rule = "fuse_bias" if op == "Sub" else "fuse_scale_shift"
    assert len(report.applied(rule)) == 1
    assert_same(graph, original)


def test_scalar_and_per_channel_scale_shift_are_canonical():
    model = _conv_model([N("Mul", ["c", "s"], ["m"], name="mul"), N("Add", ["m", "t"], ["y"], name="add")],
                        inits=[const("s", [1]), const("t", [1, 8, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert [v.type.shape for v in g.inputs[2:]] == [(8, 1, 1), (), (8, 1, 1)]
    assert len(report.applied("fuse_scale_shift")) == 1 and len(report.applied("fuse_bias")) == 1
    assert_same(graph, original)


def test_constant_that_is_not_per_channel_is_refused():
    model = _conv_model([N("Mul", ["c", "s"], ["y"], name="mul")], inits=[const("s", [6])])
    graph, report, original = run_passes(model, fuse_epilogue, fuse_elementwise)
    assert [kernel_kind(n) for n in graph.nodes] == ["conv", "eltwise"]
    (d,) = _refusals(report)
    assert d.rule == "fuse_scale_shift" and "neither per-channel nor scalar" in d.reason
    assert_same(graph, original)


def test_conv_read_twice_is_refused():
    model = _conv_model([N("Relu", ["c"], ["y"], name="relu"), N("Sigmoid", ["c"], ["z"], name="sig")],
                        outputs=("y", "z"))
    graph, report, original = run_passes(model, fuse_epilogue)
    assert [kernel_kind(n) for n in graph.nodes] == ["conv", "eltwise", "eltwise"]
    assert graph.nodes[0].attrs["sources"] == ("conv",)
    (d,) = _refusals(report)
    assert d.rule == "fuse_activation" and d.reason == "not fused: conv output read by 2 nodes"
    graph, report, original = run_passes(model, fuse_epilogue, fuse_elementwise)
    assert [n.op for n in graph.nodes] == ["nbtrt.conv", "nbtrt.eltwise", "nbtrt.eltwise"]
    assert_same(graph, original)


def test_graph_output_stops_the_chain():
    model = _conv_model([N("Relu", ["c"], ["y"], name="relu")], outputs=("c", "y"))
    graph, report, original = run_passes(model, fuse_epilogue)
    assert len(graph.nodes) == 2
    (d,) = _refusals(report)
    assert "graph output" in d.reason
    assert_same(graph, original)


def test_broadcast_residual_is_refused_then_eltwise():
    model = _conv_model([N("Add", ["c", "r"], ["s"], name="res"), N("Relu", ["s"], ["y"], name="relu")],
                        extra_inputs=[("r", [2, 8, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue, fuse_elementwise)
    assert [kernel_kind(n) for n in graph.nodes] == ["conv", "eltwise"]
    assert graph.nodes[1].attrs["sources"] == ("res", "relu")
    (d,) = _refusals(report)
    assert d.rule == "fuse_residual" and d.reason == \
        "not fused: residual shape [2,8,1,1] differs from the conv result [2,8,6,6]"
    assert_same(graph, original)


def test_second_residual_is_refused():
    model = _conv_model([N("Add", ["c", "r1"], ["s1"], name="res1"), N("Add", ["s1", "r2"], ["y"], name="res2")],
                        extra_inputs=[("r1", [2, 8, 6, 6]), ("r2", [2, 8, 6, 6])])
    graph, report, original = run_passes(model, fuse_epilogue)
    assert graph.nodes[0].attrs["sources"] == ("conv", "res1") and len(graph.nodes) == 2
    (d,) = _refusals(report)
    assert d.rule == "fuse_residual" and d.reason == "not fused: second residual"
    assert_same(graph, original)


def test_two_convs_meeting_in_a_residual():
    nodes = [N("Conv", ["x", "w1"], ["c1"], name="main", kernel_shape=[1, 1]),
             N("Conv", ["x", "w2"], ["c2"], name="short", kernel_shape=[1, 1]),
             N("Sum", ["c1", "c2"], ["s"], name="sum"), N("Relu", ["s"], ["y"], name="relu")]
    model = make_model(nodes, [("x", [1, 4, 5, 5])], ["y"], [const("w1", [8, 4, 1, 1]), const("w2", [8, 4, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue)
    assert [n.attrs["sources"] for n in graph.nodes] == [("main",), ("short", "sum", "relu")]
    assert len(report.applied("fuse_residual")) == 1 and not _refusals(report)
    assert describe(graph.nodes[1].attrs["epilogues"][0]) == "s0 = Add(in2, acc); s1 = Relu(s0)"
    assert_same(graph, original)


def test_conv_with_computed_bias_and_conv_transpose():
    nodes = [N("ConvTranspose", ["x", "w", "b"], ["c"], name="deconv", strides=[2, 2], kernel_shape=[2, 2]),
             N("Relu", ["c"], ["y"], name="relu")]
    model = make_model(nodes, [("x", [1, 4, 3, 3]), ("b", [6])], ["y"], [const("w", [4, 6, 2, 2])])
    graph, report, original = run_passes(model, fuse_epilogue)
    assert [n.op for n in graph.nodes] == ["Reshape", "nbtrt.conv_transpose"]
    assert graph.nodes[1].attrs["splits"] == (6,) and graph.nodes[1].inputs[2].type.shape == (6, 1, 1)
    assert_same(graph, original)


@pytest.mark.parametrize("c_kind,beta", [("const", 1.0), ("const", 0.5), ("input", 1.0), ("input", 0.5),
                                         ("none", 1.0), ("const", 0.0)])
def test_gemm_bias_relu(c_kind, beta):
    ins = ["a", "w"] + {"const": ["cc"], "input": ["ci"], "none": []}[c_kind]
    nodes = [N("Gemm", ins, ["g"], name="gemm", alpha=1.5, beta=beta, transB=1),
             N("Add", ["g", "bias"], ["a2"], name="bias"), N("Relu", ["a2"], ["y"], name="relu")]
    model = make_model(nodes, [("a", [3, 5]), ("ci", [3, 1])], ["y"],
                       [const("w", [4, 5]), const("cc", [4]), const("bias", [4])])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert kernel_kind(g) == "gemm" and g.attrs["n_base"] == 2 and g.attrs["splits"] == (4,)
    assert g.attrs["sources"] == ("gemm", "bias", "relu")
    assert len(report.applied("fuse_bias")) == 1 and len(report.applied("fuse_activation")) == 1
    assert_same(graph, original)


@pytest.mark.parametrize("a_shape,splits", [([3, 5], (4,)), ([2, 3, 5], ())])
def test_matmul_add(a_shape, splits):
    nodes = [N("MatMul", ["a", "w"], ["m"], name="mm"), N("Add", ["m", "bias"], ["y"], name="add")]
    model = make_model(nodes, [("a", a_shape)], ["y"], [const("w", [5, 4]), const("bias", [4])])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert kernel_kind(g) == "gemm" and g.attrs["sources"] == ("mm", "add") and g.attrs["splits"] == splits
    assert len(report.applied("fuse_bias")) == 1
    assert_same(graph, original)


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"])
def test_pool_followed_by_activation(pool):
    attrs = {"kernel_shape": [2, 2]} if not pool.startswith("Global") else {}
    nodes = [N(pool, ["x"], ["p"], name="pool", **attrs), N("Relu", ["p"], ["y"], name="relu")]
    model = make_model(nodes, [("x", [1, 3, 4, 4])], ["y"])
    graph, report, original = run_passes(model, fuse_epilogue)
    (g,) = graph.nodes
    assert kernel_kind(g) == "pool" and g.attrs["n_base"] == 1 and g.attrs["sources"] == ("pool", "relu")
    assert g.attrs["splits"] == (3,) and len(report.applied("fuse_activation")) == 1
    assert_same(graph, original)


def test_max_pool_with_read_indices_stays_plain():
    nodes = [N("MaxPool", ["x"], ["p", "i"], name="pool", kernel_shape=[2, 2])]
    model = make_model(nodes, [("x", [1, 3, 4, 4])], ["p", "i"])
    model.graph.output[1].type.tensor_type.elem_type = onnx.TensorProto.INT64
    graph, report, original = run_passes(model, fuse_epilogue)
    assert [n.op for n in graph.nodes] == ["MaxPool"]
    (d,) = _refusals(report, "form_group")
    assert "Indices" in d.reason


# -- a real network ----------------------------------------------------------------------------------
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _light_input(graph):
    (x,) = graph.inputs
    n = int(np.prod(x.type.shape))
    return {x.name: (np.arange(n).reshape(x.type.shape) / n).astype(np.float32)}


def _randomize_weights(graph):
    """He-scaled random conv/gemm weights and positive per-channel parameters (BN variances too), so that
    the check sees more than the light model's constant weights."""
    rng = np.random.default_rng(7)
    for name, v in sorted(graph.constants.items()):
        if v.const.dtype == np.float32 and v.const.ndim >= 2:
            v.const = (rng.standard_normal(v.const.shape) * np.sqrt(2 / np.prod(v.const.shape[1:]))).astype(np.float32)
        elif v.const.dtype == np.float32:
            v.const = rng.uniform(0.5, 1.5, v.const.shape).astype(np.float32)


@pytest.mark.parametrize("random_weights", [False, True])
def test_light_resnet50_residuals_in_conv_epilogues(random_weights):
    from nbtrt.passes import fold_affine, fold_batchnorm
    path = os.path.join(LIGHT, "light_resnet50.onnx")
    original, graph, report = nbtrt.parse(path), nbtrt.parse(path), BuildReport()
    if random_weights:
        for g in (original, graph):
            fold_constants.run(g, BuildConfig(), BuildReport())
            _randomize_weights(g)
    for p in (fold_constants, remove_identity, dead_code, fold_batchnorm, fold_affine, fuse_epilogue,
              fuse_elementwise, dead_code):
        p.run(graph, BuildConfig(), report)
    graph.verify()
    op_of = {n.name: n.op for n in original.nodes}
    convs = [n for n in graph.nodes if kernel_kind(n) == "conv"]
    in_convs = [op_of[s] for n in convs for s in n.attrs["sources"]]
    assert in_convs.count("Sum") == 16 and in_convs.count("Relu") == 49 and in_convs.count("Conv") == 53
    assert len(report.applied("fuse_residual")) == 16
    assert not any(n.op in ("Sum", "Relu", "Add", "Mul", "BatchNormalization") for n in graph.nodes)
    assert [kernel_kind(n) for n in graph.nodes].count("pool") == 2
    assert not [d for d in report.decisions if d.pass_name == "fuse_epilogue" and not d.applied]
    inputs = _light_input(original)
    assert_same(graph, original, inputs, rtol=1e-4)
    if random_weights:  # not a constant answer: the logits before the softmax differ between classes
        logits = reference.run(graph, inputs, outputs=[graph.nodes[-1].inputs[0].name])
        assert np.ptp(next(iter(logits.values()))) > 1e-3


def test_residual_with_symbolic_batch():
    nodes = [N("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]), N("Add", ["c", "r"], ["y"], name="res")]
    model = make_model(nodes, [("x", ["N", 4, 3, 3]), ("r", ["N", 4, 3, 3])], ["y"], [const("w", [4, 4, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue)
    assert len(graph.nodes) == 1 and len(report.applied("fuse_residual")) == 1
    assert_same(graph, original, random_inputs(original, {"N": 3}))
