"""Shared helpers of the pass tests: tiny ONNX models and an equivalence check."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import nbtrt
from nbtrt import reference
from nbtrt.config import BuildConfig
from nbtrt.report import BuildReport

RNG = np.random.default_rng(0)


def const(name, shape, scale=0.5):
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def make_model(nodes, inputs, outputs, inits=(), opset=17):
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    g = helper.make_graph(nodes, "g", [vi(n, s) for n, s in inputs], [vi(n, None) for n in outputs],
                          initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def random_inputs(graph, dims=None):
    rng = np.random.default_rng(1)
    return {v.name: rng.standard_normal([d if isinstance(d, int) else (dims or {}).get(d, 2)
                                         for d in v.type.shape]).astype(v.type.dtype) for v in graph.inputs}


def run_passes(model, *passes, config=BuildConfig()):
    """Parse ``model``, run the given pass modules in order; return (graph, report, original graph)."""
    graph, original = nbtrt.parse(model), nbtrt.parse(model)
    report = BuildReport()
    for p in passes:
        p.run(graph, config, report)
    graph.verify()
    return graph, report, original


def assert_same(graph, original, inputs=None, rtol=1e-5):
    inputs = inputs or random_inputs(original)
    want = reference.run(original, inputs)
    got = reference.run(graph, inputs)
    assert list(got) == list(want)
    for name in want:
        g, w = got[name].astype(np.float64), want[name].astype(np.float64)
        # NaN and infinities must sit at the same places with the same values; the finite rest is
        # compared relative to its largest magnitude
        assert np.array_equal(np.isnan(g), np.isnan(w)), f"{name}: NaN at other places"
        assert np.array_equal(g[np.isinf(w)], w[np.isinf(w)]), f"{name}: infinities differ"
        finite = np.isfinite(w)
        if finite.any():
            scale = max(np.abs(w[finite]).max(), 1e-30)
            err = np.abs(g[finite] - w[finite]).max() / scale
            assert err <= rtol, f"{name}: relative error {err:.3g}"
