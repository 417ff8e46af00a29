"""Build-time tuning on the GPU: winners are correct, and a warm timing cache makes a rebuild's
tuning at least 10x cheaper."""

import os

import numpy as np
import pytest

from conftest import SHARED

import nbtrt
from nbtrt import reference

pytestmark = pytest.mark.gpu
DIGITS = os.path.join(SHARED, "models", "digits_cnn.onnx")


def test_tuning_with_timing_cache(tmp_path):
    cache = str(tmp_path / "timing.json")
    cold = nbtrt.compile(DIGITS, dims={"N": 64}, tuning="full", timing_cache=cache)
    warm = nbtrt.compile(DIGITS, dims={"N": 64}, tuning="full", timing_cache=cache)
    assert cold.tuning["tuned"] > 0 and warm.tuning["tuned"] == 0 and warm.tuning["cached"] >= cold.tuning["tuned"]
    assert warm.tuning["seconds"] * 10 <= cold.tuning["seconds"]
    x = np.random.default_rng(0).random((64, 1, 8, 8), np.float32)
    want = reference.run(DIGITS, {"image": x})["logits"]
    for engine in (cold, warm):
        got = engine.run({"image": x})["logits"]
        assert np.abs(got - want).max() / np.abs(want).max() <= 1e-4
    assert [k.spec.tactic for k in cold.kernels] == [k.spec.tactic for k in warm.kernels]
