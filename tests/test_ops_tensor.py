"""Shape inference, reference kernels and legacy-opset upgrades of the tensor / shape / reduction /
quantization ops (nbtrt/ops/tensor.py, nbtrt/reference/tensor.py, nbtrt/frontends/onnx_upgrade.py)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nbtrt.errors import AttributeValueError, ShapeError
from nbtrt.frontends.onnx_upgrade import upgrade
from nbtrt.ir import Graph, TensorType
from nbtrt.ops import fill_attributes, infer_node
from nbtrt.reference import run
from nbtrt.reference.tensor import KERNELS

BIG = 2**63 - 1


def T(*shape, dtype="float32"):
    return TensorType(dtype, shape)


def make(op, inputs, attrs=None, n_out=1):
    """A one-node graph; inputs are TensorTypes (graph inputs), arrays (constants) or None."""
    g = Graph()
    values = []
    for i, x in enumerate(inputs):
        if x is None:
            values.append(None)
        elif isinstance(x, TensorType):
            values.append(g.add_input(f"x{i}", x))
        else:
            values.append(g.add_constant(f"c{i}", np.asarray(x)))
    node = g.add_node(op, values, n_outputs=n_out, attrs=attrs or {}, name="n1")
    fill_attributes(node)
    return node


def infer(op, inputs, attrs=None, n_out=1):
    node = make(op, inputs, attrs, n_out)
    infer_node(node)
    types = [v.type for v in node.outputs]
    return types[0] if n_out == 1 else types


def shape(op, inputs, attrs=None):
    return infer(op, inputs, attrs).shape


def i64(*values):
    return np.array(values, dtype=np.int64)


# -- shape inference -------------------------------------------------------------------------------

@pytest.mark.parametrize("data, target, expected", [
    (T("N", 512, 1, 1), i64(0, -1), ("N", 512)),
    (T("N", 3, 4), i64(-1, 12), ("N", 12)),
    (T("N", 3, 4), i64(0, 2, -1), ("N", 2, 6)),
    (T(2, 3, 4), i64(4, -1), (4, 6)),
    (T("N", "C"), i64(-1), (None,)),
    (T(2, 3, 4), T(3, dtype="int64"), (None, None, None)),
])
def test_reshape(data, target, expected):
    assert shape("Reshape", [data, target]) == expected


def test_reshape_allowzero_keeps_zero():
    assert shape("Reshape", [T(0, 3), i64(0, 3)], {"allowzero": 1}) == (0, 3)


@pytest.mark.parametrize("data, target, words", [
    (T(2, 3), i64(4, 2), "6 elements"),
    (T(2, 3), i64(-1, -1), "more than one -1"),
    (T(2, 3), i64(4, -1), "not a multiple"),
    (T(2, 3), i64(-2, 3), "negative"),
])
def test_reshape_errors(data, target, words):
    with pytest.raises(ShapeError, match=f"'n1'.*{words}"):
        infer("Reshape", [data, target])


@pytest.mark.parametrize("axis, expected", [(1, ("N", 48)), (0, (1, None)), (-2, (None, 16)), (4, (None, 1))])
def test_flatten(axis, expected):
    assert shape("Flatten", [T("N", 3, 4, 4)], {"axis": axis}) == expected


def test_flatten_axis_out_of_range():
    with pytest.raises(AttributeValueError, match="'n1'.*axis 5"):
        infer("Flatten", [T("N", 3, 4, 4)], {"axis": 5})


def test_transpose():
    assert shape("Transpose", [T("N", 3, 5)]) == (5, 3, "N")
    assert shape("Transpose", [T("N", 3, 5)], {"perm": (0, 2, 1)}) == ("N", 5, 3)
    with pytest.raises(AttributeValueError, match="'n1'.*not a permutation"):
        infer("Transpose", [T("N", 3, 5)], {"perm": (0, 0, 1)})


def test_squeeze_unsqueeze():
    assert shape("Squeeze", [T("N", 1, 5), i64(1)]) == ("N", 5)
    assert shape("Squeeze", [T(1, 3, 1, 5)]) == (3, 5)
    assert shape("Squeeze", [T(1, "N", 1, 5)]) is None  # N may be 1
    assert shape("Squeeze", [T("N", 1, 5), T(1, dtype="int64")]) == (None, None)
    assert shape("Unsqueeze", [T("N", 5), i64(0, -1)]) == (1, "N", 5, 1)
    with pytest.raises(ShapeError, match="'n1'.*size is not 1"):
        infer("Squeeze", [T("N", 2, 5), i64(1)])
    with pytest.raises(AttributeValueError, match="'n1'.*out of range"):
        infer("Unsqueeze", [T("N", 5), i64(3)])


def test_concat():
    assert shape("Concat", [T("N", 2), T("N", 3)], {"axis": 1}) == ("N", 5)
    assert shape("Concat", [T("N", 2), T(None, 3)], {"axis": -1}) == ("N", 5)
    assert shape("Concat", [T("N", 2), T("M", 2)], {"axis": 0}) == (None, 2)
    assert shape("Concat", [T(1, 2), T(3, 2)], {"axis": 0}) == (4, 2)
    with pytest.raises(ShapeError, match="'n1'.*differ in dim 0"):
        infer("Concat", [T(2, 3), T(4, 3)], {"axis": 1})
    with pytest.raises(AttributeValueError, match="'n1'.*axis 2 is out of range"):
        infer("Concat", [T(2, 3), T(2, 3)], {"axis": 2})
    with pytest.raises(AttributeValueError, match="required attribute 'axis'"):
        make("Concat", [T(2, 3)], {})


def test_split():
    assert [t.shape for t in infer("Split", [T("N", 6)], {"axis": 1}, n_out=3)] == [("N", 2)] * 3
    assert [t.shape for t in infer("Split", [T("N", 6), i64(1, 5)], {"axis": 1}, n_out=2)] == [("N", 1), ("N", 5)]
    assert [t.shape[1] for t in infer("Split", [T(2, 7)], {"axis": 1, "num_outputs": 3}, n_out=3)] == [3, 3, 1]
    assert [t.shape for t in infer("Split", [T("N", 6)], {"axis": 0}, n_out=2)] == [(None, 6)] * 2
    with pytest.raises(ShapeError, match="'n1'.*add up"):
        infer("Split", [T("N", 6), i64(1, 4)], {"axis": 1}, n_out=2)


@pytest.mark.parametrize("inputs, expected", [
    ([i64(2), i64(-1), i64(1)], ("N", 7)),
    ([i64(-1), i64(-BIG), i64(1), i64(-1)], ("N", 10)),
    ([i64(0), i64(BIG), i64(0)], ("N", 10)),
    ([i64(1), i64(3), i64(0)], (None, 10)),
    ([i64(0, 1), i64(100, 100), i64(0, 1), i64(1, 3)], (None, 3)),
    ([i64(8), i64(1), i64(1), i64(-3)], ("N", 3)),
    ([i64(2), T(1, dtype="int64"), i64(1)], ("N", None)),
])
def test_slice(inputs, expected):
    assert shape("Slice", [T("N", 10)] + inputs) == expected


def test_slice_zero_step():
    with pytest.raises(ShapeError, match="'n1'.*contain 0"):
        infer("Slice", [T(4), i64(0), i64(4), i64(0), i64(0)])


def test_pad():
    assert shape("Pad", [T("N", 3, 4, 4), i64(0, 0, 1, 1, 0, 0, 1, 1)]) == ("N", 3, 6, 6)
    assert shape("Pad", [T("N", 3, 4, 4), i64(1, 2, 1, 2), None, i64(2, 3)]) == ("N", 3, 6, 8)
    assert shape("Pad", [T("N", 3), T(4, dtype="int64")]) == (None, None)
    with pytest.raises(ShapeError, match="'n1'.*2 x 2"):
        infer("Pad", [T("N", 3), i64(1, 1)])
    with pytest.raises(AttributeValueError, match="'n1'.*mode 'mirror'"):
        infer("Pad", [T("N", 3), i64(0, 1, 0, 1)], {"mode": "mirror"})


def test_resize():
    f32 = np.float32
    assert shape("Resize", [T("N", 3, 4, 4), None, np.array([1, 1, 2, 2], f32)]) == ("N", 3, 8, 8)
    assert shape("Resize", [T("N", 3, 5), None, np.array([0.5], f32)], {"axes": (2,)}) == ("N", 3, 2)
    assert shape("Resize", [T("N", 3, 4, 4), None, None, i64(7, 9)], {"axes": (2, 3)}) == ("N", 3, 7, 9)
    assert shape("Resize", [T(1, 3, 4, 4), None, None, i64(7, 9)],
                 {"axes": (2, 3), "keep_aspect_ratio_policy": "not_larger"}) == (1, 3, 7, 7)
    assert shape("Resize", [T("N", 3, 4, 4), None, np.zeros(0, f32), T(4, dtype="int64")]) == (None,) * 4
    with pytest.raises(ShapeError, match="'n1'.*exactly one of scales and sizes"):
        infer("Resize", [T(1, 3, 4, 4), None, np.ones(4, f32), i64(1, 3, 4, 4)])
    with pytest.raises(AttributeValueError, match="'n1'.*mode 'area'"):
        infer("Resize", [T(1, 4), None, np.ones(2, f32)], {"mode": "area"})


def test_shape_gather():
    assert infer("Shape", [T("N", 3, 4)]) == T(3, dtype="int64")
    assert shape("Shape", [T("N", 3, 4)], {"start": 1, "end": -1}) == (1,)
    assert shape("Gather", [T(5, 4), i64(0, -5, 4).reshape(3, 1)]) == (3, 1, 4)
    assert shape("Gather", [T("N", 4, 2), T("K", dtype="int64")], {"axis": 1}) == ("N", "K", 2)
    with pytest.raises(ShapeError, match="'n1'.*index 5 is out of range"):
        infer("Gather", [i64(1, 2, 3, 4, 5), i64(5)])
    with pytest.raises(AttributeValueError, match="'n1'.*axis 2"):
        infer("Gather", [T(5, 4), i64(0)], {"axis": 2})


def test_expand_constant_of_shape_dropout():
    assert shape("Expand", [T(3, 1), i64(2, 1, 6)]) == (2, 3, 6)
    assert shape("Expand", [T("N", 1), i64(1, 4)]) == ("N", 4)
    with pytest.raises(ShapeError, match="'n1'.*do not broadcast"):
        infer("Expand", [T(3, 2), i64(4)])
    assert infer("ConstantOfShape", [i64(2, 3)], {"value": np.array([7], np.int64)}) == T(2, 3, dtype="int64")
    assert infer("ConstantOfShape", [T(2, dtype="int64")]) == T(None, None)
    y, mask = infer("Dropout", [T("N", 4)], n_out=2)
    assert y == T("N", 4) and mask == T("N", 4, dtype="bool")


@pytest.mark.parametrize("axes, attrs, expected", [
    (i64(2, 3), {}, ("N", 3, 1, 1)),
    (i64(-1, -2), {"keepdims": 0}, ("N", 3)),
    (None, {}, (1, 1, 1, 1)),
    (i64(), {"keepdims": 0}, ()),
    (None, {"noop_with_empty_axes": 1}, ("N", 3, 4, 4)),
    (T(2, dtype="int64"), {"keepdims": 0}, (None, None)),
])
def test_reduce(axes, attrs, expected):
    for op in ("ReduceSum", "ReduceMean", "ReduceMax"):
        assert shape(op, [T("N", 3, 4, 4), axes], attrs) == expected


def test_reduce_axis_out_of_range():
    with pytest.raises(AttributeValueError, match="'n1'.*axis 4"):
        infer("ReduceMean", [T("N", 3, 4, 4), i64(4)])


def test_quantize_types():
    f32 = np.float32
    assert infer("QuantizeLinear", [T("N", 3), f32(0.1)]) == T("N", 3, dtype="uint8")
    assert infer("QuantizeLinear", [T("N", 3), f32(0.1), np.int8(0)]).dtype == "int8"
    assert infer("QuantizeLinear", [T("N", 3), f32(0.1)], {"output_dtype": "int16"}).dtype == "int16"
    assert infer("QuantizeLinear", [T("N", 3), np.ones(3, f32)]).dtype == "uint8"
    assert infer("QuantizeLinear", [T(4, 6), np.ones((2, 6), f32)], {"axis": 0, "block_size": 3}).dtype == "uint8"
    assert infer("DequantizeLinear", [T("N", 3, dtype="int8"), np.float16(0.5)]) == T("N", 3, dtype="float16")
    with pytest.raises(ShapeError, match="'n1'.*per-axis scale"):
        infer("QuantizeLinear", [T("N", 3), np.ones(4, f32)])
    with pytest.raises(ShapeError, match="'n1'.*blocked scale"):
        infer("QuantizeLinear", [T(4, 6), np.ones((3, 6), f32)], {"axis": 0, "block_size": 3})
    with pytest.raises(AttributeValueError, match="'n1'.*contradicts"):
        infer("QuantizeLinear", [T("N", 3), f32(0.1), np.int8(0)], {"output_dtype": "uint8"})
    with pytest.raises(ShapeError, match="'n1'.*zero point is uint8"):
        infer("DequantizeLinear", [T(3, dtype="int8"), f32(0.1), np.uint8(0)])


# -- reference kernels -----------------------------------------------------------------------------

def kernel(op, *args, attrs=None, n_out=1):
    node = make(op, [None if a is None else T(*np.shape(a), dtype=np.asarray(a).dtype.name) for a in args],
                attrs, n_out)
    return KERNELS[op](node, *args)


@pytest.mark.parametrize("start, end, step", [
    (0, 10, 1), (-3, BIG, 1), (-1, -BIG, -1), (8, 1, -3), (20, -20, -2), (-20, 20, 3), (5, 2, 1), (-100, 3, -1),
])
def test_slice_kernel_matches_python(start, end, step):
    x = np.arange(10)
    got = kernel("Slice", x, i64(start), i64(end), i64(0), i64(step))
    py_end = None if step < 0 and end < -10 else end
    np.testing.assert_array_equal(got, x[start:py_end:step])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_kernel(mode):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = kernel("Pad", x, i64(1, 2, 2, 1), np.float32(9), attrs={"mode": mode})
    kw = {"constant_values": 9} if mode == "constant" else {}
    np.testing.assert_array_equal(got, np.pad(x, [(1, 2), (2, 1)], mode=mode, **kw))
    cropped = kernel("Pad", x, i64(-1, 0, 0, -2), attrs={"mode": mode})
    np.testing.assert_array_equal(cropped, x[1:, :2])


def test_gather_reshape_expand_kernels():
    x = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(kernel("Gather", x, i64(-1, 0), attrs={"axis": 1}), x[:, [3, 0]])
    assert kernel("Reshape", x, i64(0, 2, -1)).shape == (3, 2, 2)
    assert kernel("Expand", np.ones((3, 1)), i64(2, 1, 4)).shape == (2, 3, 4)
    np.testing.assert_array_equal(kernel("Shape", x), i64(3, 4))
    assert kernel("Shape", x).dtype == np.int64


def test_reduce_kernels_empty_set():
    x = np.zeros((2, 0), np.float32)
    np.testing.assert_array_equal(kernel("ReduceSum", x, i64(1)), np.zeros((2, 1)))
    assert np.isnan(kernel("ReduceMean", x, i64(1))).all()
    assert (kernel("ReduceMax", x, i64(1), attrs={"keepdims": 0}) == -np.inf).all()


def test_resize_linear_align_corners():
    x = np.array([[[[1, 2], [3, 4]]]], np.float32)
    got = kernel("Resize", x, None, None, i64(1, 1, 3, 3),
                 attrs={"mode": "linear", "coordinate_transformation_mode": "align_corners"})
    np.testing.assert_allclose(got[0, 0], [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]])


def test_quant_round_trip_per_axis_and_blocked():
    x = np.array([[-1.0, 0.26, 2.5], [3.0, -0.74, 1.25]], np.float32)
    scale = np.array([0.5, 0.25, 1.0], np.float32)
    q = kernel("QuantizeLinear", x, scale, np.zeros(3, np.int8), attrs={"axis": 1})
    np.testing.assert_array_equal(q, [[-2, 1, 2], [6, -3, 1]])  # 2.5 and 1.25 round half to even
    np.testing.assert_allclose(kernel("DequantizeLinear", q, scale, np.zeros(3, np.int8), attrs={"axis": 1}),
                               [[-1, 0.25, 2], [3, -0.75, 1]])
    blocked = kernel("QuantizeLinear", x, np.array([[0.5, 1.0], [0.25, 2.0]], np.float32),
                     np.zeros((2, 2), np.int8), attrs={"axis": 1, "block_size": 2})
    np.testing.assert_array_equal(blocked, [[-2, 1, 2], [12, -3, 1]])


# -- legacy opset forms through the ONNX frontend --------------------------------------------------

def run_legacy(opset, node, inputs, out_dtype=TensorProto.FLOAT, initializers=()):
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(node.output[0], out_dtype, None)], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return list(run(model, inputs).values())[0]


X = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)


@pytest.mark.parametrize("opset, node, expected", [
    (7, helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 2.0]),
     X.repeat(2, axis=2).repeat(2, axis=3)),
    (10, helper.make_node("Resize", ["x", "s"], ["y"], mode="nearest"), X[:, :, [0, 0, 1, 2], :][..., [0, 1, 2]]),
    (7, helper.make_node("Slice", ["x"], ["y"], starts=[1, -2], ends=[3, BIG], axes=[2, 3]), X[:, :, 1:3, -2:]),
    (7, helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 0, 0, 0, 0, 2], value=5.0),
     np.pad(X, [(0, 0), (0, 0), (1, 0), (0, 2)], constant_values=5)),
    (11, helper.make_node("Squeeze", ["x"], ["y"], axes=[0]), X[0]),
    (11, helper.make_node("Unsqueeze", ["x"], ["y"], axes=[-1]), X[..., None]),
    (11, helper.make_node("ReduceSum", ["x"], ["y"], axes=[1], keepdims=0), X.sum(axis=1)),
    (17, helper.make_node("ReduceMax", ["x"], ["y"], axes=[-1]), X.max(axis=-1, keepdims=True)),
    (11, helper.make_node("Split", ["x"], ["y", "z"], axis=3, split=[1, 3]), X[..., :1]),
    (10, helper.make_node("Dropout", ["x"], ["y"], ratio=0.3), X),
])
def test_legacy_forms(opset, node, expected):
    inputs = {"x": X}
    if node.op_type == "Resize":
        inputs["s"] = np.array([1, 1, 4 / 3, 0.75], np.float32)
    np.testing.assert_array_equal(run_legacy(opset, node, inputs), expected)


def test_upsample_9_linear_is_asymmetric():
    x = np.array([[1.0, 3.0]], np.float32)
    node = helper.make_node("Upsample", ["x", "s"], ["y"], mode="linear")
    got = run_legacy(9, node, {"x": x}, initializers=[onnx.numpy_helper.from_array(
        np.array([1, 2], np.float32), "s")])
    np.testing.assert_allclose(got, [[1, 2, 3, 3]])


def test_upgrade_table():
    op, attrs, inputs = upgrade("Squeeze", 11, {"axes": (1,)}, ["x"])
    assert op == "Squeeze" and attrs == {} and inputs[0] == "x" and inputs[1].tolist() == [1]
    assert upgrade("Squeeze", 13, {}, ["x", "a"]) == ("Squeeze", {}, ["x", "a"])
    assert upgrade("Concat", 1, {}, ["a"])[1] == {"axis": 1}
    op, attrs, inputs = upgrade("Resize", 11, {"coordinate_transformation_mode": "tf_half_pixel_for_nn",
                                               "nearest_mode": "floor"}, ["x", None, "s"])
    assert attrs == {"coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_ceil"}
    with pytest.raises(AttributeValueError, match="tf_half_pixel_for_nn"):
        upgrade("Resize", 11, {"coordinate_transformation_mode": "tf_half_pixel_for_nn", "nearest_mode": "ceil"},
                ["x", None, "s"])
