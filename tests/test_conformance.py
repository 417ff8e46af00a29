"""Conformance of the reference interpreter against data nobody here wrote (see conformance.py)."""

import os

import numpy as np
import pytest

import known_gaps
from conftest import COUNTS, SHARED
from conformance import folder_cases, light_cases, node_cases, run_suite

import nbtrt
from nbtrt import reference


def _check(suite, tally, gaps):
    COUNTS.append(tally.line(suite))
    unexpected = {n: r for n, r in tally.failed.items() if n not in gaps}
    closed = sorted(n for n in tally.passed if n in gaps)
    assert not unexpected, "\n".join(f"{n}: {r}" for n, r in sorted(unexpected.items()))
    assert not closed, f"known gaps now pass, remove them from known_gaps.py: {closed}"
    return tally


def test_onnx_node_cases():
    tally = _check("onnx node cases", run_suite(node_cases()), known_gaps.NODE)
    selected = len(tally.passed) + len(tally.failed)
    assert selected > 500
    assert len(tally.passed) >= 0.95 * selected


def test_light_model_zoo():
    tally = _check("light model zoo", run_suite(light_cases(), filter_supported=False), {})
    assert len(tally.passed) == 9


@pytest.mark.parametrize("suite", ["pytorch-converted", "pytorch-operator", "simple"])
def test_folder_cases(suite):
    tally = _check(suite, run_suite(folder_cases(suite)), known_gaps.FOLDER)
    assert tally.passed


def test_digits_cnn_against_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    model = os.path.join(SHARED, "models", "digits_cnn.onnx")
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    x = data["images"][data["test_idx"]]
    labels = data["labels"][data["test_idx"]]
    ours = reference.run(model, {"image": x})["logits"]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {"image": x})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours, np.load(os.path.join(SHARED, "models", "digits_cnn_test_logits.npy")),
                               rtol=1e-4, atol=1e-4)
    top1 = float((ours.argmax(1) == labels).mean())
    COUNTS.append(f"digits_cnn: top-1 {top1:.2%} on {len(labels)} test images "
                  f"(onnxruntime {(theirs.argmax(1) == labels).mean():.2%})")
    assert abs(top1 - 0.9899) < 0.0005
    assert nbtrt.parse(model).inputs[0].type.shape[0] == "N"
