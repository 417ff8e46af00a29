"""The space_to_depth pass: a strided conv on a few-channel network input becomes a stride-1 conv on its
SpaceToDepth — the same function for any kernel, stride, pads and channel count (hypothesis, fp32
reference); an int8 build runs the stem on int8 with the SpaceToDepth quantizing; what it leaves
alone; an engine in the simulator."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import assert_same, const, make_model

import nbtrt
from nbtrt import quant, reference
from nbtrt.config import BuildConfig


def stem_model(c=3, k=7, s=2, pads=(3, 3, 3, 3), size=(8, 8), m=8):
    """x[2, c, H, W] -> Conv(k, stride s, pads) + Relu -> 1x1 conv -> y."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c1"], kernel_shape=[k, k], strides=[s, s], pads=list(pads),
                              name="stem"),
             helper.make_node("Relu", ["c1"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    inits = [const("w", (m, c, k, k)), const("b", (m,)), const("w2", (16, m, 1, 1))]
    return make_model(nodes, [("x", [2, c, *size])], ["y"], inits)


def stem(graph):
    return next(n for n in graph.nodes if "stem" in n.attrs.get("sources", ()))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_same_function_for_any_stem(data):
    k, s, c = data.draw(st.integers(1, 7)), data.draw(st.integers(2, 4)), data.draw(st.integers(1, 4))
    pads = tuple(data.draw(st.integers(0, k - 1)) for _ in range(4))
    size = tuple(s * data.draw(st.integers(1, 4)) for _ in range(2))
    assume(all(size[a] + pads[a] + pads[a + 2] >= k for a in range(2)))
    model = stem_model(c, k, s, pads, size)
    graph, report = nbtrt.plan(model, BuildConfig(precision="fp32", layout="nhwc"))  # fp32 math: exact
    conv = stem(graph)
    s2d = conv.inputs[0].producer()
    if s2d is None:  # only when an end pad of the stride-1 conv would be negative
        assert not report.applied("space to depth")
        return
    assert s2d.op == "SpaceToDepth" and s2d.attrs["blocksize"] == s and conv.attrs["base_attrs"]["strides"] == [1, 1]
    assert s2d.attrs["channels"] % 8 == 0 and s2d.attrs["channels"] >= c * s * s
    assert conv.inputs[1].type.shape[2] == (k - 1 - pads[0]) // s + -(-pads[0] // s) + 1
    assert_same(graph, nbtrt.parse(model), rtol=1e-5)


def test_resnet_stem_becomes_a_4x4_conv_on_16_channels():
    model = stem_model(size=(16, 16))
    graph, report = nbtrt.plan(model, BuildConfig(precision="fp16"))
    conv = stem(graph)
    assert conv.attrs["base_attrs"]["kernel_shape"] == [4, 4] and conv.attrs["base_attrs"]["pads"] == [2, 2, 1, 1]
    assert conv.inputs[0].type.shape == (2, 16, 8, 8) and conv.inputs[0].type.dtype == "float16"
    assert conv.inputs[1].type.shape == (8, 16, 4, 4) and not conv.inputs[1].const[:, 12:].any()
    assert "w" not in graph.constants
    assert [d.nodes for d in report.applied("7x7 stride-2 conv on 3 channels as a 4x4 stride-1 conv on 16")] == [
        (conv.name,)]
    assert not any(n.op == "Pad" for n in graph.nodes)  # pad_channels has nothing left to do
    unchanged, _ = nbtrt.plan(model, BuildConfig(precision="fp16", disabled_passes=frozenset({"space_to_depth"})))
    assert_same(graph, unchanged, rtol=5e-3)


def test_int8_stem_reads_the_quantized_space_to_depth():
    model = stem_model(size=(16, 16))
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    graph = nbtrt.parse(model)
    graph.quant_scales = dict(quant.calibrate(graph, [x], "minmax", progress=False))
    graph, report = nbtrt.plan(graph, BuildConfig(precision="int8"))
    conv = stem(graph)
    s2d = conv.inputs[0].producer()
    assert conv.attrs["math"] == "int8" and conv.inputs[0].type.dtype == "int8"
    assert s2d.attrs["out_scales"] == [conv.attrs["int8_scale"]] == [graph.quant_scales["x"]]
    assert report.precisions[s2d.name] == ("int8", f"quantizes its output (scale {graph.quant_scales['x']:.4g})")
    assert s2d.attrs["channels"] == 16


def test_left_alone():
    for model, config in ((stem_model(), BuildConfig(precision="fp32")),  # NCHW: no tensor-core chunks to fill
                          (stem_model(s=1), BuildConfig(precision="fp16")),
                          (stem_model(c=8), BuildConfig(precision="fp16")),
                          (stem_model(size=(9, 8)), BuildConfig(precision="fp16")),
                          (stem_model(c=5, s=4, k=4, pads=(0, 0, 0, 0)), BuildConfig(precision="fp16"))):  # 80 channels
        graph, _ = nbtrt.plan(model, config)
        assert not any(n.op == "SpaceToDepth" for n in graph.nodes)


def test_engines_match_the_reference():
    model = stem_model(size=(16, 16))
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    want = reference.run(model, {"x": x})["y"]
    for precision, extra in (("fp16", {}), ("int8", {"calibration_data": [x], "calibrator": "minmax"})):
        engine = nbtrt.compile(model, precision=precision, **extra)
        assert any(n.op == "SpaceToDepth" for n in engine.graph.nodes)
        got = engine.run({"x": x})["y"]
        np.testing.assert_allclose(got, reference.run(engine.graph, {"x": x})["y"], rtol=1e-3,
                                   atol=1e-3 * np.abs(want).max())
        assert np.abs(got - want).max() <= (0.01 if precision == "fp16" else 0.08) * np.abs(want).max()
