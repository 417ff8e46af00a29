"""fold_constants, remove_identity, dead_code and bind_shapes."""

import numpy as np
import pytest
from onnx import helper, numpy_helper

from helpers import assert_same, const, make_model, run_passes
from nbtrt.config import BuildConfig
from nbtrt.errors import InputError
from nbtrt.passes import bind_shapes, dead_code, fold_constants, remove_identity


def _flatten_by_shape_model():
    """The PyTorch export of flatten: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
             helper.make_node("ConstantOfShape", ["wshape"], ["w"], name="cos",
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Mul", ["y", "w"], ["z"], name="mul")]
    inits = [i64("zero", 0), i64("axes", [0]), i64("minus1", [-1]), i64("wshape", [12])]
    return make_model(nodes, [("x", ["N", 3, 2, 2])], ["z"], inits)


def test_shape_chain_folds_once_static():
    graph, report, original = run_passes(_flatten_by_shape_model(), fold_constants)
    assert [n.op for n in graph.nodes] == ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Mul"]
    graph, report, original = run_passes(_flatten_by_shape_model(), bind_shapes, fold_constants, dead_code,
                                         config=BuildConfig(dims={"N": 2}))
    assert [n.op for n in graph.nodes] == ["Reshape", "Mul"]
    assert len(report.applied("fold")) == 5
    assert graph.nodes[0].inputs[1].const.tolist() == [2, -1]
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32)
    assert_same(graph, original, {"x": x})


def test_bind_shapes_rejects_contradiction():
    with pytest.raises(InputError, match="'x'"):
        run_passes(_flatten_by_shape_model(), bind_shapes, config=BuildConfig(input_shapes={"x": (2, 4, 2, 2)}))


def test_identity_and_dropout_removed_output_name_kept():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Dropout", ["r"], ["d"], name="drop"),
             helper.make_node("Identity", ["d"], ["y"], name="id")]
    graph, report, original = run_passes(make_model(nodes, [("x", [2, 3])], ["y"]), remove_identity)
    assert [n.op for n in graph.nodes] == ["Relu"] and graph.outputs[0].name == "y"
    assert len(report.applied("remove_identity")) == 2
    assert_same(graph, original)


def test_identity_of_input_to_output_is_kept():
    nodes = [helper.make_node("Identity", ["x"], ["y"], name="id")]
    graph, report, original = run_passes(make_model(nodes, [("x", [2])], ["y"]), remove_identity)
    assert [n.op for n in graph.nodes] == ["Identity"]
    assert "graph input" in report.decisions[0].reason


def test_dead_code():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="used"),
             helper.make_node("Conv", ["x", "w"], ["dead"], name="unused")]
    model = make_model(nodes, [("x", [1, 1, 3, 3])], ["r"], [const("w", [1, 1, 1, 1])])
    graph, report, original = run_passes(model, dead_code)
    assert [n.name for n in graph.nodes] == ["used"] and not graph.constants
