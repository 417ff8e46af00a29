"""Bad input raises one NbtrtError subclass that names the file, node or input — never a raw traceback."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import nbtrt
from nbtrt import reference
from nbtrt.errors import (AttributeValueError, GraphError, InputError, ModelLoadError, NbtrtError, ShapeError,
                          UnsupportedOpError)

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def relu_model():
    return model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", ["N", 3])], [vi("y", ["N", 3])])


def test_truncated_and_garbage_files(tmp_path):
    data = relu_model().SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        nbtrt.parse(p)
    p.write_text("this is not a model")
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        nbtrt.parse(p)
    with pytest.raises(ModelLoadError, match="missing.onnx"):
        nbtrt.parse(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError):
        nbtrt.parse(12)


def test_missing_initializer_names_node():
    m = model([helper.make_node("Add", ["x", "bias"], ["y"], name="add_bias")], [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(GraphError, match="add_bias.*'bias'"):
        nbtrt.parse(m)


def test_undefined_output():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [vi("z", [2])])
    with pytest.raises(GraphError, match="'z'"):
        nbtrt.parse(m)


def test_cycle():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2")]
    with pytest.raises(GraphError, match="cycle"):
        nbtrt.parse(model(nodes, [vi("x", [2])], [vi("b", [2])]))


def test_value_defined_twice():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Relu", ["x"], ["y"], name="b")]
    with pytest.raises(GraphError, match="defined twice"):
        nbtrt.parse(model(nodes, [vi("x", [2])], [vi("y", [2])]))


def test_dtype_contradiction():
    m = model([helper.make_node("Add", ["x", "i"], ["y"], name="mixed")],
              [vi("x", [2]), vi("i", [2], TensorProto.INT64)], [vi("y", [2])])
    with pytest.raises(ShapeError, match="mixed"):
        nbtrt.parse(m)


def test_shape_contradiction():
    m = model([helper.make_node("Add", ["x", "z"], ["y"], name="add")], [vi("x", [2, 3]), vi("z", [4])],
              [vi("y", [2, 3])])
    with pytest.raises(ShapeError, match="'add'.*broadcast"):
        nbtrt.parse(m)


def test_declared_output_contradicts_inference():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2, 3])], [vi("y", [3, 2])])
    with pytest.raises(ShapeError, match="'r'.*declared"):
        nbtrt.parse(m)


def test_attribute_out_of_range():
    m = model([helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=7)], [vi("x", [2, 3])], [vi("y", None)])
    with pytest.raises(AttributeValueError, match="flat"):
        nbtrt.parse(m)


def test_unknown_attribute():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r", alpha=1.0)], [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(AttributeValueError, match="'r'.*alpha"):
        nbtrt.parse(m)


def test_every_unsupported_op_is_listed():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("NonMaxSuppression", ["a"], ["b"], name="nms1"),
             helper.make_node("Relu", ["b"], ["c"]),
             helper.make_node("TopK", ["c"], ["d"], name="topk"),
             helper.make_node("Foo", ["d"], ["e"], name="custom", domain="my.domain")]
    m = model(nodes, [vi("x", [2])], [vi("e", [2])])
    m.opset_import.append(helper.make_opsetid("my.domain", 1))
    with pytest.raises(UnsupportedOpError) as e:
        nbtrt.parse(m)
    names = [n for n, _ in e.value.unsupported]
    assert names == ["nms1", "topk", "custom"]
    assert "NonMaxSuppression" in str(e.value) and "TopK" in str(e.value) and "my.domain::Foo" in str(e.value)


def test_old_opset_refused():
    with pytest.raises(ModelLoadError, match="opset 5"):
        nbtrt.parse(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])], opset=5))


def test_run_time_inputs():
    g = nbtrt.parse(relu_model())
    x = np.ones((4, 3), np.float32)
    with pytest.raises(InputError, match="missing input.*'x'"):
        reference.run(g, {})
    with pytest.raises(InputError, match="unknown input.*'X'"):
        reference.run(g, {"x": x, "X": x})
    with pytest.raises(InputError, match="'x' has dtype float64"):
        reference.run(g, {"x": x.astype(np.float64)})
    with pytest.raises(InputError, match="'x' has shape \\[4, 2\\]"):
        reference.run(g, {"x": x[:, :2]})
    with pytest.raises(InputError, match="rank"):
        reference.run(g, {"x": x[None]})
    # Non-contiguous arrays are accepted (made contiguous).
    y = reference.run(g, {"x": np.asfortranarray(np.random.rand(4, 3).astype(np.float32))})["y"]
    assert y.shape == (4, 3)


def test_symbolic_dim_bound_consistently():
    m = model([helper.make_node("Add", ["a", "b"], ["y"], name="add")], [vi("a", ["N", 2]), vi("b", ["N", 2])],
              [vi("y", ["N", 2])])
    with pytest.raises(InputError, match="N"):
        reference.run(m, {"a": np.ones((3, 2), np.float32), "b": np.ones((4, 2), np.float32)})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    try:
        nbtrt.parse(data)
    except NbtrtError:
        pass


def _conv_model_bytes() -> bytes:
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", F, [4, 3, 3, 3], rng.standard_normal(108).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    return model(nodes, [vi("x", [1, 3, 5, 5])], [vi("y", [1, 4])], inits=[w]).SerializeToString()


CONV = _conv_model_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(CONV) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(CONV)))
def test_damaged_models_never_crash(flips, cut):
    data = bytearray(CONV[:max(cut, len(CONV) // 2)])
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    try:
        g = nbtrt.parse(bytes(data))
    except NbtrtError:
        return
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)
    try:
        reference.run(g, {v.name: x for v in g.inputs})
    except NbtrtError:
        pass
