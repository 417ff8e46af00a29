"""The layer-by-layer Network API builds the same IR as the ONNX frontend; errors name the layer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import nbtrt
from nbtrt import reference
from nbtrt.errors import AttributeValueError, GraphError, NbtrtError, ShapeError


def weights(seed=0, c=3, hw=8):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.3
    k = 4 * (hw // 2) * (hw // 2) * 2
    return {"w1": f(4, c, 3, 3), "b1": f(4), "w2": f(4, c, 1, 1), "b2": f(4), "wf": f(10, k), "bf": f(10)}


def build_network(W, c=3, hw=8, batch="N"):
    net = nbtrt.Network("cnn")
    x = net.add_input("data", "float32", (batch, c, hw, hw))
    c1 = net.add_convolution(x, 4, (3, 3), W["w1"], W["b1"], padding=(1, 1), name="conv1")
    r1 = net.add_activation(c1, "relu", name="relu1")
    c2 = net.add_convolution(x, 4, (1, 1), W["w2"], W["b2"], name="conv2")
    r2 = net.add_activation(c2, "relu", name="relu2")
    cat = net.add_concatenation([r1, r2], axis=1, name="cat")
    p = net.add_pooling(cat, "max", window=(2, 2), name="pool")
    fc = net.add_fully_connected(p, 10, W["wf"], W["bf"], name="fc")
    net.mark_output(net.add_softmax(fc, axis=1, name="softmax"), "prob")
    return net


def build_onnx(W, c=3, hw=8, batch="N"):
    inits = [numpy_helper.from_array(a, n) for n, a in W.items()]
    nodes = [helper.make_node("Conv", ["data", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["data", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[1, 1],
                              pads=[0, 0, 0, 0], strides=[1, 1], dilations=[1, 1], group=1),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Concat", ["r1", "r2"], ["cat"], name="cat", axis=1),
             helper.make_node("MaxPool", ["cat"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2],
                              pads=[0, 0, 0, 0], ceil_mode=0),
             helper.make_node("Flatten", ["p"], ["f"], name="fc_flatten", axis=1),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["fc"], name="fc", transB=1),
             helper.make_node("Softmax", ["fc"], ["prob"], name="softmax", axis=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, c, hw, hw])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch, 10])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def structure(graph):
    """(name, op, non-array attrs, input kinds, output type) per node: what both frontends must agree on."""
    kind = lambda v: None if v is None else "const" if v.is_constant else "input" if v.producer() is None else \
        v.producer().name
    return [(n.name, n.op, {k: a for k, a in n.attrs.items() if not isinstance(a, np.ndarray)},
             [kind(v) for v in n.inputs], [v.type for v in n.outputs]) for n in graph.nodes]


def test_same_ir_outputs_and_plan_as_onnx():
    W = weights()
    g_net, g_onnx = build_network(W).graph(), nbtrt.parse(build_onnx(W))
    assert structure(g_net) == structure(g_onnx)
    assert [v.type for v in g_net.outputs] == [v.type for v in g_onnx.outputs]
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y_net, y_onnx = reference.run(g_net, {"data": x})["prob"], reference.run(g_onnx, {"data": x})["prob"]
    np.testing.assert_array_equal(y_net, y_onnx)
    kinds = lambda r: sorted(k["kind"] for k in r.kernels)
    (_, r_net), (_, r_onnx) = nbtrt.plan(g_net), nbtrt.plan(g_onnx)
    assert kinds(r_net) == kinds(r_onnx) and len(r_net.kernels) == len(r_onnx.kernels) > 0


def test_graph_is_a_fresh_copy_per_call():
    net = build_network(weights())
    g1, g2 = net.graph(), net.graph()
    nbtrt.plan(g1)  # rewrites g1 in place
    assert len(g2.nodes) == 9 and g2.outputs[0].name == "prob"
    assert g1.constants["conv1_weights"].const is not g2.constants["conv1_weights"].const


def test_engine_in_simulator_matches_reference():
    W = weights(c=1, hw=8)
    net = build_network(W, c=1, hw=8, batch=1)
    x = np.random.default_rng(2).standard_normal((1, 1, 8, 8)).astype(np.float32)
    expected = reference.run(net.graph(), {"data": x})["prob"]
    engine = nbtrt.compile(net.graph())
    np.testing.assert_allclose(engine.run({"data": x})["prob"], expected, rtol=1e-4, atol=1e-5)


ONNX_FORMS = {  # layer call -> the ONNX node it must equal
    "sigmoid": (lambda n, x: n.add_activation(x, "sigmoid"), helper.make_node("Sigmoid", ["x"], ["y"])),
    "leaky": (lambda n, x: n.add_activation(x, "leaky_relu", alpha=0.2), helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.2)),
    "hsig": (lambda n, x: n.add_activation(x, "hard_sigmoid"), helper.make_node("HardSigmoid", ["x"], ["y"])),
    "clip": (lambda n, x: n.add_activation(x, "clip", alpha=-0.5, beta=0.5), helper.make_node("Clip", ["x", "lo", "hi"], ["y"])),
    "gelu": (lambda n, x: n.add_activation(x, "gelu"), helper.make_node("Gelu", ["x"], ["y"])),
    "avg": (lambda n, x: n.add_pooling(x, "avg", (3, 3), (1, 1), (1, 1), count_include_pad=True),
            helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4,
                             count_include_pad=1)),
    "gavg": (lambda n, x: n.add_pooling(x, "global_avg"), helper.make_node("GlobalAveragePool", ["x"], ["y"])),
    "lrn": (lambda n, x: n.add_lrn(x, 3, 1e-3, 0.7, 2.0), helper.make_node("LRN", ["x"], ["y"], size=3, alpha=1e-3,
                                                                        beta=0.7, bias=2.0)),
    "softmax": (lambda n, x: n.add_softmax(x, 2), helper.make_node("Softmax", ["x"], ["y"], axis=2)),
}


@pytest.mark.parametrize("case", sorted(ONNX_FORMS))
def test_layer_equals_onnx_node(case):
    build, node = ONNX_FORMS[case]
    net = nbtrt.Network()
    x = net.add_input("x", "float32", (2, 4, 5, 5))
    net.mark_output(build(net, x), "y")
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", -0.5), ("hi", 0.5))]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 5])],
                          [vi("y")], initializer=inits if case == "clip" else [])
    g_onnx, g_net = nbtrt.parse(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])), net.graph()
    strip = lambda s: [t[1:] for t in s]  # node names differ (ONNX: output name)
    assert strip(structure(g_net)) == strip(structure(g_onnx))
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(reference.run(g_net, {"x": x})["y"], reference.run(g_onnx, {"x": x})["y"])


def test_scale_batchnorm_shuffle_matmul_elementwise():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    s, b, m, v = (rng.random(3) + 0.5 for _ in range(4))  # float64: cast to float32
    net = nbtrt.Network()
    t = net.add_input("x", "float32", (2, 3, 4, 4))
    sc = net.add_scale(t, "channel", shift=b, scale=s, name="scale")
    bn = net.add_batchnorm(t, s, b, m, v, epsilon=1e-3, name="bn")
    d = net.add_elementwise(sc, bn, "sub", name="diff")
    p = net.add_elementwise(d, np.float32(2.0), "pow", name="sq")
    sh = net.add_shuffle(p, first_transpose=(0, 2, 3, 1), reshape=(0, -1, 3), name="nhwc")
    mm = net.add_matmul(sh, sh, transpose_b=True, name="gram")
    net.mark_output(mm, "gram")
    out = reference.run(net.graph(), {"x": x})["gram"]
    c = lambda a: a.astype(np.float32).reshape(3, 1, 1)
    want_bn = (x - c(m)) / np.sqrt(c(v) + np.float32(1e-3)) * c(s) + c(b)
    y = ((x * c(s) + c(b)) - want_bn) ** 2
    y = y.transpose(0, 2, 3, 1).reshape(2, 16, 3)
    np.testing.assert_allclose(out, y @ y.transpose(0, 2, 1), rtol=1e-4, atol=1e-5)
    assert [n.op for n in net.graph().nodes] == ["Mul", "Add", "BatchNormalization", "Sub", "Pow", "Transpose",
                                                 "Reshape", "Transpose", "MatMul"]


@settings(max_examples=15, deadline=None)
@given(c=st.integers(1, 4), o=st.integers(1, 4), k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.integers(0, 1), groups=st.sampled_from([1, 2]), hw=st.integers(3, 6))
def test_convolution_shapes(c, o, k, stride, pad, groups, hw):
    c, o = c * groups, o * groups
    w = np.random.default_rng(c + o).standard_normal((o, c // groups, k, k))
    net = nbtrt.Network()
    x = net.add_input("x", "float32", (1, c, hw, hw))
    net.mark_output(net.add_convolution(x, o, (k, k), w.ravel(), stride=(stride,) * 2, padding=(pad,) * 2,
                                        groups=groups), "y")
    n = net.graph().nodes[0]
    side = (hw + 2 * pad - k) // stride + 1
    assert n.outputs[0].type.shape == (1, o, side, side) and n.inputs[1].type.dtype == "float32"
    assert n.inputs[1].const.shape == (o, c // groups, k, k)


def small_net():
    net = nbtrt.Network("n")
    return net, net.add_input("x", "float32", ("N", 3, 8, 8))


ERRORS = {
    "conv weights": (lambda n, x: n.add_convolution(x, 8, (3, 3), np.zeros((4, 3, 3, 3)), name="bad"), ShapeError, "weights"),
    "conv bias": (lambda n, x: n.add_convolution(x, 4, (3, 3), np.zeros((4, 3, 3, 3)), np.zeros(5), name="bad"),
                  ShapeError, "bias"),
    "groups": (lambda n, x: n.add_convolution(x, 4, (1, 1), np.zeros((4, 1, 1, 1)), groups=2, name="bad"), ShapeError,
               "groups"),
    "stride rank": (lambda n, x: n.add_convolution(x, 4, (1, 1), np.zeros((4, 3, 1, 1)), stride=(1, 1, 1), name="bad"),
                    AttributeValueError, "stride"),
    "activation": (lambda n, x: n.add_activation(x, "swishy", name="bad"), AttributeValueError, "swishy"),
    "activation param": (lambda n, x: n.add_activation(x, "relu", alpha=1.0, name="bad"), AttributeValueError, "parameter"),
    "pooling": (lambda n, x: n.add_pooling(x, "median", (2, 2), name="bad"), AttributeValueError, "median"),
    "elementwise": (lambda n, x: n.add_elementwise(x, x, "xor", name="bad"), AttributeValueError, "xor"),
    "broadcast": (lambda n, x: n.add_elementwise(x, np.zeros(5, np.float32), "sum", name="bad"), ShapeError, ""),
    "concat": (lambda n, x: n.add_concatenation([x, n.add_pooling(x, "max", (2, 2))], axis=1, name="bad"), ShapeError, ""),
    "fc weights": (lambda n, x: n.add_fully_connected(x, 10, np.zeros((10, 7)), name="bad"), ShapeError, "weights"),
    "matmul": (lambda n, x: n.add_matmul(x, np.zeros((3, 3), np.float32), name="bad"), ShapeError, ""),
    "reshape": (lambda n, x: n.add_reshape(x, (0, 5, -1, 7), name="bad"), ShapeError, ""),
    "other network": (lambda n, x: n.add_activation(small_net()[1], "relu", name="bad"), GraphError, "another network"),
    "not a tensor": (lambda n, x: n.add_softmax("x", name="bad"), GraphError, "not a tensor"),
    "duplicate name": (lambda n, x: n.add_activation(n.add_activation(x, "relu", name="bad"), "relu", name="bad"),
                       GraphError, "already exists"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_the_layer_and_roll_back(case):
    build, cls, text = ERRORS[case]
    net, x = small_net()
    before = (len(net._graph.nodes), len(net._graph.constants))
    with pytest.raises(cls, match=f"layer 'bad' .*{text}") as e:
        build(net, x)
    assert isinstance(e.value, NbtrtError)
    if case != "duplicate name" and case != "concat":
        assert (len(net._graph.nodes), len(net._graph.constants)) == before
    net.mark_output(net.add_activation(x, "relu", name="ok"))
    net.graph()  # still a consistent network


def test_output_errors():
    net, x = small_net()
    r = net.add_activation(x, "relu", name="r")
    with pytest.raises(GraphError, match="no outputs"):
        net.graph()
    net.mark_output(r, "y")
    with pytest.raises(GraphError, match="'y'.*twice"):
        net.mark_output(r)
    with pytest.raises(GraphError, match="'x'.*already taken"):
        net.mark_output(net.add_activation(x, "tanh", name="t"), "x")
    with pytest.raises(GraphError, match="another network"):
        net.mark_output(small_net()[1])
    with pytest.raises(GraphError, match="already taken"):
        net.add_input("x", "float32", (1,))


def test_input_marked_as_output_keeps_its_name():
    net, x = small_net()
    net.mark_output(x, "y")
    g = net.graph()
    assert g.inputs[0].name == "x" and g.outputs[0].name == "y" and g.nodes[0].op == "Identity"
    a = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_array_equal(reference.run(g, {"x": a})["y"], a)
