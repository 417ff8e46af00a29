"""The whole pipeline on real networks: the figures of the build report, and optimized == original."""

import os

import numpy as np
import pytest

from conformance import light_cases
from conftest import COUNTS, SHARED
from helpers import assert_same

import nbtrt
from nbtrt.config import BuildConfig
from nbtrt.groups import kernel_kind
from nbtrt.passes import PIPELINE

LIGHT = {c.name: c for c in light_cases()}


def _plan(name):
    case = LIGHT[name]
    original = nbtrt.parse(case.model)
    graph, report = nbtrt.plan(nbtrt.parse(case.model))
    inputs = dict(zip([v.name for v in original.inputs], case.data_sets[0][0]))
    return graph, report, original, inputs


@pytest.mark.parametrize("name", sorted(LIGHT))
def test_light_model_optimized_equals_original(name):
    graph, report, original, inputs = _plan(name)
    unfused = nbtrt.parse(LIGHT[name].model)
    no_fusion = BuildConfig(disabled_passes=frozenset(p.NAME for p in PIPELINE) - {"fold_constants", "dead_code"})
    _, before = nbtrt.plan(unfused, no_fusion)
    COUNTS.append(f"plan {name}: {len(original.nodes)} ONNX nodes, {len(before.kernels)} kernels after "
                  f"constant folding alone, {len(report.kernels)} after the pipeline")
    assert_same(graph, original, inputs, rtol=1e-5)


def test_googlenet_figures():
    graph, report, original, inputs = _plan("inception_v1")
    ops = {n.op for n in graph.nodes if kernel_kind(n)}
    assert not ops & {"Concat", "Reshape", "Dropout", "Relu"}
    assert all(k["op"] != "Concat" for k in report.kernels)
    assert len(report.applied("merge_parallel_convs")) == 9
    assert len(report.kernels) <= 60


def test_resnet50_figures():
    graph, report, original, inputs = _plan("resnet50")
    n_bn = sum(n.op == "BatchNormalization" for n in original.nodes)
    assert n_bn and len(report.applied("fold_batchnorm")) == n_bn
    assert not any(n.op in ("BatchNormalization", "Sum", "Add", "Relu") for n in graph.nodes)
    fused = [k for k in report.kernels if k["kind"] == "conv" and
             any(original_op(original, s) in ("Sum", "Add") for s in k["nodes"])]
    assert len(fused) == 16
    assert len(report.kernels) <= 57


def original_op(graph, name):
    return next((n.op for n in graph.nodes if n.name == name), None)


def test_digits_cnn_optimized_equals_original():
    model = os.path.join(SHARED, "models", "digits_cnn.onnx")
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    x = data["images"][data["test_idx"][:64]]
    original = nbtrt.parse(model)
    graph, report = nbtrt.plan(model)
    assert len(report.applied("merge_parallel_convs")) == 1
    assert len(report.applied("concat_in_place")) == 1
    assert_same(graph, original, {"image": x})
