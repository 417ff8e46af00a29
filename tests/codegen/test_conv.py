"""Conv and ConvTranspose kernels in the simulator against the reference: random geometry (strides,
pads, dilations, groups incl. depthwise, 1×1, 1-D/3-D), every algorithm with small tiles, epilogues
(bias + Relu, a residual), a merged two-output conv writing into a concat slice, tactic validity."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import assert_matches, run_generated
from nbtrt.codegen import conv, conv_transpose
from nbtrt.codegen.build import load
from nbtrt.codegen.kernel import TensorArg, contiguous_strides
from nbtrt.groups import Step, group_attrs, group_op
from nbtrt.ir import Graph, Node, TensorType
from nbtrt.reference import KERNELS
from nbtrt.runtime.layout import channels_last_strides

CONV_DEFAULTS = dict(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None)
BIAS_RELU = (Step("Add", ("acc", "in2")), Step("Relu", ("s0",)))
RESIDUAL = (Step("Add", ("acc", "in2")), Step("Add", ("s0", "in3")), Step("Relu", ("s1",)))
SMALL_TILES = [dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1), dict(bm=16, bn=32, bk=8, tm=2, tn=4, split_k=1),
               dict(bm=32, bn=16, bk=16, tm=4, tn=2, split_k=1), dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=2),
               dict(bm=16, bn=64, bk=8, tm=4, tn=8, split_k=1)]  # fewer threads than columns


def conv_group(x_shape, w_shape, attrs, epilogues=((),), extra=(), splits=None, base="Conv"):
    """An ``nbtrt.conv`` (or conv_transpose) group node over inputs of the given shapes."""
    g = Graph()
    shapes = [x_shape, w_shape] + list(extra)
    ins = [g.add_input(f"x{k}", TensorType("float32", s)) for k, s in enumerate(shapes)]
    full = dict(CONV_DEFAULTS, **({"output_padding": None, "output_shape": None} if base != "Conv" else {}))
    full.update(attrs)
    probe = Node(base, [], [], full, name="probe")
    y = KERNELS[base](probe, np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32))
    splits = tuple(splits or (y.shape[1],))
    node = g.add_node(group_op(base), ins, n_outputs=len(epilogues),
                      attrs=group_attrs(base, full, 2, splits, tuple(epilogues), ("conv_a", "relu_a")), name="conv_a")
    for v, s in zip(node.outputs, splits):
        v.type = TensorType("float32", (y.shape[0], s) + y.shape[2:])
    return node


def bare_floats(source: str) -> list[str]:
    """Float literals not wrapped in float32(...) (they would make Numba compute in float64)."""
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    return [m.group() for m in re.finditer(r"(?<![\w.])\d+\.\d*(e[-+]?\d+)?", code)
            if not code[:m.start()].endswith(("float32(", "float32(-"))]


def out_shape(node, i=0):
    return node.outputs[i].type.shape


@st.composite
def conv_case(draw):
    nsp = draw(st.sampled_from([2, 2, 2, 1]))
    kind = draw(st.sampled_from(["dense", "dense", "grouped", "depthwise"]))
    groups = 1 if kind == "dense" else draw(st.integers(2, 3))
    cg = 1 if kind == "depthwise" else draw(st.integers(1, 4))
    mg = draw(st.integers(1, 2)) if kind == "depthwise" else draw(st.integers(1, 6))
    kernel = [draw(st.integers(1, 3)) for _ in range(nsp)]
    strides = [draw(st.integers(1, 2)) for _ in range(nsp)]
    dil = [draw(st.integers(1, 2)) for _ in range(nsp)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(st.integers(0, 2)) for _ in range(2 * nsp)] if auto_pad == "NOTSET" else [0] * (2 * nsp)
    sizes = [draw(st.integers(max(1, (k - 1) * d + 1 - pads[a] - pads[a + nsp]), 5))
             for a, (k, d) in enumerate(zip(kernel, dil))]
    attrs = dict(group=groups, kernel_shape=tuple(kernel), strides=tuple(strides), dilations=tuple(dil),
                 auto_pad=auto_pad, pads=tuple(pads) if auto_pad == "NOTSET" else None)
    batch = draw(st.integers(1, 2))
    return (batch, cg * groups) + tuple(sizes), (mg * groups, cg) + tuple(kernel), attrs


def epilogue_group(x_shape, w_shape, attrs, epi):
    """(conv group with epilogue ``epi`` — none, bias_relu or residual —, its extra input shapes)."""
    m, rank = w_shape[0], len(x_shape)
    probe = conv_group(x_shape, w_shape, attrs)
    extra = {"none": [], "bias_relu": [(m,) + (1,) * (rank - 2)],
             "residual": [(m,) + (1,) * (rank - 2), out_shape(probe)]}[epi]
    program = {"none": (), "bias_relu": BIAS_RELU, "residual": RESIDUAL}[epi]
    return conv_group(x_shape, w_shape, attrs, (program,), extra), extra


@settings(max_examples=40, deadline=None)
@given(conv_case(), st.sampled_from(["direct", "implicit_gemm", "implicit_gemm"]), st.sampled_from(SMALL_TILES),
       st.sampled_from(["none", "bias_relu", "residual"]), st.integers(0, 999))
def test_conv_random(case, algorithm, tile, epi, seed):
    x_shape, w_shape, attrs = case
    rng = np.random.default_rng(seed)
    node, extra = epilogue_group(x_shape, w_shape, attrs, epi)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [x_shape, w_shape] + extra]
    tactic = dict(algorithm="direct", threads=64) if algorithm == "direct" else dict(algorithm=algorithm, **tile)
    assert conv.valid(node, tactic)
    assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=tactic)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 2), st.integers(1, 20), st.integers(1, 12), st.integers(1, 5), st.integers(1, 5),
       st.sampled_from(SMALL_TILES), st.integers(0, 999))
def test_conv_1x1_as_gemm(batch, c, m, h, w, tile, seed):
    rng = np.random.default_rng(seed)
    x_shape, w_shape = (batch, c, h, w), (m, c, 1, 1)
    node = conv_group(x_shape, w_shape, {}, (BIAS_RELU,), [(m, 1, 1)])
    arrays = [rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, (m, 1, 1))]
    spec = assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=dict(algorithm="gemm_1x1", **tile))
    assert "bt0_" not in spec.source  # no window arithmetic


def test_conv_3d_and_unrolled_micro_tile():
    rng = np.random.default_rng(3)
    x_shape, w_shape = (1, 3, 4, 5, 3), (5, 3, 2, 3, 2)
    node = conv_group(x_shape, w_shape, dict(pads=(1, 0, 1, 0, 1, 0), strides=(1, 2, 1)), (BIAS_RELU,), [(5, 1, 1, 1)])
    arrays = [rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, (5, 1, 1, 1))]
    tactic = dict(algorithm="implicit_gemm", bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1, unroll=True)
    spec = assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=tactic)
    assert "for kk" not in spec.source
    assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=dict(algorithm="direct", threads=64))


@pytest.mark.parametrize("tactic", [dict(algorithm="direct", threads=64),
                                    dict(algorithm="implicit_gemm", bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1),
                                    dict(algorithm="implicit_gemm", bm=16, bn=16, bk=8, tm=2, tn=2, split_k=4)])
def test_merged_conv_two_outputs_into_concat_slice(tactic):
    """Output 0 (5 channels, bias + Relu) lands in channels [3, 8) of a [2, 12, 3, 4] concat buffer;
    output 1 (4 channels, bias + LeakyRelu) is a plain tensor."""
    rng = np.random.default_rng(7)
    x_shape, w_shape = (2, 3, 5, 4), (9, 3, 3, 3)
    leaky = (Step("Add", ("acc", "in3")), Step("LeakyRelu", ("s0",), (("alpha", 0.1),)))
    node = conv_group(x_shape, w_shape, dict(pads=(0, 1, 0, 1), strides=(1, 1)), (BIAS_RELU, leaky),
                      [(5, 1, 1), (4, 1, 1)], splits=(5, 4))
    assert out_shape(node, 0) == (2, 5, 3, 4)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, (5, 1, 1), (4, 1, 1))]
    whole = (2, 12, 3, 4)
    dst = TensorArg("out0", "float32", (2, 5, 3, 4), contiguous_strides(whole), 3 * 12)
    out1 = TensorArg.contiguous("out1", "float32", (2, 4, 3, 4))
    got, buffers, spec = run_generated(node, arrays, tactic=tactic, out_args=[dst, out1],
                                       buffer_sizes={"out0": int(np.prod(whole))})
    want = KERNELS[node.op](node, *arrays)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=spec.source)
    buf = buffers["out0"].reshape(whole)
    assert np.isnan(buf[:, :3]).all() and np.isnan(buf[:, 8:]).all()


@st.composite
def transpose_case(draw):
    nsp = draw(st.sampled_from([2, 2, 1]))
    groups = draw(st.sampled_from([1, 1, 2]))
    cg, mg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(nsp)]
    strides = [draw(st.integers(1, 3)) for _ in range(nsp)]
    dil = [draw(st.integers(1, 2)) for _ in range(nsp)]
    sizes = [draw(st.integers(1, 4)) for _ in range(nsp)]
    out_pad = [draw(st.integers(0, max(0, min(s, d) - 1))) for s, d in zip(strides, dil)]
    full = [s * (n - 1) + (k - 1) * d + 1 + p for s, n, k, d, p in zip(strides, sizes, kernel, dil, out_pad)]
    mode = draw(st.sampled_from(["pads", "pads", "output_shape", "SAME_UPPER"]))
    attrs = dict(group=groups, kernel_shape=tuple(kernel), strides=tuple(strides), dilations=tuple(dil),
                 output_padding=tuple(out_pad))
    if mode == "pads":
        pads = [draw(st.integers(0, max(0, (f - 1) // 2))) for f in full] + \
               [draw(st.integers(0, max(0, (f - 1) // 2))) for f in full]
        attrs["pads"] = tuple(pads)
    elif mode == "output_shape":
        attrs["output_shape"] = tuple(draw(st.integers(max(1, f - 2), f + 1)) for f in full)
    else:
        attrs["auto_pad"] = "SAME_UPPER"
    return (draw(st.integers(1, 2)), cg * groups) + tuple(sizes), (cg * groups, mg) + tuple(kernel), attrs


@settings(max_examples=30, deadline=None)
@given(transpose_case(), st.booleans(), st.integers(0, 999))
def test_conv_transpose_random(case, with_epilogue, seed):
    x_shape, w_shape, attrs = case
    rng = np.random.default_rng(seed)
    m = w_shape[1] * attrs["group"]
    extra = [(m,) + (1,) * (len(x_shape) - 2)] if with_epilogue else []
    node = conv_group(x_shape, w_shape, attrs, (BIAS_RELU if with_epilogue else (),), extra, base="ConvTranspose")
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [x_shape, w_shape] + extra]
    assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=dict(threads=64))


def test_source_is_readable_and_float32_only():
    node = conv_group((1, 64, 56, 56), (64, 64, 3, 3), dict(pads=(1, 1, 1, 1)), (BIAS_RELU,), [(64, 1, 1)])
    ins = [TensorArg.contiguous(f"in{k}", "float32", v.type.shape) for k, v in enumerate(node.inputs)]
    outs = [TensorArg.contiguous("out0", "float32", out_shape(node))]
    for tactic in [t for t in conv.TACTICS if conv.valid(node, t)]:
        spec = conv.emit(node, outs, ins, tactic)
        load(spec)  # parses
        assert spec.source.startswith("# nbtrt conv kernel for 'conv_a'")
        assert not bare_floats(spec.source) and "float64" not in spec.source
        assert np.prod(spec.block) <= 1024
    assert not conv.valid(node, dict(algorithm="gemm_1x1", bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1))
    assert not conv.valid(node, dict(algorithm="implicit_gemm", bm=128, bn=128, bk=32, tm=8, tn=8, split_k=2))
    assert conv.pick(conv.geometry(node, ins), node)["algorithm"] == "implicit_gemm"
    dw = conv_group((1, 32, 8, 8), (32, 1, 3, 3), dict(group=32, pads=(1, 1, 1, 1)))
    assert conv.emit(dw, [TensorArg.contiguous("out0", "float32", out_shape(dw))],
                     [TensorArg.contiguous(f"in{k}", "float32", v.type.shape) for k, v in enumerate(dw.inputs)]
                     ).tactic["algorithm"] == "direct"
    assert conv_transpose.valid(node, conv_transpose.DEFAULT)


@pytest.mark.parametrize("direct", [True, False])
def test_engine_inception_block(monkeypatch, direct):
    """A whole engine in the simulator: parallel 1×1 convs merged into one two-output kernel writing
    into an in-place concat, a grouped strided conv with a fused residual, a Gemm classifier."""
    from onnx import TensorProto, helper, numpy_helper

    import nbtrt
    from nbtrt import reference
    monkeypatch.setattr(conv, "prefers_direct", lambda g: direct)
    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["a1"], kernel_shape=[1, 1]), n("Relu", ["a1"], ["r1"]),
             n("Conv", ["x", "w2", "b2"], ["a2"], kernel_shape=[1, 1]), n("Relu", ["a2"], ["r2"]),
             n("Conv", ["r2", "w3", "b3"], ["a3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), n("Relu", ["a3"], ["r3"]),
             n("Concat", ["r1", "r3"], ["cat"], axis=1),
             n("Conv", ["cat", "w5"], ["a5"], kernel_shape=[3, 3], strides=[2, 2], group=3),
             n("Conv", ["cat", "w6", "b6"], ["a6"], kernel_shape=[3, 3], strides=[2, 2]),
             n("Add", ["a5", "a6"], ["s"]), n("GlobalAveragePool", ["s"], ["g"]), n("Flatten", ["g"], ["f"]),
             n("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    inits = [w("w1", 4, 6, 1, 1), w("b1", 4), w("w2", 3, 6, 1, 1), w("b2", 3), w("w3", 5, 3, 3, 3), w("b3", 5),
             w("w5", 6, 3, 3, 3), w("w6", 6, 9, 3, 3), w("b6", 6), w("wf", 7, 6), w("bf", 7)]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    engine = nbtrt.compile(model)
    x = rng.standard_normal((1, 6, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(engine.run({"x": x})["y"], reference.run(model, {"x": x})["y"], rtol=1e-4, atol=1e-5)
    from nbtrt.runtime.engine import kernel_table
    convs = [r for r in kernel_table(engine) if r["kind"] == "conv"]
    assert any("+" in r["name"] for r in convs)  # the merged pair
    assert all((r["tactic"]["algorithm"] == "direct") == direct for r in convs)


@pytest.mark.parametrize("x, w, attrs, tile", [
    ((2, 16, 6, 7), (8, 16, 3, 3), dict(pads=(1, 1, 1, 1)), dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1)),
    ((1, 32, 7, 5), (12, 16, 3, 3), dict(group=2, strides=(2, 2), pads=(1, 0, 2, 1), dilations=(2, 1)),
     dict(bm=16, bn=32, bk=16, tm=2, tn=4, split_k=1)),
    ((1, 16, 5, 5), (9, 16, 5, 5), dict(pads=(2, 2, 2, 2)), dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=2))])
def test_tap_major_order(x, w, attrs, tile):
    """Cg a multiple of BK: K runs (tap, channel), one tap per K slice (window bounds once per slice)."""
    node = conv_group(x, w, attrs, (BIAS_RELU,), [(w[0], 1, 1)])
    arrays = [np.random.default_rng(0).standard_normal(v.type.shape).astype(np.float32) for v in node.inputs]
    spec = assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=dict(algorithm="implicit_gemm", unroll=True, **tile))
    assert "tap = k0 //" in spec.source


def _nhwc(param, shape, channels=None, first=0):
    n, c, h, w = shape
    return TensorArg(param, "float32", tuple(shape), channels_last_strides((n, channels or c, h, w)), first)


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_channels_last_input_and_ohwi_weights(data):
    """The memory plan's channels-last layout: NHWC input (maybe a channel slice of a wider buffer),
    OHWI weights, NHWC output, for every GEMM algorithm and K order: (tap, channel) copies along k,
    (channel, tap) with the weight element decoded through W's strides, the direct kernel."""
    k = data.draw(st.sampled_from([1, 3]))
    cg = data.draw(st.sampled_from([3, 8, 16]))
    groups = data.draw(st.sampled_from([1, 2]))
    m, h, w = data.draw(st.integers(1, 9)) * groups, data.draw(st.integers(k, 7)), data.draw(st.integers(k, 7))
    s, p = data.draw(st.integers(1, 2)), data.draw(st.integers(0, k // 2))
    attrs = dict(kernel_shape=(k, k), strides=(s, s), pads=(p,) * 4, group=groups)
    y = out_shape(conv_group((2, cg * groups, h, w), (m, cg, k, k), attrs))
    node = conv_group((2, cg * groups, h, w), (m, cg, k, k), attrs, (RESIDUAL,), [(m, 1, 1), y])
    extra = data.draw(st.sampled_from([0, 4]))
    ins = [_nhwc("in0", node.inputs[0].type.shape, cg * groups + extra, extra),
           TensorArg("in1", "float32", (m, cg, k, k), channels_last_strides((m, cg, k, k))),
           TensorArg.contiguous("in2", "float32", (m, 1, 1)), _nhwc("in3", y)]
    outs = [_nhwc("out0", y)]
    tactics = [t for t in conv.TACTICS if t.get("algorithm") in ("implicit_gemm", "gemm_1x1", "direct")
               and t.get("bm", 16) <= 32 and t.get("bn", 16) <= 32 and conv.valid(node, t, outs, ins)]
    tactic = data.draw(st.sampled_from(tactics))
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(a.shape).astype(np.float32) for a in ins]
    got, _, spec = run_generated(node, arrays, tactic, out_args=outs, in_args=ins)
    want = KERNELS[node.op](node, *arrays)[0]
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4, err_msg=spec.source)
