"""Per-kernel times of an nbtrt engine (each kernel launched alone, CUDA events), slowest first.

    python benchmarks/profile_kernels.py MODEL.onnx|zoo:NAME|tv:resnet50 [--batch 64] [--top 25] [--precision fp16]

``tv:NAME`` exports a torchvision network (random weights) to ONNX first (needs torch). ``--precision
int8`` calibrates on two batches of 8 standard-normal inputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def model_path(spec: str) -> str:
    if not spec.startswith("tv:"):
        from nbtrt.cli import resolve_model
        return resolve_model(spec)
    import torch
    import torchvision as tv
    name = spec[3:]
    extra = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = getattr(tv.models, name)(weights=None, **extra).eval()
    path = os.path.join(tempfile.mkdtemp(), f"{name}.onnx")
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), path, opset_version=17, input_names=["input"],
                      dynamic_axes={"input": {0: "N"}}, dynamo=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "fp16", "int8"])
    args = parser.parse_args()
    import nbtrt
    path = model_path(args.model)
    rng = np.random.default_rng(0)
    int8 = {}
    if args.precision == "int8":
        v = nbtrt.parse(path).inputs[0]
        shape = [8 if isinstance(d, str) else d for d in v.type.shape]
        int8 = dict(calibration_data=[rng.standard_normal(shape).astype(np.float32) for _ in range(2)])
    engine = nbtrt.compile(path, precision=args.precision, dims={"N": args.batch}, **int8)
    ctx = engine.create_context()
    v = engine.graph.inputs[0]
    x = rng.standard_normal(v.type.shape).astype(v.type.dtype)
    rows = ctx.profile({v.name: x})
    total = sum(r["ms"] for r in rows)
    print(f"{len(rows)} kernels, {total:.3f} ms in all (sum of solo launches)")
    for r in sorted(rows, key=lambda r: -r["ms"])[:args.top]:
        print(f"{r['ms']:8.3f} ms {100 * r['ms'] / total:5.1f}%  {r['kind']:8s} {r['name'][:40]:40s} "
              f"grid {r['grid']} block {r['block']} {r['tactic']} {r.get('dtypes', '')}")
    by_kind = {}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["ms"]
    print("by kind: " + ", ".join(f"{k} {ms:.3f} ms" for k, ms in sorted(by_kind.items(), key=lambda t: -t[1])))


if __name__ == "__main__":
    main()
