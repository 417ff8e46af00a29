"""ONNX frontend features: paths, bytes and protos; external data; Constant; dynamic dims; legacy forms."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nbtrt
from nbtrt import reference
from nbtrt.errors import ModelLoadError


def conv_model():
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Constant", [], ["k"], value_float=2.0),
             helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "k"], ["y"], name="scale")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 6, 6])],
                          initializer=[w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_path_bytes_and_proto_agree(tmp_path):
    m = conv_model()
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    outs = [reference.run(src, {"x": x})["y"] for src in (m, m.SerializeToString(), path, str(path))]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    g = nbtrt.parse(path)
    assert g.inputs[0].type.shape == ("batch", 3, 6, 6) and g.outputs[0].type.shape == ("batch", 4, 6, 6)
    assert "Conv(%x, %w)" in str(g)


def test_external_data(tmp_path):
    m = conv_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(conv_model(), path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)
    x = np.ones((1, 3, 6, 6), np.float32)
    np.testing.assert_allclose(reference.run(path, {"x": x})["y"], reference.run(m, {"x": x})["y"])
    with pytest.raises(ModelLoadError, match="external"):
        nbtrt.parse(path.read_bytes())
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match="weights.bin"):
        nbtrt.parse(path)


def test_opset_7_and_21_forms_agree():
    x = np.random.default_rng(2).standard_normal((2, 5)).astype(np.float32)
    clip7 = helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)
    clip21 = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 5])
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", -0.5), ("hi", 0.5))]
    m7 = helper.make_model(helper.make_graph([clip7], "g", [vi("x")], [vi("y")]),
                           opset_imports=[helper.make_opsetid("", 7)])
    m21 = helper.make_model(helper.make_graph([clip21], "g", [vi("x")], [vi("y")], initializer=inits),
                            opset_imports=[helper.make_opsetid("", 21)])
    np.testing.assert_array_equal(reference.run(m7, {"x": x})["y"], reference.run(m21, {"x": x})["y"])


def test_legacy_softmax_semantics():
    """Before opset 13, Softmax(axis=1) on [2,3,4] normalises over the flattened 3*4 elements."""
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3, 4])
    m = helper.make_model(helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=1)], "g",
                                            [vi("x")], [vi("y")]), opset_imports=[helper.make_opsetid("", 11)])
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    y = reference.run(m, {"x": x})["y"]
    np.testing.assert_allclose(y.reshape(2, -1).sum(1), 1, rtol=1e-6)
    assert y.shape == (2, 3, 4)


def test_declared_symbol_names_may_differ_from_inferred():
    """Exporters name the same dynamic dim differently on inputs and outputs (N vs Gemm_dim_0)."""
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                                            [vi("x", ["N", 3])], [vi("y", ["Relu_dim_0", 3])]),
                          opset_imports=[helper.make_opsetid("", 17)])
    assert nbtrt.parse(m).outputs[0].type.shape == ("N", 3)
