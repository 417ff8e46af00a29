"""Latency and throughput: nbtrt against PyTorch on the same GPU, in one run (strict FP32, TF32, FP16 or INT8).

For each torchvision network (random weights, eval mode) and batch size: the model is exported to
ONNX, built with nbtrt, and timed beside PyTorch eager, PyTorch eager + CUDA graph and
torch.compile + CUDA graph ("reduce-overhead"), with TF32 off everywhere (``--precision fp32``), on
(``tf32``), or in half precision (``fp16``: PyTorch runs the model in float16 with channels_last
tensors and a float16 input; nbtrt builds with ``precision="fp16"`` and takes the model's float32
input; ``int8``: PyTorch as for fp16, nbtrt built with ``precision="int8"``, calibrated (entropy) on 32
random inputs of the same distribution, cached per model, and also with ``precision="fp16"``, timed in
the same run: the "nbtrt fp16" column). Every contender gets the same GPU-resident input; times are
CUDA-event times of one inference, median and p90 over the runs after a warm-up. nbtrt's output is
compared with PyTorch's (the relative error is reported).

    python benchmarks/bench_networks.py --models resnet50 googlenet --batches 1 64 [--no-compile] [--precision fp16]
        [--tuning fast|full|none] [--timing-cache cache.json] [--markdown out.md]

torch is imported here only: it is a benchmark dependency, not one of nbtrt's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def time_cuda(fn, torch, warmup=10, runs=100):
    """Median and p90 milliseconds of ``fn()`` by CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times)), float(np.percentile(times, 90))


def torch_model(name, torch, tv):
    extra = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    return getattr(tv.models, name)(weights=None, **extra).eval().cuda()


def cuda_graphed(fn, x, torch):
    """PyTorch eager captured into a CUDA graph."""
    static_x = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(static_x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_y = fn(static_x)
    return lambda: g.replay(), static_y


def bench_nbtrt(path, x, torch, args, precision):
    import nbtrt
    t0 = time.perf_counter()
    int8 = {}
    if precision == "int8":
        calib = torch.randn(32, *x.shape[1:], generator=torch.Generator().manual_seed(1)).numpy()
        int8 = dict(calibration_data=[calib[i:i + 8] for i in range(0, 32, 8)])
        if isinstance(path, str):  # a model file (not a parsed graph): its calibration cache beside it
            int8["calibration_cache"] = path + ".calib"
    engine = nbtrt.compile(path, precision=precision, dims={"N": x.shape[0]}, tuning=args.tuning,
                           timing_cache=args.timing_cache, **int8)
    build_s = time.perf_counter() - t0
    ctx = engine.create_context()
    name = engine.input_names[0]
    stream = torch.cuda.current_stream().cuda_stream
    out = {}

    def run():
        out.update(ctx.run_async({name: x}, stream))

    run()
    torch.cuda.synchronize()
    y = torch.as_tensor(next(iter(out.values())), device="cuda").clone()
    return run, y, engine, build_s


def bench_model(name, batch, args, torch, tv, rows):
    torch.manual_seed(0)
    model = torch_model(name, torch, tv)
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    path = os.path.join(tempfile.gettempdir(), f"nbtrt_bench_{name}.onnx")
    torch.onnx.export(model, x[:1], path, opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, dynamo=False)
    with torch.no_grad():
        ref = model(x)
        x_fp32 = x
        if args.precision in ("fp16", "int8"):
            model = model.half().to(memory_format=torch.channels_last)
            x = x.half().contiguous(memory_format=torch.channels_last)
        results = {"eager": time_cuda(lambda: model(x), torch)}
        replay, _ = cuda_graphed(model, x, torch)
        results["eager+graph"] = time_cuda(replay, torch)
        if not args.no_compile:
            compiled = torch.compile(model, mode="reduce-overhead")
            for _ in range(3):
                compiled(x)
            results["compile+graph"] = time_cuda(lambda: compiled(x), torch)
    if args.precision == "int8":
        run16, _, _, _ = bench_nbtrt(path, x_fp32, torch, args, "fp16")
        results["nbtrt fp16"] = time_cuda(run16, torch)
    run, y, engine, build_s = bench_nbtrt(path, x_fp32, torch, args, args.precision)
    err = float((y - ref).abs().max() / ref.abs().max())
    results["nbtrt"] = time_cuda(run, torch)
    mem = engine.memory
    rows.append({"model": name, "batch": batch, "results": results, "rel_err": err, "build_s": build_s,
                 "kernels": len(engine.kernels), "peak_mb": mem.arena_bytes / 2**20,
                 "sum_mb": mem.total_bytes / 2**20})
    print(format_row(rows[-1]), flush=True)


def format_row(row) -> str:
    r = row["results"]
    cells = [f"{row['model']} bs{row['batch']}"]
    for k in ("nbtrt", "nbtrt fp16", "eager", "eager+graph", "compile+graph"):
        if k in r:
            med, p90 = r[k]
            cells.append(f"{k} {med:.3f}/{p90:.3f} ms ({row['batch'] / med * 1000:.0f} img/s)")
    n = r["nbtrt"][0]
    ratios = ", ".join(f"{k}/nbtrt {r[k][0] / n:.2f}" for k in ("nbtrt fp16", "eager", "eager+graph", "compile+graph")
                       if k in r)
    return (" | ".join(cells) + f" | {ratios} | rel.err {row['rel_err']:.1e} | {row['kernels']} kernels, "
            f"build {row['build_s']:.0f} s, peak {row['peak_mb']:.0f} MB of {row['sum_mb']:.0f} MB")


def markdown(rows, torch, args) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"GPU: {torch.cuda.get_device_name()}; date {datetime.date.today()}; commit {commit or '?'}; "
             f"torch {torch.__version__}; precision {args.precision}; CUDA-event median / p90 of one inference.", "",
             "| model | batch | nbtrt ms (p90) | nbtrt fp16 ms | eager ms | eager+graph ms | compile+graph ms | "
             "eager+graph / nbtrt | compile+graph / nbtrt | nbtrt fp16 / nbtrt | nbtrt img/s | rel. err | "
             "peak / sum activations MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = row["results"]
        get = lambda k: f"{r[k][0]:.3f}" if k in r else "-"
        ratio = lambda k: f"{r[k][0] / r['nbtrt'][0]:.2f}" if k in r else "-"
        lines.append(f"| {row['model']} | {row['batch']} | {r['nbtrt'][0]:.3f} ({r['nbtrt'][1]:.3f}) | "
                     f"{get('nbtrt fp16')} | {get('eager')} | {get('eager+graph')} | {get('compile+graph')} | "
                     f"{ratio('eager+graph')} | {ratio('compile+graph')} | {ratio('nbtrt fp16')} | "
                     f"{row['batch'] / r['nbtrt'][0] * 1000:.0f} | "
                     f"{row['rel_err']:.1e} | {row['peak_mb']:.0f} / {row['sum_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "googlenet", "mobilenet_v2"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--tuning", default="fast", choices=["none", "fast", "full"], help="nbtrt's tuning level")
    parser.add_argument("--timing-cache", help="nbtrt timing cache file (reused across runs)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "fp16", "int8"])
    args = parser.parse_args()
    import torch
    import torchvision as tv
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    torch.backends.cudnn.benchmark = True
    rows = []
    for name in args.models:
        for batch in args.batches:
            bench_model(name, batch, args, torch, tv, rows)
    table = markdown(rows, torch, args)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
