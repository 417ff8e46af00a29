"""fold_affine: per-channel Mul / Add / Sub / Div by constants after a Conv / ConvTranspose / Gemm fold
into its weights and bias."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from helpers import RNG, assert_same, const, make_model, run_passes
from nbtrt.passes import fold_affine, fold_batchnorm
from test_fold_batchnorm import assert_light_same, light_models, ops, refusals

RULE = "fold_affine"


def chain_model(links, op="Conv", group=1, bias=True, c_in=4, c_out=6, extra_outputs=(), shared_w=False):
    """x -> op -> link -> link ... -> y; ``links`` holds (onnx op, constant shape, constant first)."""
    if op == "Gemm":
        inits, x = [const("w", [5, c_out])], ("x", [3, 5])
    else:
        w_shape = [c_out, c_in // group, 3, 3] if op == "Conv" else [c_in, c_out // group, 3, 3]
        inits, x = [const("w", w_shape)], ("x", ["N", c_in, 5, 5])
    inputs = ["x", "w"] + (["b"] if bias else [])
    inits += [const("b", [c_out])] if bias else []
    kw = {} if op == "Gemm" else {"group": group, "pads": [1, 1, 1, 1]}
    nodes = [helper.make_node(op, inputs, ["t0"], name="conv", **kw)]
    if shared_w:
        nodes.append(helper.make_node(op, ["x", "w"], ["other"], name="conv_other", **kw))
        extra_outputs = tuple(extra_outputs) + ("other",)
    for i, (link, shape, const_first) in enumerate(links):
        k = f"k{i}"
        arr = RNG.standard_normal(shape) * 0.5 + (1.0 if link in ("Mul", "Div") else 0.0)
        inits.append(numpy_helper.from_array(arr.astype(np.float32), k))
        args = [k, f"t{i}"] if const_first else [f"t{i}", k]
        out = "y" if i == len(links) - 1 else f"t{i + 1}"
        nodes.append(helper.make_node(link, args, [out], name=f"{link.lower()}{i}"))
    return make_model(nodes, [x], ["y"] + list(extra_outputs), inits)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("k_shape", [[6, 1, 1], [1, 6, 1, 1], [], [1], [1, 1, 1]])
def test_conv_mul_add_fold(k_shape, bias):
    graph, report, original = run_passes(chain_model([("Mul", k_shape, False), ("Add", k_shape, False)],
                                                     bias=bias), fold_affine)
    assert len(report.applied(RULE)) == 2 and ops(graph) == ["Conv"]
    conv = graph.nodes[0]
    assert conv.name == "conv" and conv.outputs[0].name == "y" and graph.outputs == [conv.outputs[0]]
    assert len(graph.constants) == 2
    assert_same(graph, original)


def test_long_chain_with_every_op_and_order():
    links = [("Mul", [6, 1, 1], False), ("Add", [6, 1, 1], True), ("Mul", [], True), ("Sub", [1, 6, 1, 1], False),
             ("Sub", [6, 1, 1], True), ("Div", [6, 1, 1], False), ("Add", [1], False)]
    graph, report, original = run_passes(chain_model(links), fold_affine)
    assert len(report.applied(RULE)) == len(links) and ops(graph) == ["Conv"]
    assert_same(graph, original)


@pytest.mark.parametrize("group,c_in,c_out", [(1, 4, 6), (2, 4, 6), (4, 4, 4)])
def test_grouped_conv_and_conv_transpose(group, c_in, c_out):
    links = [("Mul", [c_out, 1, 1], False), ("Add", [c_out, 1, 1], False)]
    for op in ("Conv", "ConvTranspose"):
        graph, report, original = run_passes(chain_model(links, op, group, True, c_in, c_out), fold_affine)
        assert len(report.applied(RULE)) == 2 and ops(graph) == [op]
        assert_same(graph, original)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm(trans_b, bias):
    model = chain_model([("Mul", [6], False), ("Add", [1, 6], True), ("Mul", [], False)], "Gemm", bias=bias)
    if trans_b:  # store W transposed and say so
        w = model.graph.initializer[0]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), "w"))
        model.graph.node[0].attribute.append(helper.make_attribute("transB", 1))
    graph, report, original = run_passes(model, fold_affine)
    assert len(report.applied(RULE)) == 3 and ops(graph) == ["Gemm"]
    assert_same(graph, original)


@pytest.mark.parametrize("op,k_shape", [("Conv", [1, 1, 5, 5]), ("Conv", [6, 5, 5]), ("Conv", [2, 6, 1, 1]),
                                        ("Conv", [1, 1, 1, 6, 1, 1]), ("Gemm", [3, 1]), ("Gemm", [3, 6])])
def test_not_per_channel_refused(op, k_shape):
    graph, report, original = run_passes(chain_model([("Mul", k_shape, False)], op), fold_affine)
    assert refusals(report, RULE) == [f"not folded: the constant {k_shape} is not per output channel"]
    assert ops(graph) == [op, "Mul"]
    assert_same(graph, original, {"x": RNG.standard_normal([2, 4, 5, 5] if op == "Conv" else [3, 5])
                                  .astype(np.float32)} if k_shape[0] == 2 else None)


def test_shared_weights_refused():
    model = chain_model([("Mul", [6, 1, 1], False), ("Add", [6, 1, 1], False)], shared_w=True)
    graph, report, original = run_passes(model, fold_affine)
    assert refusals(report, RULE) == ["not folded: weights shared with another node"]
    assert ops(graph) == ["Conv", "Conv", "Mul", "Add"]
    assert_same(graph, original)


def test_conv_output_graph_output_refused():
    graph, report, original = run_passes(chain_model([("Mul", [6, 1, 1], False), ("Add", [6, 1, 1], False)],
                                                     extra_outputs=["t0"]), fold_affine)
    assert refusals(report, RULE) == ["not folded: Conv output is also a graph output"]
    assert len(report.applied(RULE)) == 0 and ops(graph) == ["Conv", "Mul", "Add"]
    assert_same(graph, original)


def test_mul_output_read_twice_stops_the_chain():
    """The Mul folds; the Add then sees a Conv whose output is a graph output: refused."""
    graph, report, original = run_passes(chain_model([("Mul", [6, 1, 1], False), ("Add", [6, 1, 1], False)],
                                                     extra_outputs=["t1"]), fold_affine)
    assert len(report.applied(RULE)) == 1
    assert refusals(report, RULE) == ["not folded: Conv output is also a graph output"]
    assert ops(graph) == ["Conv", "Add"] and graph.nodes[0].outputs[0].name == "t1"
    assert_same(graph, original)


def test_conv_output_read_by_others_refused():
    model = chain_model([("Mul", [6, 1, 1], False)])
    model.graph.node.append(helper.make_node("Relu", ["t0"], ["r"], name="relu"))
    model.graph.output.append(helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, None))
    graph, report, original = run_passes(model, fold_affine)
    assert refusals(report, RULE) == ["not folded: Conv output read by other nodes"]
    assert_same(graph, original)


def test_division_by_zero_and_reciprocal_refused():
    model = chain_model([("Div", [6, 1, 1], False)])
    k = model.graph.initializer[-1]
    arr = numpy_helper.to_array(k).copy()
    arr[2] = 0
    k.CopyFrom(numpy_helper.from_array(arr, k.name))
    graph, report, _ = run_passes(model, fold_affine)
    assert refusals(report, RULE) == ["not folded: the divisor has zeros"]
    graph, report, original = run_passes(chain_model([("Div", [6, 1, 1], True)]), fold_affine)
    assert not report.decisions and ops(graph) == ["Conv", "Div"]  # k / y is no affine map of y


def test_non_constant_operand_not_matched():
    model = chain_model([])
    model.graph.node[0].output[0] = "t0"
    model.graph.node.append(helper.make_node("Mul", ["t0", "s"], ["y"], name="mul"))
    model.graph.input.append(helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, [6, 1, 1]))
    graph, report, _ = run_passes(model, fold_affine)
    assert not report.decisions and ops(graph) == ["Conv", "Mul"]


# -- the model zoo's light models: Conv -> BN -> Mul -> Add (-> Relu) ---------------------------------

@pytest.mark.parametrize("randomize", [False, True])
@pytest.mark.parametrize("name,convs,folded,lone", [("light_inception_v2", 69, 69, 0),
                                                    ("light_densenet121", 121, 59, 62)])
def test_light_scale_form_folds(name, convs, folded, lone, randomize):
    """DenseNet's pre-activation BNs after a Concat or pool (62) stay as Mul + Add, followed by the
    model's own Mul + Add; every BN after a conv folds, and so do the Mul + Add after it."""
    graph, report, original = light_models(name, fold_batchnorm, fold_affine, randomize=randomize)
    assert len(report.applied("fold_batchnorm")) == folded and not refusals(report)
    assert len(report.applied("batchnorm_to_scale_shift")) == lone
    assert len(report.applied(RULE)) == 2 * folded and not refusals(report, RULE)
    assert "BatchNormalization" not in ops(graph) and ops(graph).count("Conv") == convs
    assert ops(graph).count("Mul") == ops(graph).count("Add") == 2 * lone
    assert_light_same(graph, original)
