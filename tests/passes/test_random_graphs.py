"""Hypothesis: random graphs of conv / BN / activation / add / concat / pool; optimized == original."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from helpers import assert_same

import nbtrt

ACTS = ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSwish"]


@st.composite
def random_model(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    hw = draw(st.integers(3, 5))
    tensors = [("x", draw(st.integers(1, 4)))]  # (name, channels); all N x C x hw x hw
    nodes, inits = [], []

    def arr(name, shape, offset=0.0):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.5 + offset).astype(np.float32), name))
        return name

    for i in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["conv", "conv", "bn", "act", "add", "concat", "pool", "affine"]))
        src, c = tensors[draw(st.integers(0, len(tensors) - 1))]
        out = f"t{i}"
        if kind == "conv":
            k, co = draw(st.sampled_from([1, 3])), draw(st.integers(1, 5))
            ins = [src, arr(f"w{i}", [co, c, k, k])] + ([arr(f"b{i}", [co])] if draw(st.booleans()) else [])
            nodes.append(helper.make_node("Conv", ins, [out], name=f"conv{i}", pads=[k // 2] * 4))
            c = co
        elif kind == "bn":
            ins = [src, arr(f"g{i}", [c], 1), arr(f"be{i}", [c]), arr(f"m{i}", [c]), f"v{i}"]
            inits.append(numpy_helper.from_array(rng.uniform(0.5, 2, c).astype(np.float32), f"v{i}"))
            nodes.append(helper.make_node("BatchNormalization", ins, [out], name=f"bn{i}"))
        elif kind == "act":
            nodes.append(helper.make_node(draw(st.sampled_from(ACTS)), [src], [out], name=f"act{i}"))
        elif kind == "affine":
            op = draw(st.sampled_from(["Mul", "Add"]))
            nodes.append(helper.make_node(op, [src, arr(f"s{i}", [c, 1, 1], 1)], [out], name=f"aff{i}"))
        elif kind == "add":
            same = [n for n, cc in tensors if cc == c]
            other = same[draw(st.integers(0, len(same) - 1))]
            nodes.append(helper.make_node("Add", [src, other], [out], name=f"add{i}"))
        elif kind == "concat":
            other, c2 = tensors[draw(st.integers(0, len(tensors) - 1))]
            nodes.append(helper.make_node("Concat", [src, other], [out], name=f"cat{i}", axis=1))
            c += c2
        else:
            op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
            nodes.append(helper.make_node(op, [src], [out], name=f"pool{i}", kernel_shape=[3, 3],
                                          pads=[1] * 4, strides=[1, 1]))
        tensors.append((out, c))
    outputs = [tensors[-1][0]] + ([tensors[1][0]] if len(tensors) > 2 and draw(st.booleans()) else [])
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    g = helper.make_graph(nodes, "random", [vi("x", ["N", tensors[0][1], hw, hw])],
                          [vi(o, None) for o in dict.fromkeys(outputs)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_model())
def test_random_graph_optimized_equals_original(model):
    original = nbtrt.parse(model)
    graph, report = nbtrt.plan(nbtrt.parse(model))
    assert_same(graph, original, rtol=1e-5)
