"""Softmax / LogSoftmax, LRN, BatchNormalization, InstanceNormalization and LayerNormalization kernels
in the simulator against the reference: random shapes, axes (0, 1, −1, ...), row tactics, LayerNorm's
Mean / InvStdDev outputs, a softmax written into a strided slice."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness import assert_matches, run_generated
from nbtrt.codegen.kernel import TensorArg
from test_reduce import bare_floats, float64_values, plain, row_tactics, spec_for

FAST = settings(max_examples=20, deadline=None)


@st.composite
def shape_and_axis(draw, min_rank=1, max_numel=48):
    rank = draw(st.integers(min_rank, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    assume(int(np.prod(shape)) <= max_numel)
    return shape, draw(st.integers(-rank, rank - 1))


def normal(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@FAST
@given(shape_and_axis(), st.sampled_from(["Softmax", "LogSoftmax"]), row_tactics(), st.integers(0, 1000))
def test_softmax_random(case, op, tactic, seed):
    shape, axis = case
    node = plain(op, [shape], {"axis": axis})
    assert_matches(node, [normal(shape, seed, 3.0)], rtol=1e-5, atol=1e-6, tactic=tactic)


def test_softmax_axes_0_1_last():
    x = normal((3, 4, 5), 1, 4.0)
    for axis, tactic in ((0, {"threads": 1, "rows": 32}), (1, {"threads": 2, "rows": 8, "blocks": 2}),
                         (-1, {"threads": 4, "rows": 4, "blocks": 2})):
        for op in ("Softmax", "LogSoftmax"):
            spec = assert_matches(plain(op, [x.shape], {"axis": axis}), [x], rtol=1e-5, atol=1e-6, tactic=tactic)
            assert f"# {op} over axis {axis % 3}" in spec.source


def test_softmax_into_strided_slice():
    """Softmax over the last axis of [2, 5] written into rows 1..2 of a [4, 5] buffer, column-major."""
    x = normal((2, 5), 2)
    dst = TensorArg("out0", "float32", (2, 5), (1, 4), 1)
    node = plain("Softmax", [x.shape], {"axis": -1})
    (got,), buffers, _ = run_generated(node, [x], {"threads": 4, "rows": 2}, [dst], {"out0": 20})
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    assert np.isnan(buffers["out0"].reshape(5, 4)[:, [0, 3]]).all()


@FAST
@given(shape_and_axis(min_rank=2), st.booleans(), st.booleans(), row_tactics(), st.integers(0, 1000))
def test_layer_norm_random(case, with_bias, stats, tactic, seed):
    shape, axis = case
    tail = shape[axis:]
    arrays = [normal(shape, seed, 2.0), normal(tail, seed + 1)] + ([normal(tail, seed + 2)] if with_bias else [])
    node = plain("LayerNormalization", [a.shape for a in arrays], {"axis": axis}, n_outputs=3 if stats else 1)
    assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=tactic)


def test_layer_norm_axis_last_and_second_last_with_stats():
    x = normal((2, 3, 6), 3, 2.0)
    for axis, scale_shape in ((-1, (6,)), (-2, (3, 6)), (-2, (1, 6))):  # the last: a broadcast scale
        arrays = [x, normal(scale_shape, 4), normal(scale_shape, 5)]
        node = plain("LayerNormalization", [a.shape for a in arrays], {"axis": axis, "epsilon": 1e-3}, n_outputs=3)
        spec = assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic={"threads": 4, "rows": 2, "blocks": 2})
        assert "out1[" in spec.source and "out2[" in spec.source


@FAST
@given(st.integers(1, 2), st.integers(1, 4), st.lists(st.integers(1, 5), min_size=1, max_size=2), row_tactics(),
       st.integers(0, 1000))
def test_instance_norm_random(n, c, spatial, tactic, seed):
    shape = (n, c) + tuple(spatial)
    arrays = [normal(shape, seed, 2.0), normal((c,), seed + 1), normal((c,), seed + 2)]
    node = plain("InstanceNormalization", [a.shape for a in arrays], {"epsilon": 1e-4})
    assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=tactic)


@FAST
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.integers(0, 1000))
def test_batch_norm_inference_random(shape, seed):
    c = shape[1]
    var = np.abs(normal((c,), seed + 4)) + np.float32(0.1)
    arrays = [normal(shape, seed), normal((c,), seed + 1), normal((c,), seed + 2), normal((c,), seed + 3), var]
    node = plain("BatchNormalization", [a.shape for a in arrays], {"epsilon": 1e-3})
    assert_matches(node, arrays, rtol=1e-5, atol=1e-6, tactic={"threads": 32, "rows": 1, "blocks": 2})


@FAST
@given(st.lists(st.integers(1, 5), min_size=2, max_size=4), st.integers(1, 6),
       st.floats(1e-4, 1.0), st.floats(0.1, 1.0), st.floats(0.5, 2.0), st.integers(0, 1000))
def test_lrn_random(shape, size, alpha, beta, bias, seed):
    assume(int(np.prod(shape)) <= 120)
    node = plain("LRN", [shape], {"size": size, "alpha": alpha, "beta": beta, "bias": bias})
    assert_matches(node, [normal(shape, seed, 2.0)], rtol=1e-5, atol=1e-6,
                   tactic={"threads": 32, "rows": 1, "blocks": 2})


def test_source_is_float32_and_readable():
    x = np.zeros((2, 3, 4, 5), np.float32)
    v = np.zeros(3, np.float32)
    cases = [("Softmax", [x], {"axis": 1}, 1), ("LogSoftmax", [x], {"axis": -1}, 1),
             ("LRN", [x], {"size": 5}, 1), ("BatchNormalization", [x, v, v, v, v], {}, 1),
             ("InstanceNormalization", [x, v, v], {}, 1),
             ("LayerNormalization", [x, x[0, 0], x[0, 0]], {"axis": -2}, 3)]
    specs = [spec_for(plain(op, [a.shape for a in arrays], attrs, n_outputs=n), arrays, {"threads": 4, "rows": 2})
             for op, arrays, attrs, n in cases]
    for spec in specs:
        assert spec.source.startswith("# nbtrt ") and not bare_floats(spec.source), spec.source
    assert "math.pow(float32(1.0) + float32(2e-05) * sq, float32(0.75))" in specs[2].source
    assert float64_values(specs) == {}
