"""merge_parallel: convs with equal geometry on one tensor become one wider conv with one output each."""

from onnx import helper

from helpers import assert_same, const, make_model, run_passes
from nbtrt.groups import kernel_kind
from nbtrt.passes import fuse_epilogue, merge_parallel


def inception_like(n_branches=3, shared_w=False, kernel=1):
    nodes, inits, outs = [], [], []
    for i in range(n_branches):
        w = "w0" if shared_w else f"w{i}"
        if not shared_w or i == 0:
            inits.append(const(w, [2 + i, 4, kernel, kernel]))
        inits.append(const(f"b{i}", [2 if shared_w else 2 + i]))
        nodes += [helper.make_node("Conv", ["x", w, f"b{i}"], [f"c{i}"], name=f"conv{i}",
                                   pads=[kernel // 2] * 4),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        outs.append(f"r{i}")
    nodes.append(helper.make_node("Conv", ["x", "w3x3"], ["y3x3"], name="conv3x3", pads=[1, 1, 1, 1]))
    inits.append(const("w3x3", [3, 4, 3, 3]))
    return make_model(nodes, [("x", ["N", 4, 5, 5])], outs + ["y3x3"], inits)


def test_three_convs_merge_into_one():
    graph, report, original = run_passes(inception_like(), fuse_epilogue, merge_parallel)
    assert len(report.applied("merge_parallel_convs")) == 1
    convs = [n for n in graph.nodes if kernel_kind(n) == "conv"]
    assert len(convs) == 2  # the merged 1x1 and the 3x3
    merged = next(n for n in convs if len(n.outputs) == 3)
    assert merged.attrs["splits"] == (2, 3, 4)
    assert merged.attrs["sources"] == ("conv0", "relu0", "conv1", "relu1", "conv2", "relu2")
    assert [v.name for v in merged.outputs] == ["r0", "r1", "r2"]
    assert_same(graph, original)


def test_any_number_merges():
    graph, report, original = run_passes(inception_like(5, kernel=3), fuse_epilogue, merge_parallel)
    merged = report.applied("merge_parallel_convs")
    assert len(merged) == 1 and len(merged[0].nodes) == 11  # 5 conv+relu and the 3x3 conv
    assert sum(kernel_kind(n) == "conv" for n in graph.nodes) == 1
    assert_same(graph, original)


def test_shared_weights_refused():
    graph, report, original = run_passes(inception_like(2, shared_w=True), fuse_epilogue, merge_parallel)
    refused = [d for d in report.decisions if d.rule == "merge_parallel_convs" and not d.applied]
    assert len(refused) == 1 and "shared" in refused[0].reason
    assert_same(graph, original)
