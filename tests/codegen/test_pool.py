"""Pool kernels in the simulator against the reference: nbtrt.pool groups with random windows (kernel,
strides, dilations, symmetric and asymmetric pads, ceil_mode, count_include_pad, auto_pad) and fused
epilogues, global pools as block reductions, an output written into a strided concat slice, a group
split into two outputs, and plain MaxPool with its Indices output."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import harness
from harness import assert_matches, run_generated
from nbtrt.codegen import pool
from nbtrt.codegen.kernel import TensorArg
from nbtrt.errors import NbtrtError
from nbtrt.groups import Step, group_attrs, group_op
from nbtrt.ir import Graph, TensorType
from test_reduce import bare_floats, float64_values, plain, row_tactics, spec_for

FAST = settings(max_examples=25, deadline=None)
C = 3
EPILOGUES = {  # program, shapes of in1.. ("C": per channel, None: the output's shape, a residual)
    "none": ((), []),
    "bias_relu": ((Step("Add", ("acc", "in1")), Step("Relu", ("s0",))), ["C"]),
    "scale_residual": ((Step("Mul", ("acc", "in1")), Step("Add", ("s0", "in2")),
                        Step("Clip", ("s1",), ())), [(), None]),
}


def pool_group(base, x_shape, attrs, epilogue="none", splits=None):
    """An nbtrt.pool group over a graph input, base_attrs filled as the frontend does."""
    anchor = plain(base, [x_shape], attrs)
    out_shape = anchor.outputs[0].type.shape
    program, extra = EPILOGUES[epilogue]
    g = Graph()
    ins = [g.add_input("x", TensorType("float32", x_shape))]
    shapes = [out_shape if s is None else (C,) + (1,) * (len(x_shape) - 2) if s == "C" else s for s in extra]
    ins += [g.add_input(f"e{k}", TensorType("float32", s)) for k, s in enumerate(shapes)]
    splits = splits or (x_shape[1],)
    programs = (program,) * len(splits)
    node = g.add_node(group_op(base), ins, n_outputs=len(splits), name="pool_grp",
                      attrs=group_attrs(base, anchor.attrs, 1, splits, programs, (anchor.name, "epi")))
    for v, s in zip(node.outputs, splits):
        v.type = TensorType("float32", out_shape[:1] + (s,) + out_shape[2:])
    return node


def arrays_for(node, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.type.shape).astype(np.float32) for v in node.inputs]


@st.composite
def window_case(draw):
    nsp = draw(st.sampled_from([1, 2, 2, 2, 3]))
    sizes = [draw(st.integers(1, 6 if nsp < 3 else 3)) for _ in range(nsp)]
    kernel = [draw(st.integers(1, 3)) for _ in range(nsp)]
    attrs = {"kernel_shape": kernel, "strides": [draw(st.integers(1, 3)) for _ in range(nsp)],
             "ceil_mode": draw(st.sampled_from([0, 1]))}
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel + kernel]  # begins, ends: may differ
    else:
        attrs["auto_pad"] = auto_pad
    if draw(st.booleans()):
        attrs["dilations"] = [draw(st.integers(1, 2)) for _ in range(nsp)]
    return (draw(st.integers(1, 2)), C) + tuple(sizes), attrs


@FAST
@given(window_case(), st.sampled_from(["MaxPool", "AveragePool"]), st.sampled_from([0, 1]),
       st.sampled_from(sorted(EPILOGUES)), st.integers(0, 1000))
def test_window_pool_random(case, base, include_pad, epilogue, seed):
    x_shape, attrs = case
    if base == "AveragePool":
        attrs = dict(attrs, count_include_pad=include_pad)
    try:
        node = pool_group(base, x_shape, attrs, epilogue)
    except NbtrtError:  # the window does not fit the padded input
        assume(False)
    assert_matches(node, arrays_for(node, seed), rtol=1e-5, atol=1e-6,
                   tactic={"threads": 32, "rows": 1, "blocks": 2})


@FAST
@given(st.sampled_from(["GlobalAveragePool", "GlobalMaxPool"]),
       st.lists(st.integers(1, 7), min_size=1, max_size=3), st.sampled_from(sorted(EPILOGUES)),
       row_tactics(), st.integers(0, 1000))
def test_global_pool_random(base, spatial, epilogue, tactic, seed):
    assume(int(np.prod(spatial)) <= 64)
    node = pool_group(base, (2, C) + tuple(spatial), {}, epilogue)
    assert_matches(node, arrays_for(node, seed), rtol=1e-5, atol=1e-6, tactic=tactic)


def test_global_average_7x7_block_tree():
    node = pool_group("GlobalAveragePool", (1, 4, 7, 7), {}, "none")
    spec = assert_matches(node, arrays_for(node, 3), atol=1e-6, tactic={"threads": 16, "rows": 2})
    assert spec.block == (16, 2, 1) and spec.grid == (2, 1, 1)
    assert "red = cuda.shared.array((2, 16), float32)" in spec.source
    assert "acc = acc / float32(49.0)" in spec.source


def test_pool_into_concat_slice():
    """A 3x3/2 max pool (with bias + Relu) writing its [1, 3, 3, 3] result into channels 2..5 of a
    [1, 7, 3, 3] concat buffer; the rest of the buffer stays poisoned."""
    node = pool_group("MaxPool", (1, C, 6, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 0]},
                      "bias_relu")
    arrays = arrays_for(node, 4)
    dst = TensorArg("out0", "float32", (1, 3, 3, 3), (63, 9, 3, 1), 18)
    (got,), buffers, _ = run_generated(node, arrays, {"threads": 16, "rows": 1}, [dst], {"out0": 63})
    np.testing.assert_allclose(got, harness.expected(node, arrays)[0], rtol=1e-6)
    whole = buffers["out0"].reshape(1, 7, 3, 3)
    assert np.isnan(whole[:, :2]).all() and np.isnan(whole[:, 5:]).all() and not np.isnan(got).any()


@pytest.mark.parametrize("base", ["AveragePool", "GlobalMaxPool"])
def test_group_split_into_two_outputs(base):
    attrs = {"kernel_shape": [2, 2], "ceil_mode": 1, "strides": [2, 2]} if base == "AveragePool" else {}
    node = pool_group(base, (2, C, 5, 5), attrs, "none", splits=(1, 2))
    spec = assert_matches(node, arrays_for(node, 5), atol=1e-6, tactic={"threads": 4, "rows": 4, "blocks": 2})
    assert "cl1 = c1 - 1" in spec.source


@pytest.mark.parametrize("storage_order", [0, 1])
def test_plain_max_pool_with_indices(monkeypatch, storage_order):
    attrs = {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "storage_order": storage_order}
    node = plain("MaxPool", [(2, C, 5, 4)], attrs, n_outputs=2)
    monkeypatch.setattr(harness, "generate", pool.emit)  # kernel_kind maps plain MaxPool to no family yet
    x = np.random.default_rng(6).standard_normal((2, C, 5, 4)).astype(np.float32)
    (y, idx), _, spec = run_generated(node, [x], {"threads": 32, "rows": 1})
    want_y, want_idx = harness.expected(node, [x])
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(idx, want_idx)


def test_source_is_float32_and_readable():
    window = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4}
    cases = (("MaxPool", window, "bias_relu"), ("AveragePool", window, "scale_residual"),
             ("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 2], "ceil_mode": 1, "strides": [2, 2]}, "none"),
             ("GlobalAveragePool", {}, "bias_relu"), ("GlobalMaxPool", {}, "none"))
    groups = [pool_group(base, (1, C, 7, 7), attrs, epi) for base, attrs, epi in cases]
    specs = [spec_for(g, [np.zeros(v.type.shape, np.float32) for v in g.inputs]) for g in groups]
    for spec in specs:
        assert spec.source.startswith("# nbtrt pool kernel for 'pool_grp'"), spec.source
        assert not bare_floats(spec.source), spec.source
    assert "if 0 <= x2 < 7:" in specs[0].source and "n2 = min(p2 + 3, 7) - max(p2, 0)" in specs[1].source
    assert float64_values(specs) == {}
