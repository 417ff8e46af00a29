"""Channels-last layouts (runtime/layout.py): which tensors the memory plan stores NHWC and which conv
weights OHWI, engines built with layout="nhwc" in the simulator against the reference, and engine
files keeping the layouts."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import nbtrt
from nbtrt import reference
from nbtrt.errors import NbtrtError
from nbtrt.runtime.layout import channels_last_strides
from nbtrt.runtime.memory import physical, plan_memory, strided

X_SHAPE = (2, 3, 8, 8)


def _w(rng, name, shape):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)


def cnn():
    """conv → relu → {1×1 conv, depthwise conv} → concat (in place) → maxpool → grouped conv + residual
    → relu → {GAP → flatten → gemm → softmax, channel softmax}."""
    rng = np.random.default_rng(0)
    inits = [_w(rng, "w1", (8, 3, 3, 3)), _w(rng, "b1", (8,)), _w(rng, "wa", (8, 8, 1, 1)),
             _w(rng, "wb", (8, 1, 3, 3)), _w(rng, "wg", (16, 8, 3, 3)), _w(rng, "wf", (10, 16))]
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             n("Relu", ["c1"], ["r1"], name="relu1"),
             n("Conv", ["r1", "wa"], ["a"], name="conv_a"),
             n("Conv", ["r1", "wb"], ["b"], group=8, pads=[1, 1, 1, 1], name="conv_dw"),
             n("Concat", ["a", "b"], ["cat"], axis=1, name="cat"),
             n("MaxPool", ["cat"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             n("Conv", ["p", "wg"], ["g"], group=2, pads=[1, 1, 1, 1], name="conv_g"),
             n("Add", ["g", "p"], ["s"], name="residual"),
             n("Relu", ["s"], ["r"], name="relu2"),
             n("GlobalAveragePool", ["r"], ["gap"], name="gap"),
             n("Flatten", ["gap"], ["f"], name="flatten"),
             n("Gemm", ["f", "wf"], ["y"], transB=1, name="fc"),
             n("Softmax", ["y"], ["prob"], axis=1, name="softmax"),
             n("Softmax", ["r"], ["chan"], axis=1, name="chan_softmax")]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X_SHAPE)],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, (2, 10)),
                               helper.make_tensor_value_info("chan", TensorProto.FLOAT, (2, 16, 4, 4))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).standard_normal(X_SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def nhwc_engine():
    return nbtrt.compile(cnn(), layout="nhwc")


def by_name(graph):
    return {v.name: v for v in graph.values()}


def strides_of(engine):
    return {v.name: engine.memory.layout(v).strides for v in engine.graph.values()}


def test_config_and_auto_rule():
    layout = lambda option, precision: nbtrt.BuildConfig(layout=option, precision=precision).memory_layout  # noqa: E731
    assert layout("auto", "fp16") == layout("auto", "int8") == "nhwc"
    assert layout("auto", "fp32") == layout("auto", "tf32") == "nchw" and layout("nhwc", "fp32") == "nhwc"
    assert nbtrt.BuildConfig(layout="nhwc") != nbtrt.BuildConfig()
    assert hash(nbtrt.BuildConfig(layout="nhwc")) != hash(nbtrt.BuildConfig())
    with pytest.raises(NbtrtError, match="layout must be one of"):
        nbtrt.BuildConfig(layout="nchwc")
    assert channels_last_strides((2, 3, 4, 5)) == (60, 1, 15, 3)


def test_which_tensors_are_channels_last(nhwc_engine):
    values, strides = by_name(nhwc_engine.graph), strides_of(nhwc_engine)
    nhwc = lambda v: strides[v.name] == channels_last_strides(v.type.shape)  # noqa: E731
    contiguous = lambda v: strides[v.name] == tuple(np.cumprod((1,) + v.type.shape[:0:-1])[::-1])  # noqa: E731
    inner = [v for v in nhwc_engine.graph.values() if not v.is_constant and len(v.type.shape) == 4
             and v.name not in ("x", "chan", "a", "b")]
    assert inner and all(nhwc(v) for v in inner)
    assert contiguous(values["x"]) and contiguous(values["chan"])  # graph input and output stay NCHW
    # the in-place concat's inputs live in its buffer, channels-last: a channel slice at offset 8
    cat = next(n for n in nhwc_engine.graph.nodes if n.op == "Concat")
    assert cat.attrs.get("in_place")
    lay = [nhwc_engine.memory.layout(v) for v in cat.inputs]
    assert [(l.offset, l.strides) for l in lay] == [(0, (1024, 1, 128, 16)), (8, (1024, 1, 128, 16))]
    # conv weights read OHWI where the conv's input is NHWC (not the first conv's: it reads the input x)
    convs = [n for n in nhwc_engine.graph.nodes if n.op == "nbtrt.conv"]
    assert len(convs) == 4 and contiguous(convs[0].inputs[1]) and all(nhwc(n.inputs[1]) for n in convs[1:])
    assert strides["wg"] == (72, 1, 24, 8)
    assert all(contiguous(v) for v in nhwc_engine.graph.constants.values() if len(v.type.shape) != 4)


def test_views_keep_nchw_unless_neutral():
    rng = np.random.default_rng(0)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             n("Relu", ["c"], ["r"], name="relu"),
             n("Reshape", ["r", "shape"], ["flat"], name="reshape"),
             n("Relu", ["flat"], ["y"], name="relu_flat")]
    inits = [_w(rng, "w", (4, 3, 3, 3)), numpy_helper.from_array(np.array([2, -1], np.int64), "shape")]
    model = helper.make_model(helper.make_graph(
        nodes, "view", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X_SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 256))], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    graph, _ = nbtrt.plan(model)
    mem = plan_memory(graph, "nhwc")
    r = next(v for v in graph.values() if len(v.type.shape or ()) == 4 and not v.is_constant and v.name != "x")
    assert mem.layout(r).strides == (256, 64, 8, 1)  # a reshape reads it row-major
    engine = nbtrt.compile(model, layout="nhwc")
    xs = np.random.default_rng(2).standard_normal(X_SHAPE).astype(np.float32)
    np.testing.assert_allclose(engine.run({"x": xs})["y"], reference.run(model, {"x": xs})["y"], rtol=1e-4, atol=1e-5)


def test_plugin_neighbours_stay_nchw():
    from test_plugins import Affine

    net = nbtrt.Network()
    x = net.add_input("x", "float32", X_SHAPE)
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    c = net.add_activation(net.add_convolution(x, 4, (3, 3), w, padding=(1, 1), name="conv"), "relu", name="relu")
    p = net.add_plugin(Affine(), [c], name="affine")
    net.mark_output(net.add_pooling(net.add_activation(p, "relu", name="r2"), "max", (2, 2), name="pool"), "y")
    graph = net.graph()
    graph, _ = nbtrt.plan(graph)
    mem = plan_memory(graph, "nhwc")
    plugin = next(n for n in graph.nodes if n.op == "Plugin")
    assert all(mem.layout(v).strides == (256, 64, 8, 1) for v in list(plugin.inputs) + list(plugin.outputs))
    conv = next(n for n in graph.nodes if n.op == "nbtrt.conv")
    assert mem.layout(conv.inputs[1]).strides == (27, 9, 3, 1)  # its input is NCHW: weights stay OIHW
    relu = next(n for n in graph.nodes if plugin.outputs[0] in n.inputs)
    assert mem.layout(relu.outputs[0]).strides == (256, 1, 32, 4)  # beyond the plugin's neighbours: NHWC


def test_physical_is_the_inverse_of_strided():
    w = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    st = channels_last_strides(w.shape)
    flat = physical(w, st)
    assert flat[:3].tolist() == [0, 4, 8]  # OHWI: the input channels of tap (0, 0) first
    from nbtrt.runtime.memory import Layout
    np.testing.assert_array_equal(strided(flat, Layout(None, 0, st), w.shape), w)


def test_nhwc_engine_matches_reference(nhwc_engine, x):
    want = reference.run(cnn(), {"x": x})
    got = nhwc_engine.run({"x": x})
    for name in ("prob", "chan"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)
    sources = "\n".join(k.spec.source for k in nhwc_engine.kernels)
    assert "strides [1024, 1, 128, 16]" in sources


def test_nhwc_engine_file_round_trip(nhwc_engine, x, tmp_path):
    path = tmp_path / "cnn_nhwc.nbtrt"
    nhwc_engine.save(path)
    loaded = nbtrt.load(path)
    assert loaded.config.layout == "nhwc"
    assert strides_of(loaded) == strides_of(nhwc_engine)
    for v in nhwc_engine.graph.constants.values():  # the file keeps logical weights
        np.testing.assert_array_equal(loaded.graph.constants[v.name].const, v.const)
    want, got = nhwc_engine.run({"x": x}), loaded.run({"x": x})
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_fp16_auto_is_channels_last(x):
    engine = nbtrt.compile(cnn(), precision="fp16")
    assert engine.config.layout == "auto"
    r = next(n for n in engine.graph.nodes if n.op == "MaxPool" or n.attrs.get("base") == "MaxPool").outputs[0]
    assert engine.memory.layout(r).strides == channels_last_strides(r.type.shape)
    want, got = reference.run(cnn(), {"x": x}), engine.run({"x": x})
    for name in ("prob", "chan"):
        np.testing.assert_allclose(got[name], want[name], rtol=2e-2, atol=2e-3)
