"""INT8 fidelity on real data: digits_cnn's top-1 on its 597 test images, fp32 against int8 with each
calibrator (entropy, minmax, percentile; 200 calibration images) and against onnxruntime's Q/DQ models
(per-channel and per-tensor weights, ``quantize_static`` on the same 200 images).

The int8 figures are the int8 build's own semantics run by the reference interpreter: the graph after
nbtrt's passes at ``precision="int8"`` (quantized conv/gemm inputs, int8 weights, exact integer sums,
the fused requantize epilogue — what the kernels compute), so it runs without a GPU. The GPU engine
itself is checked against the same figure by ``tests/test_int8.py::test_digits_int8_top1_on_the_gpu``.

    python benchmarks/int8_fidelity.py [--shared ../shared]

onnxruntime is needed for the Q/DQ rows only (skipped without it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def int8_top1(graph, images, labels) -> tuple[float, str]:
    """(top-1, "int8 conv/gemm kernels / int8-stored tensors") of ``graph`` (parsed, with its scales) built
    at int8, run by the reference."""
    import nbtrt
    from nbtrt import reference
    planned, _ = nbtrt.plan(graph, nbtrt.BuildConfig(precision="int8", dims={"N": len(images)}))
    kernels = sum("int8_multiplier" in n.attrs for n in planned.nodes)
    stored = sum(v.type.dtype == "int8" for v in planned.values() if not v.is_constant)
    int8 = f"{kernels} / {stored}"
    return float(np.mean(reference.run(planned, {"image": images})["logits"].argmax(1) == labels)), int8


def qdq_model(model: str, calib: np.ndarray, per_channel: bool, folder: str) -> str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": calib[i:i + 50]} for i in range(0, len(calib), 50)])

        def get_next(self):
            return next(self.batches, None)

    path = os.path.join(folder, f"digits_qdq_{'axis' if per_channel else 'tensor'}.onnx")
    quantize_static(model, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    args = parser.parse_args()
    import nbtrt
    from nbtrt import quant, reference
    model = os.path.join(args.shared, "models", "digits_cnn.onnx")
    data = np.load(os.path.join(args.shared, "models", "digits.npz"))
    images, labels = data["images"][data["test_idx"]], data["labels"][data["test_idx"]]
    calib = data["images"][data["calib_idx"]]
    batches = [calib[i:i + 50] for i in range(0, len(calib), 50)]
    fp32 = float(np.mean(reference.run(model, {"image": images})["logits"].argmax(1) == labels))
    rows = [("fp32", fp32, 0)]
    for calibrator in ("entropy", "minmax", "percentile"):
        graph = nbtrt.parse(model)
        graph.quant_scales = dict(quant.calibrate(graph, batches, calibrator, progress=False))
        rows.append((f"int8, {calibrator} calibrator", *int8_top1(graph, images, labels)))
    try:
        with tempfile.TemporaryDirectory() as folder:
            for per_channel in (True, False):
                path = qdq_model(model, calib, per_channel, folder)
                kind = "per-channel" if per_channel else "per-tensor"
                rows.append((f"int8, onnxruntime Q/DQ model ({kind} weights)",
                             *int8_top1(nbtrt.parse(path), images, labels)))
    except ImportError:
        print("(onnxruntime not installed: no Q/DQ rows)")
    print(f"digits_cnn, {len(images)} test images, {len(calib)} calibration images\n")
    print("| build | int8 conv/gemm kernels / int8 tensors | top-1 % | vs fp32 (points) |\n|---|---|---|---|")
    for name, top1, int8 in rows:
        print(f"| {name} | {int8} | {100 * top1:.2f} | {100 * (top1 - fp32):+.2f} |")


if __name__ == "__main__":
    main()
