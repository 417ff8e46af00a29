"""eliminate_concat: producers write into their concat slice; inputs that cannot get a copy kernel."""

from onnx import helper

from helpers import assert_same, const, make_model, run_passes
from nbtrt.groups import kernel_kind
from nbtrt.passes import eliminate_concat, fuse_elementwise, fuse_epilogue, merge_parallel


def test_inception_block_has_no_concat_kernel():
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
             helper.make_node("Conv", ["x", "w2"], ["b"], name="c2"),
             helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[3, 3], pads=[1] * 4,
                              strides=[1, 1]),
             helper.make_node("Conv", ["p", "w3"], ["c"], name="c3"),
             helper.make_node("Concat", ["a", "b", "c"], ["y"], name="cat", axis=1)]
    inits = [const("w1", [2, 3, 1, 1]), const("w2", [3, 3, 1, 1]), const("w3", [4, 3, 1, 1])]
    model = make_model(nodes, [("x", [1, 3, 4, 4])], ["y"], inits)
    graph, report, original = run_passes(model, fuse_epilogue, merge_parallel, eliminate_concat)
    assert len(report.applied("concat_in_place")) == 1
    assert [kernel_kind(n) for n in graph.nodes] == ["conv", "pool", "conv", None]
    assert_same(graph, original)


def test_inputs_that_cannot_be_written_in_place_are_copied():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Concat", ["x", "r", "r2"], ["y"], name="cat", axis=1),
             helper.make_node("Sigmoid", ["x"], ["r2"], name="sig")]
    model = make_model(nodes, [("x", [1, 2, 3])], ["y", "r"])
    graph, report, original = run_passes(model, fuse_elementwise, eliminate_concat)
    copies = [d for d in report.decisions if d.rule == "concat_input_in_place"]
    assert len(copies) == 2 and {d.reason for d in copies} == {
        "copied 'x': it is a graph input or constant", "copied 'r': it is a graph output"}
    assert sum(kernel_kind(n) is not None for n in graph.nodes) == 4  # relu, sigmoid, 2 copies
    assert_same(graph, original)
