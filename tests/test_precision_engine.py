"""fp16 and tf32 engines in the simulator (the CUDA-core kernels with float16 storage): digits_cnn
against the fp32 reference, engine files keeping float16 weights and the report's precisions, and the
command line's --precision / --layer-precision."""

import contextlib
import io
import json
import os

import numpy as np
import pytest

from conftest import SHARED

import nbtrt
from nbtrt import reference
from nbtrt.cli import main
from nbtrt.runtime.memory import plan_memory

DIGITS = os.path.join(SHARED, "models", "digits_cnn.onnx")


def rel_error(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.fixture(scope="module")
def images():
    data = np.load(os.path.join(SHARED, "models", "digits.npz"))
    return data["images"][data["test_idx"][:2]]


def test_digits_fp16_matches_fp32_reference(images):
    fp16_engine = nbtrt.compile(DIGITS, precision="fp16", dims={"N": 2})
    got = fp16_engine.run({"image": images})["logits"]
    want = reference.run(DIGITS, {"image": images})["logits"]
    assert got.dtype == np.float32 and rel_error(got, want) <= 5e-3
    assert (got.argmax(1) == want.argmax(1)).all()
    # the engine computes what the reference of its own (fp16) graph computes
    assert rel_error(got, reference.run(fp16_engine.graph, {"image": images})["logits"]) <= 1e-3
    assert {k["precision"] for k in fp16_engine.report.kernels} == {"fp16"}
    assert sum(v.const.dtype == np.float16 for v in fp16_engine.graph.constants.values()) == 8  # 7 convs, 1 gemm


def test_fp16_engine_file_round_trip(tmp_path):
    fp16_engine = nbtrt.compile(DIGITS, precision="fp16", dims={"N": 2}, layer_precision={"/14/Gemm": "fp32"})
    assert sum(v.const.dtype == np.float16 for v in fp16_engine.graph.constants.values()) == 7  # gemm: fp32
    path = tmp_path / "digits16.nbtrt"
    fp16_engine.save(path)
    loaded = nbtrt.load(path)
    assert loaded.config.precision == "fp16" and loaded.config.layer_precision == {"/14/Gemm": "fp32"}
    assert loaded.report.to_dict() == fp16_engine.report.to_dict()
    for v in fp16_engine.graph.constants.values():  # float16 weights stored as they are
        w = loaded.graph.constants[v.name].const
        assert w.dtype == v.const.dtype and np.array_equal(w, v.const)
    assert [v.type for v in loaded.graph.values()] == [v.type for v in fp16_engine.graph.values()]
    fp32_graph, _ = nbtrt.plan(DIGITS, nbtrt.BuildConfig(dims={"N": 2}))
    assert loaded.memory.arena_bytes < plan_memory(fp32_graph).arena_bytes  # float16 activations
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["inspect", str(path)]) == 0
    text = out.getvalue()
    assert "prec" in text and text.count(" fp16 ") >= 10
    assert "precision reasons: /14/Gemm: fp32 (layer_precision override (/14/Gemm))" in text
    with pytest.raises(SystemExit):
        main(["run", str(path), "--precision", "fp16x"])
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["run", str(path), "--precision", "fp16"]) == 2
    assert "precision is fixed when it is built" in err.getvalue()


def tiny_model(path):
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 2, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["y"], name="act")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    with open(path, "wb") as f:
        f.write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return str(path)


def test_cli_plan_build_and_run_with_precision(tmp_path, capsys):
    assert main(["plan", DIGITS, "--precision", "fp16", "--layer-precision", "/0/Conv=fp32"]) == 0
    out = capsys.readouterr().out
    assert "precision: fp16 10, fp32 1" in out and "fp32: /0/Conv: layer_precision override (/0/Conv)" in out
    assert main(["plan", DIGITS, "--precision", "fp16", "--json"]) == 0
    assert {k["precision"] for k in json.loads(capsys.readouterr().out)["kernels"]} == {"fp16"}
    assert main(["plan", DIGITS, "--layer-precision", "/0/Conv"]) == 2
    assert "NODE=PRECISION" in capsys.readouterr().err
    path = str(tmp_path / "d.nbtrt")
    assert main(["build", DIGITS, "-o", path, "--dim", "N=1", "--precision", "tf32"]) == 0
    engine = nbtrt.load(path)
    assert engine.config.precision == "tf32"
    assert {k.attrs.get("math") for k in engine.graph.nodes if k.op in ("nbtrt.conv", "nbtrt.gemm")} == {"tf32"}
    capsys.readouterr()
    model = tiny_model(tmp_path / "tiny.onnx")
    x = np.random.default_rng(0).random((1, 2, 3, 3), np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", model, "--precision", "fp16", "--inputs", str(tmp_path / "in.npz"),
                 "--outputs", str(tmp_path / "out.npz")]) == 0
    out = capsys.readouterr().out
    # a Pad to 8 float16 channels (passes/pad_channels.py), then the conv
    assert "engine of 2 kernels" in out and "fp16); built in" in out and "y: float32[1, 3, 3, 3]" in out
    got = np.load(tmp_path / "out.npz")["y"]
    assert rel_error(got, reference.run(model, {"x": x})["y"]) <= 5e-3
