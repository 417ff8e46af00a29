"""fuse_elementwise: element-wise chains and DAGs become one nbtrt.eltwise group each."""

import numpy as np
import onnx
from hypothesis import given, settings, strategies as st
from onnx import helper

from helpers import assert_same, const, make_model, run_passes

from nbtrt.groups import describe, kernel_kind
from nbtrt.passes import dead_code, fuse_elementwise, fuse_epilogue

N = helper.make_node


def _applied(report):
    return report.applied("fuse_elementwise")


def test_dag_with_broadcasting_is_one_group():
    nodes = [N("Mul", ["x", "y"], ["m"], name="mul"), N("Add", ["m", "z"], ["out"], name="add")]
    model = make_model(nodes, [("x", [2, 3, 1]), ("y", [1, 4]), ("z", [3, 1])], ["out"])
    graph, report, original = run_passes(model, fuse_elementwise)
    (g,) = graph.nodes
    assert kernel_kind(g) == "eltwise" and g.attrs["base"] is None and g.attrs["n_base"] == 0
    assert g.attrs["splits"] == () and g.attrs["sources"] == ("mul", "add")
    assert describe(g.attrs["epilogues"][0]) == "s0 = Mul(in0, in1); s1 = Add(s0, in2)"
    assert [v.name for v in g.inputs] == ["x", "y", "z"]
    assert g.outputs[0].name == "out" and g.outputs[0].type.shape == (2, 3, 4)
    assert len(_applied(report)) == 1
    assert_same(graph, original)


def test_diamond_is_one_group():
    nodes = [N("Exp", ["x"], ["e"], name="exp"), N("Neg", ["e"], ["n"], name="neg"),
             N("Sqrt", ["e"], ["s"], name="sqrt"), N("Sum", ["n", "s", "x"], ["out"], name="sum")]
    model = make_model(nodes, [("x", [3, 4])], ["out"])
    graph, report, original = run_passes(model, fuse_elementwise)
    (g,) = graph.nodes
    assert g.attrs["sources"] == ("exp", "neg", "sqrt", "sum")
    assert describe(g.attrs["epilogues"][0]) == "s0 = Exp(in0); s1 = Neg(s0); s2 = Sqrt(s0); s3 = Sum(s1, s2, in0)"
    assert_same(graph, original)


def test_value_read_outside_stays_a_separate_group():
    nodes = [N("Mul", ["x", "y"], ["m"], name="mul"), N("Relu", ["m"], ["r"], name="relu"),
             N("Tanh", ["r"], ["out1"], name="tanh"), N("Sigmoid", ["m"], ["out2"], name="sig")]
    model = make_model(nodes, [("x", [2, 3]), ("y", [2, 3])], ["out1", "out2"])
    graph, report, original = run_passes(model, fuse_elementwise)
    assert sorted(n.attrs["sources"] for n in graph.nodes) == [("mul",), ("relu", "tanh"), ("sig",)]
    assert all(kernel_kind(n) == "eltwise" for n in graph.nodes) and len(_applied(report)) == 3
    m = next(n for n in graph.nodes if n.attrs["sources"] == ("mul",))
    assert m.outputs[0].name == "m" and len(m.outputs[0].uses()) == 2
    assert_same(graph, original)


def test_graph_output_in_the_middle_is_not_absorbed():
    nodes = [N("Abs", ["x"], ["a"], name="abs"), N("Log", ["a"], ["out"], name="log")]
    model = make_model(nodes, [("x", [5])], ["a", "out"])
    graph, report, original = run_passes(model, fuse_elementwise)
    assert [n.attrs["sources"] for n in graph.nodes] == [("abs",), ("log",)]
    assert_same(graph, original)


def test_single_op_and_constants_and_clip():
    nodes = [N("Clip", ["x", "", "hi"], ["c"], name="clip"), N("Pow", ["c", "p"], ["q"], name="pow"),
             N("Softmax", ["q"], ["s"], name="softmax"), N("Reciprocal", ["s"], ["out"], name="rec")]
    inits = [helper.make_tensor("hi", onnx.TensorProto.FLOAT, [], [0.7]), const("p", [4])]
    model = make_model(nodes, [("x", [3, 4])], ["out"], inits)
    graph, report, original = run_passes(model, fuse_elementwise)
    assert [kernel_kind(n) for n in graph.nodes] == ["eltwise", "softmax", "eltwise"]
    assert graph.nodes[0].attrs["epilogues"][0][0].op == "Clip"
    assert describe(graph.nodes[2].attrs["epilogues"][0]) == "s0 = Reciprocal(in0)"
    x = {"x": np.abs(np.random.default_rng(3).standard_normal((3, 4))).astype(np.float32) + 0.1}
    assert_same(graph, original, x)


def test_where_and_cast():
    nodes = [N("Cast", ["x"], ["xd"], name="cast", to=onnx.TensorProto.DOUBLE),
             N("Cast", ["xd"], ["xf"], name="back", to=onnx.TensorProto.FLOAT),
             N("Where", ["cond", "xf", "y"], ["out"], name="where")]
    model = make_model(nodes, [("x", [2, 3]), ("y", [3])], ["out"])
    model.graph.input.append(helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [2, 1]))
    graph, report, original = run_passes(model, fuse_elementwise)
    where = graph.nodes[-1]
    assert kernel_kind(where) == "eltwise" and where.attrs["sources"] == ("cast", "back", "where")
    assert_same(graph, original)


def test_after_epilogue_fusion_only_leftovers_are_grouped():
    nodes = [N("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             N("Relu", ["c"], ["r"], name="relu"), N("Mul", ["r", "g"], ["m"], name="gate"),
             N("Add", ["m", "g"], ["out"], name="add")]
    model = make_model(nodes, [("x", [1, 2, 3, 3]), ("g", [1, 4, 1, 1])], ["out"], [const("w", [4, 2, 1, 1])])
    graph, report, original = run_passes(model, fuse_epilogue, fuse_elementwise)
    assert [n.attrs["sources"] for n in graph.nodes] == [("conv", "relu"), ("gate", "add")]
    assert describe(graph.nodes[1].attrs["epilogues"][0]) == "s0 = Mul(in0, in1); s1 = Add(s0, in1)"
    assert_same(graph, original)


UNARY = ["Relu", "Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Erf", "Softplus", "HardSwish"]
BINARY = ["Add", "Sub", "Mul", "Max", "Min"]


@st.composite
def dags(draw):
    """A random element-wise DAG over three broadcasting inputs; some values are graph outputs."""
    shapes = {"a": [2, 3, 4], "b": [3, 1], "c": [4]}
    values, nodes, outputs = list(shapes), [], []
    for i in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            op, ins = draw(st.sampled_from(UNARY)), [draw(st.sampled_from(values))]
        else:
            op, ins = draw(st.sampled_from(BINARY)), [draw(st.sampled_from(values)) for _ in range(2)]
        nodes.append(N(op, ins, [f"v{i}"], name=f"n{i}"))
        values.append(f"v{i}")
        if draw(st.integers(0, 3)) == 0:
            outputs.append(f"v{i}")
    if values[-1] not in outputs:
        outputs.append(values[-1])
    return make_model(nodes, list(shapes.items()), outputs)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_random_dags(model):
    graph, report, original = run_passes(model, dead_code, fuse_elementwise)
    assert all(kernel_kind(n) == "eltwise" for n in graph.nodes)
    names = [s for n in graph.nodes for s in n.attrs["sources"]]
    assert len(names) == len(set(names)) and set(names) <= {n.name for n in original.nodes}
    outputs = {id(v) for v in graph.outputs}
    for n in graph.nodes:  # no group result is computed twice, every group is needed
        assert n.outputs[0].uses() or id(n.outputs[0]) in outputs
    assert_same(graph, original)
