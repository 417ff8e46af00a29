"""The nbtrt command line."""

import json

import numpy as np

from nbtrt.cli import main


def test_run_zoo_model(capsys, tmp_path):
    out = tmp_path / "out.npz"
    assert main(["run", "zoo:light_squeezenet", "--outputs", str(out)]) == 0
    text = capsys.readouterr().out
    assert "light_squeezenet" in text and "float32[1, 1000" in text
    assert np.load(out)[np.load(out).files[0]].shape == (1, 1000, 1, 1)


def test_plan_json(capsys):
    assert main(["plan", "zoo:light_inception_v1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kernel_count"] == len(report["kernels"]) <= 60
    assert all({"name", "kind", "nodes"} <= set(k) for k in report["kernels"])
    merges = [d for d in report["decisions"] if d["rule"] == "merge_parallel_convs" and d["applied"]]
    assert len(merges) == 9


def test_compare_and_graph(capsys):
    assert main(["compare", "zoo:light_zfnet512"]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["graph", "zoo:light_zfnet512"]) == 0
    assert "Conv(" in capsys.readouterr().out


def test_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["run", str(bad)]) == 2
    assert "nbtrt: error:" in capsys.readouterr().err
    assert main(["plan", "zoo:nothing"]) == 2
    assert "available" in capsys.readouterr().err
