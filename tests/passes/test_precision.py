"""The precision pass: fp16 activations between kernels with the network's float32 inputs and outputs
read and written by the first and last kernels, float16 weights and float32 epilogue constants,
layer_precision overrides, a Cast in front of a family without float16 kernels, tf32 marks, the
report's precision and reasons, and what is refused."""

import numpy as np
import pytest
from onnx import helper, numpy_helper

from helpers import assert_same, const, make_model, random_inputs

import nbtrt
from nbtrt.config import BuildConfig
from nbtrt.groups import kernel_kind
from nbtrt.passes import precision

n = helper.make_node


def small_net():
    """conv1+relu1 -> conv2 + residual -> GlobalAveragePool -> Flatten -> fc -> Softmax."""
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv1"),
             n("Relu", ["c1"], ["r1"], name="relu1"),
             n("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv2"),
             n("Add", ["c2", "r1"], ["s"], name="add"),
             n("GlobalAveragePool", ["s"], ["g"], name="gap"),
             n("Flatten", ["g"], ["f"], name="flat"),
             n("Gemm", ["f", "wf", "bf"], ["logits"], transB=1, name="fc"),
             n("Softmax", ["logits"], ["y"], axis=1, name="softmax")]
    inits = [const("w1", (4, 3, 3, 3)), const("b1", (4,)), const("w2", (4, 4, 3, 3)), const("wf", (5, 4)),
             const("bf", (5,))]
    return make_model(nodes, [("x", [2, 3, 5, 5])], ["y"], inits)


def plan(model, **config):
    return nbtrt.plan(model, BuildConfig(**config))


def by_source(graph, name):
    return next(k for k in graph.nodes if name in (k.attrs.get("sources") or (k.name,)))


def kernels(report):
    return {k["name"]: k for k in report.kernels}


def test_fp16_activations_inside_float32_at_the_edges():
    model = small_net()
    graph, report = plan(model, precision="fp16", disabled_passes=frozenset({"pad_channels"}))
    assert [v.type.dtype for v in graph.inputs + graph.outputs] == ["float32", "float32"]
    conv1, conv2, fc = by_source(graph, "conv1"), by_source(graph, "conv2"), by_source(graph, "fc")
    soft = by_source(graph, "softmax")
    assert conv1.inputs[0] is graph.inputs[0]  # the first kernel reads the float32 input: no Cast kernel
    assert soft.outputs[0] is graph.outputs[0] and soft.inputs[0].type.dtype == "float16"  # the last writes it
    for node in (conv1, conv2, fc):
        assert node.inputs[1].const.dtype == np.float16  # weights converted at build time
        assert node.outputs[0].type.dtype == "float16"
    assert conv1.inputs[2].const.dtype == np.float32 and fc.inputs[2].const.dtype == np.float32  # epilogue
    assert not any(v.name in ("w1", "w2", "wf") for v in graph.constants.values())  # the fp32 copies dropped
    assert all(k.attrs["math"] == "fp16" for k in graph.nodes if kernel_kind(k))
    assert all(k["precision"] == "fp16" and k["precision_reason"] is None for k in report.kernels)
    assert not any(k.op == "nbtrt.eltwise" for k in graph.nodes)  # no Cast kernels at all
    assert "precision: fp16 5" in report.summary()
    assert_same(graph, nbtrt.parse(model), random_inputs(graph), rtol=5e-3)


def test_layer_precision_override_keeps_a_kernel_fp32():
    model = small_net()
    graph, report = plan(model, precision="fp16", layer_precision={"conv2": "fp32"})
    conv2 = by_source(graph, "conv2")
    assert conv2.attrs["math"] == "fp32" and conv2.inputs[1].const.dtype == np.float32
    assert conv2.inputs[0].type.dtype == "float16"  # reads fp16 (widened on load: the Cast in)
    assert conv2.outputs[0].type.dtype == "float32"  # and writes fp32 (its consumer widens nothing)
    assert by_source(graph, "gap").outputs[0].type.dtype == "float16"
    entry = kernels(report)[conv2.name]
    assert entry["precision"] == "fp32" and entry["precision_reason"] == "layer_precision override (conv2)"
    assert f"fp32: {conv2.name}: layer_precision override (conv2)" in report.summary()
    assert_same(graph, nbtrt.parse(model), random_inputs(graph), rtol=5e-3)


def test_fp16_layer_in_an_fp32_build():
    graph, report = plan(small_net(), layer_precision={"conv1": "fp16"})
    conv1, conv2 = by_source(graph, "conv1"), by_source(graph, "conv2")
    assert conv1.attrs["math"] == "fp16" and conv1.outputs[0].type.dtype == "float16"
    assert conv2.attrs["math"] == "fp32" and conv2.outputs[0].type.dtype == "float32"
    assert kernels(report)[conv1.name]["precision_reason"] == "layer_precision override (conv1)"


def test_family_without_fp16_kernels_gets_a_cast(monkeypatch):
    monkeypatch.setattr(precision, "supports_float16", lambda kind: kind not in ("softmax", None))
    model = small_net()
    graph, report = plan(model, precision="fp16")
    soft = by_source(graph, "softmax")
    cast = soft.inputs[0].producer()
    assert cast.op == "nbtrt.eltwise" and cast.attrs["epilogues"][0][0].op == "Cast"
    assert cast.inputs[0].type.dtype == "float16" and soft.inputs[0].type.dtype == "float32"
    assert "math" not in soft.attrs
    entries = kernels(report)
    assert entries[soft.name]["precision_reason"] == "softmax has no fp16 kernel"
    assert "cast to float32 for softmax" in entries[cast.name]["precision_reason"]
    assert_same(graph, nbtrt.parse(model), random_inputs(graph), rtol=5e-3)


def test_tf32_marks_conv_and_gemm_only():
    graph, report = plan(small_net(), precision="tf32", layer_precision={"fc": "fp32"})
    assert all(v.type.dtype == "float32" for k in graph.nodes for v in k.outputs)
    assert all(v.const.dtype == np.float32 for v in graph.constants.values())
    assert by_source(graph, "conv1").attrs["math"] == "tf32" and by_source(graph, "conv2").attrs["math"] == "tf32"
    assert by_source(graph, "fc").attrs["math"] == "fp32" and by_source(graph, "gap").attrs["math"] == "fp32"
    entries = kernels(report)
    assert entries[by_source(graph, "fc").name]["precision_reason"] == "layer_precision override (fc)"
    assert entries[by_source(graph, "gap").name] == dict(entries[by_source(graph, "gap").name], precision="fp32",
                                                          precision_reason=None)


def test_fp32_build_changes_nothing():
    graph, report = plan(small_net())
    assert all("math" not in k.attrs for k in graph.nodes)
    assert all(v.type.dtype == "float32" for k in graph.nodes for v in k.outputs)
    assert {k["precision"] for k in report.kernels} == {"fp32"}


def test_in_place_concat_buffer_of_mixed_writers_stays_float32():
    nodes = [n("Conv", ["x", "w1"], ["a"], kernel_shape=[1, 1], name="ca"),
             n("Conv", ["x", "w2"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="cb"),
             n("Concat", ["a", "b"], ["cat"], axis=1, name="cat"),
             n("Relu", ["cat"], ["y"], name="relu")]
    model = make_model(nodes, [("x", [1, 2, 4, 4])], ["y"], [const("w1", (3, 2, 1, 1)), const("w2", (2, 2, 3, 3))])
    graph, _ = plan(model, precision="fp16")
    cat = next(k for k in graph.nodes if k.op == "Concat")
    assert cat.attrs["in_place"] and all(v.type.dtype == "float16" for v in list(cat.inputs) + cat.outputs)
    graph, _ = plan(model, precision="fp16", layer_precision={"cb": "fp32"})
    cat = next(k for k in graph.nodes if k.op == "Concat")
    assert all(v.type.dtype == "float32" for v in list(cat.inputs) + cat.outputs)
    assert by_source(graph, "ca").attrs["math"] == "fp16"  # fp16 math, rounding nothing: it stores float32
    assert_same(graph, nbtrt.parse(model), random_inputs(graph), rtol=5e-3)


def test_weights_beyond_the_float16_range_keep_fp32():
    big = np.full((4, 3, 3, 3), 1e5, np.float32)
    nodes = [n("Conv", ["x", "w1"], ["y"], kernel_shape=[3, 3], name="conv")]
    model = make_model(nodes, [("x", [1, 3, 4, 4])], ["y"], [numpy_helper.from_array(big, "w1")])
    graph, report = plan(model, precision="fp16")
    assert report.kernels[0]["precision"] == "fp32"
    assert report.kernels[0]["precision_reason"] == "weights beyond the float16 range"
    assert graph.nodes[0].inputs[1].const.dtype == np.float32


def test_names_and_values_are_checked():
    with pytest.raises(nbtrt.NbtrtError, match="does not have: 'nope'"):
        plan(small_net(), precision="fp16", layer_precision={"nope": "fp32"})
    with pytest.raises(nbtrt.NbtrtError, match="precision must be one of"):
        BuildConfig(precision="int4")
    with pytest.raises(nbtrt.NbtrtError, match=r"layer_precision\['conv1'\]"):
        BuildConfig(layer_precision={"conv1": "half"})
    with pytest.raises(nbtrt.NbtrtError, match="precision must be one of"):
        nbtrt.compile(small_net(), precision="fp8")
    config = BuildConfig(precision="fp16", layer_precision={"conv1": "fp32"})
    assert hash(config) == hash(BuildConfig(precision="fp16", layer_precision={"conv1": "fp32"}))
    assert hash(config) != hash(BuildConfig(precision="fp16"))


def test_override_of_a_node_folded_away_is_reported():
    nodes = [n("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[1, 1], name="conv"),
             n("Mul", ["c", "m"], ["y"], name="scale")]
    model = make_model(nodes, [("x", [1, 2, 3, 3])], ["y"], [const("w1", (3, 2, 1, 1)), const("b1", (3,)),
                                                          const("m", (3, 1, 1))])
    graph, report = plan(model, precision="fp16", layer_precision={"scale": "fp32"})
    refused = [d for d in report.decisions if d.rule == "layer_precision"]
    assert refused and refused[0].nodes == ("scale",) and "folded" in refused[0].reason
