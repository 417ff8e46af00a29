"""The engine commands of the command line: build -> inspect -> run with npz files; bench without a GPU."""

import contextlib
import io
import json
import os

import numpy as np
import pytest

from conftest import SHARED

from nbtrt import reference
from nbtrt.cli import main

DIGITS = os.path.join(SHARED, "models", "digits_cnn.onnx")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """(engine file, what ``nbtrt build`` printed)."""
    path = str(tmp_path_factory.mktemp("cli") / "digits.nbtrt")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["build", DIGITS, "-o", path, "--dim", "N=2"]) == 0
    return path, out.getvalue()


@pytest.fixture
def engine_file(build):
    return build[0]


def test_build_and_inspect(build, engine_file, capsys):
    out = build[1]
    assert "11 kernels" in out and "kernel sources only" in out
    assert main(["inspect", engine_file]) == 0
    out = capsys.readouterr().out
    assert "arch: none" in out and "image float32[2, 1, 8, 8]" in out and "logits float32[2, 10]" in out
    assert "24 ONNX nodes -> 11 kernels" in out and "activations" in out and "numba-cuda" in out
    assert out.count(" conv ") == 7 and "algorithm=" in out
    assert main(["inspect", engine_file, "--source", "/14/Gemm"]) == 0
    source = capsys.readouterr().out
    assert source.startswith("# nbtrt gemm kernel for '/14/Gemm'") and "cuda." in source
    assert main(["inspect", engine_file, "--source", "0"]) == 0
    assert "# nbtrt conv kernel" in capsys.readouterr().out
    assert main(["inspect", engine_file, "--json"]) == 0
    header = json.loads(capsys.readouterr().out)
    assert len(header["kernels"]) == 11 and header["config"]["dims"] == {"N": 2}


def test_run_engine_with_npz_files(engine_file, tmp_path, capsys):
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    x = data["images"][data["test_idx"][:2]]
    np.savez(tmp_path / "in.npz", image=x)
    assert main(["run", engine_file, "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz")]) == 0
    out = capsys.readouterr().out
    assert "engine of 11 kernels" in out and "simulator" in out and "logits: float32[2, 10]" in out
    got = np.load(tmp_path / "out.npz")["logits"]
    np.testing.assert_allclose(got, reference.run(DIGITS, {"image": x})["logits"], rtol=1e-4, atol=1e-4)


def test_bench_without_a_gpu_is_a_clear_error(engine_file, capsys):
    assert main(["bench", engine_file, "--runs", "5"]) == 2
    assert "bench needs a CUDA GPU" in capsys.readouterr().err
    assert main(["bench", DIGITS, "--profile"]) == 2
    assert "bench needs a CUDA GPU" in capsys.readouterr().err


def test_build_with_input_shape(tmp_path, capsys):
    path = str(tmp_path / "digits3.nbtrt")
    assert main(["build", DIGITS, "-o", path, "--input-shape", "image=3x1x8x8"]) == 0
    assert "image float32[3,1,8,8]" in capsys.readouterr().out
    assert main(["inspect", path]) == 0
    assert "image float32[3, 1, 8, 8]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["build", DIGITS, "-o", "x.nbtrt", "--arch", "sm_90"], "simulator"),
    (["build", DIGITS, "-o", "x.nbtrt", "--input-shape", "image:2x1x8x8"], "--input-shape expects"),
    (["inspect", DIGITS], "not an nbtrt engine file"),
    (["inspect", "missing.nbtrt"], "cannot read"),
])
def test_engine_command_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_engine_file_errors(engine_file, capsys, tmp_path):
    assert main(["run", engine_file, "--dim", "N=4"]) == 2
    assert "fixed shapes" in capsys.readouterr().err
    assert main(["inspect", engine_file, "--source", "nope"]) == 2
    assert "no kernel 'nope'" in capsys.readouterr().err
    assert main(["build", engine_file, "-o", str(tmp_path / "again.nbtrt")]) == 2
    assert "already an engine file" in capsys.readouterr().err
    damaged = tmp_path / "damaged.nbtrt"
    data = open(engine_file, "rb").read()
    damaged.write_bytes(data[:-10])
    assert main(["run", str(damaged)]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_build_bench_profile_run(tmp_path, capsys):
    path = str(tmp_path / "digits8.nbtrt")
    assert main(["build", DIGITS, "-o", path, "--dim", "N=8"]) == 0
    assert "cubins for sm_" in capsys.readouterr().out
    assert main(["bench", path, "--runs", "50", "--warmup", "5", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "loaded in" in out and out.count("median") == 2 and "inferences/s" in out and "sum of kernels" in out
    assert main(["bench", DIGITS, "--dim", "N=8", "--runs", "20"]) == 0
    assert "built in" in capsys.readouterr().out
    assert main(["inspect", path]) == 0
    assert "arch: sm_" in capsys.readouterr().out
    assert main(["run", path, "--outputs", str(tmp_path / "out.npz")]) == 0
    assert "ran on the GPU" in capsys.readouterr().out
    assert np.load(tmp_path / "out.npz")["logits"].shape == (8, 10)


def test_build_int8_calibrating_on_an_npz_then_from_the_cache(tmp_path, capsys):
    """``nbtrt build --precision int8 --calibration-data calib.npz``: batches of the npz's samples, the
    scales written to the calibration cache, which a second build reads without data."""
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    calib, cache = str(tmp_path / "calib.npz"), str(tmp_path / "digits.calib")
    np.savez(calib, image=data["images"][data["calib_idx"][:20]])
    first, second = str(tmp_path / "a.nbtrt"), str(tmp_path / "b.nbtrt")
    assert main(["build", DIGITS, "-o", first, "--dim", "N=2", "--precision", "int8", "--calibration-data", calib,
                 "--calibration-batch", "8", "--calibrator", "minmax", "--calibration-cache", cache]) == 0
    assert os.path.exists(cache) and "image" in open(cache).read()
    assert main(["build", DIGITS, "-o", second, "--dim", "N=2", "--precision", "int8", "--calibrator", "minmax",
                 "--calibration-cache", cache]) == 0
    assert main(["inspect", second]) == 0
    assert " int8 " in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--calibration-data", "{calib}"], "need --precision int8"),
    (["--precision", "int8", "--calibration-data", "{missing}"], "cannot read the calibration data"),
    (["--precision", "int8", "--calibration-data", "{uneven}"], "one sample count along axis 0"),
    (["--precision", "int8", "--calibration-data", "{wrong}"], "unknown input(s) 'pixels'"),
    (["--precision", "int8", "--calibration-data", "{calib}", "--calibration-batch", "0"], "at least 1"),
])
def test_bad_calibration_options(tmp_path, capsys, argv, message):
    x = np.random.default_rng(0).random((4, 1, 8, 8), np.float32)
    files = {"calib": tmp_path / "c.npz", "missing": tmp_path / "none.npz", "uneven": tmp_path / "u.npz",
             "wrong": tmp_path / "w.npz"}
    np.savez(files["calib"], image=x)
    np.savez(files["uneven"], image=x, other=x[:3])
    np.savez(files["wrong"], pixels=x)
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    assert main(["build", DIGITS, "-o", str(tmp_path / "e.nbtrt")] + argv) != 0
    assert message in capsys.readouterr().err
