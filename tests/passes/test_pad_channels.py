"""The pad_channels pass: an fp16 conv reading a 3-channel network input reads it through a Pad to 8
zero-padded float16 channels with zero-widened weights (the same function); what it leaves alone
(fp32 builds, NCHW builds, convs reading activations)."""

import numpy as np

from helpers import assert_same
from test_precision import by_source, plan, small_net

import nbtrt
from nbtrt import reference


def test_first_conv_reads_eight_padded_float16_channels():
    model = small_net()
    graph, report = plan(model, precision="fp16")
    conv1 = by_source(graph, "conv1")
    pad = conv1.inputs[0].producer()
    assert pad.op == "Pad" and pad.inputs[0] is graph.inputs[0]
    assert conv1.inputs[0].type.dtype == "float16" and conv1.inputs[0].type.shape == (2, 8, 5, 5)
    w = conv1.inputs[1].const
    assert w.shape == (4, 8, 3, 3) and w.dtype == np.float16 and not w[:, 3:].any() and w[:, :3].any()
    assert [d.nodes for d in report.applied("3 input channels padded to 8")] == [(conv1.name,)]
    # the function is the fp16 graph's without the pass, up to the float16 rounding of the input
    unpadded, _ = plan(model, precision="fp16", disabled_passes=frozenset({"pad_channels"}))
    assert_same(graph, unpadded, rtol=5e-3)


def test_fp32_builds_and_wide_inputs_are_left_alone():
    graph, _ = plan(small_net(), precision="fp32")
    assert not any(n.op == "Pad" for n in graph.nodes)
    graph, _ = plan(small_net(), precision="fp16", layout="nchw")  # no channels-last tensors: nothing to gain
    assert not any(n.op == "Pad" for n in graph.nodes)
    graph, _ = plan(small_net(), precision="fp16")
    conv2 = by_source(graph, "conv2")  # reads an activation (4 channels), not a network input
    assert conv2.inputs[0].producer().op != "Pad"


def test_padded_engine_matches_the_reference():
    model = small_net()
    engine = nbtrt.compile(model, precision="fp16")
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 5)).astype(np.float32)
    got = engine.run({"x": x})["y"]
    want = reference.run(nbtrt.parse(model), {"x": x})["y"]
    assert np.abs(got - want).max() / np.abs(want).max() <= 5e-3
