"""YOLOv2 latency: nbtrt engines per precision beside PyTorch eager and eager + CUDA graph, same network.

The network is a Darknet cfg (default ``../shared/darknet/yolov2-voc.cfg``, 416×416; ``yolov2-tiny-voc.cfg``
works too) with a ``.weights`` file (``--weights``, else seeded random weights written by the tests'
writer, ``tests/darknet_weights.py``). nbtrt builds it with ``nbtrt.parse(cfg, weights=...)`` and
``nbtrt.compile(..., precision=p)`` per ``--precisions``; PyTorch runs an ``nn.Module`` built here from the
same cfg and weights file (``yolov2_torch.py``: the layer list and the weights reader below are plain
Python, independent of nbtrt's importer). Before anything is timed, the PyTorch model runs on the CPU in
float32 against nbtrt's numpy reference (``nbtrt.reference.run`` on the parsed graph): a relative error
above 1e-3 fails the run (exit status 1). ``--cpu-check`` stops there (no GPU needed).

On the GPU (TF32 off, cudnn.benchmark on): PyTorch eager and eager + CUDA graph in fp32 and in fp16
(``model.half()``, channels_last, float16 input), then one nbtrt engine per precision (float32 input).
Times are CUDA-event times of one inference, median and p90 over ``--runs`` runs after a warm-up; each
contender's output is compared with the float32 reference on the batch's first image (relative error:
max |y − ref| / max |ref|). int8 calibrates on 32 standard-normal images (``bench_networks.bench_nbtrt``).
A precision nbtrt cannot build is listed as not available.

    python benchmarks/bench_yolov2.py [--cfg ../shared/darknet/yolov2-voc.cfg] [--weights W] [--batch 1]
        [--precisions fp32 fp16 int8] [--tuning none|fast|full] [--timing-cache tc.json] [--markdown out.md]
    python benchmarks/bench_yolov2.py --cpu-check      # only the PyTorch-vs-reference check, on the CPU

torch is imported here only (``yolov2_torch.py`` is imported once it is needed): it is a benchmark
dependency, not one of nbtrt's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
SHARED = os.environ.get("NBTRT_SHARED", os.path.join(HERE, "..", "..", "shared"))
MAX_TORCH_ERROR = 1e-3
ACTIVATIONS = ("leaky", "relu", "logistic", "linear")


def _conv(o, chw, layer, shapes):
    c, h, w = chw
    size, stride = int(o.get("size", 1)), int(o.get("stride", 1))
    pad = size // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
    spec = {"kind": "conv", "c": c, "n": int(o["filters"]), "size": size, "stride": stride, "pad": pad,
            "groups": int(o.get("groups", 1)), "bn": int(o.get("batch_normalize", 0)),
            "act": o.get("activation", "logistic")}
    if spec["act"] not in ACTIVATIONS:
        raise ValueError(f"layer {layer}: activation {spec['act']!r} is not one of {ACTIVATIONS}")
    return spec, (spec["n"], (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1)


def _maxpool(o, chw, layer, shapes):
    c, h, w = chw
    stride = int(o.get("stride", 1))
    size = int(o.get("size", stride))
    padding = int(o.get("padding", size - 1))
    spec = {"kind": "maxpool", "size": size, "stride": stride, "begin": padding // 2, "end": padding - padding // 2}
    return spec, (c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)


def _route(o, chw, layer, shapes):
    index = [layer + r if r < 0 else r for r in (int(v) for v in o["layers"].split(",") if v)]
    if not index or not all(0 <= i < layer for i in index):
        raise ValueError(f"layer {layer}: route layers={o['layers']} names no earlier layer")
    if len({shapes[i][1:] for i in index}) != 1:
        raise ValueError(f"layer {layer}: routed layers {index} differ in size: {[shapes[i] for i in index]}")
    return {"kind": "route", "layers": index}, (sum(shapes[i][0] for i in index), *shapes[index[0]][1:])


def _reorg(o, chw, layer, shapes):
    c, h, w = chw
    s = int(o.get("stride", 1))
    if c % (s * s) or h % s or w % s:
        raise ValueError(f"layer {layer}: reorg stride {s} does not divide {list(chw)}")
    return {"kind": "reorg", "stride": s}, (c * s * s, h // s, w // s)


def _region(o, chw, layer, shapes):
    spec = {"kind": "region", "num": int(o.get("num", 1)), "classes": int(o.get("classes", 20)),
            "coords": int(o.get("coords", 4)), "softmax": int(o.get("softmax", 0)),
            "background": int(o.get("background", 0))}
    if chw[0] != spec["num"] * (spec["coords"] + 1 + spec["classes"]):
        raise ValueError(f"layer {layer}: region input has {chw[0]} channels for {spec}")
    return spec, chw


LAYERS = {"convolutional": _conv, "conv": _conv, "maxpool": _maxpool, "max": _maxpool, "route": _route,
          "reorg": _reorg, "region": _region}


def layer_specs(cfg_path) -> tuple[tuple[int, int, int], list[dict]]:
    """The input's [C, H, W] and one plain dict per darknet layer (``kind``: conv, maxpool, route, reorg,
    region; conv: c, n, size, stride, pad, groups, bn, act; maxpool: size, stride, begin/end padding;
    route: absolute layer indices; reorg: stride; region: num, classes, coords, softmax, background)."""
    from nbtrt.frontends.darknet import read_cfg
    sections = read_cfg(cfg_path)
    net = sections[0][1]
    chw = (int(net["channels"]), int(net["height"]), int(net["width"]))
    specs, shapes = [], []
    for layer, (kind, options) in enumerate(sections[1:]):
        if kind not in LAYERS or (specs and specs[-1]["kind"] == "region"):
            raise ValueError(f"{cfg_path}: layer {layer} [{kind}] is not supported here")
        spec, shape = LAYERS[kind](options, shapes[-1] if shapes else chw, layer, shapes)
        specs.append(spec)
        shapes.append(shape)
    return chw, specs


def read_weights(path, specs: list[dict]) -> dict[int, dict]:
    """Darknet weights per conv layer index: biases[, scales, rolling_mean, rolling_variance], weights."""
    data = Path(path).read_bytes()
    major, minor, _ = (int(v) for v in np.frombuffer(data, "<i4", 3))
    offset = 12 + (8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4)
    params = {}
    for layer, s in enumerate(specs):
        if s["kind"] != "conv":
            continue
        n = s["n"]
        keys = ["biases"] + (["scales", "rolling_mean", "rolling_variance"] if s["bn"] else [])
        shapes = [(n,)] * len(keys) + [(n, s["c"] // s["groups"], s["size"], s["size"])]
        params[layer] = {}
        for key, shape in zip(keys + ["weights"], shapes):
            count = int(np.prod(shape))
            if offset + 4 * count > len(data):
                raise ValueError(f"{path}: ends in layer {layer}'s {key} (the cfg does not match it)")
            params[layer][key] = np.frombuffer(data, "<f4", count, offset).astype(np.float32).reshape(shape)
            offset += 4 * count
    if offset != len(data):
        raise ValueError(f"{path}: {len(data) - offset} bytes left over after the last conv layer")
    return params


def rel_err(y, ref: np.ndarray) -> float:
    """max |y − ref| / max |ref| (``y`` a numpy array or a tensor, compared as float64)."""
    if not isinstance(y, np.ndarray):
        y = y.detach().float().cpu().numpy()
    return float(np.abs(y.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def check_torch(specs, params, image: np.ndarray, ref: np.ndarray) -> float:
    """The PyTorch model's float32 CPU output on ``image`` against the reference's; exits 1 when they differ."""
    import torch
    import yolov2_torch
    with torch.no_grad():
        y = yolov2_torch.build(specs, params)(torch.from_numpy(image))
    err = rel_err(y, ref)
    print(f"PyTorch (CPU, fp32) vs nbtrt reference: max relative error {err:.2e}", flush=True)
    if not err <= MAX_TORCH_ERROR:
        print(f"FAIL: the PyTorch model disagrees with nbtrt's reference (above {MAX_TORCH_ERROR:g}); "
              "nothing is timed", file=sys.stderr)
        sys.exit(1)
    return err


def time_torch(model, inp, ref, torch, runs: int) -> list[tuple]:
    """(contender, (median, p90), rel. err) of eager and eager + CUDA graph for one model and input."""
    from bench_networks import cuda_graphed, time_cuda
    with torch.no_grad():
        err = rel_err(model(inp)[:1], ref)
        eager = time_cuda(lambda: model(inp), torch, runs=runs)
        replay, graph_y = cuda_graphed(model, inp, torch)
        graphed = time_cuda(replay, torch, runs=runs)
    return [("PyTorch eager", eager, err), ("PyTorch eager + CUDA graph", graphed, rel_err(graph_y[:1], ref))]


def bench_torch(specs, params, x, ref, torch, runs: int, rows: list) -> None:
    """PyTorch eager and eager + CUDA graph, fp32 and fp16 (channels_last), on the GPU."""
    import yolov2_torch
    for precision in ("fp32", "fp16"):
        model, inp = yolov2_torch.build(specs, params).cuda(), x
        if precision == "fp16":
            model = model.half().to(memory_format=torch.channels_last)
            inp = x.half().contiguous(memory_format=torch.channels_last)
        for name, times, err in time_torch(model, inp, ref, torch, runs):
            rows.append({"name": name, "precision": precision, "times": times, "err": err, "note": ""})
            print(format_row(rows[-1], x.shape[0]), flush=True)


def bench_engines(cfg, weights, x, ref, torch, args, rows: list) -> None:
    """One nbtrt engine per precision, fed the float32 GPU input; a precision that cannot build is listed."""
    from bench_networks import bench_nbtrt, time_cuda

    import nbtrt
    for precision in args.precisions:
        options = argparse.Namespace(precision=precision, tuning=args.tuning, timing_cache=args.timing_cache)
        try:
            run, y, engine, build_s = bench_nbtrt(nbtrt.parse(cfg, weights=weights), x, torch, options, precision)
        except nbtrt.NbtrtError as e:
            rows.append({"name": "nbtrt", "precision": precision, "times": None, "err": None,
                         "note": f"not available: {str(e).splitlines()[0]}"})
        else:
            rows.append({"name": "nbtrt", "precision": precision, "times": time_cuda(run, torch, runs=args.runs),
                         "err": rel_err(y[:1], ref), "note": f"{len(engine.kernels)} kernels, build {build_s:.0f} s, "
                         f"peak activations {engine.memory.arena_bytes / 2**20:.0f} MB"})
        print(format_row(rows[-1], x.shape[0]), flush=True)


def format_row(row: dict, batch: int) -> str:
    head = f"{row['name']} {row['precision']}"
    if row["times"] is None:
        return f"{head}: {row['note']}"
    med, p90 = row["times"]
    note = f"; {row['note']}" if row["note"] else ""
    return (f"{head}: {med:.3f} ms (p90 {p90:.3f}), {batch / med * 1000:.0f} img/s, rel. err vs fp32 reference "
            f"{row['err']:.1e}{note}")


def markdown(rows: list, torch, args, torch_err: float) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False, cwd=HERE).stdout.strip()
    lines = [(f"GPU: {torch.cuda.get_device_name()}; date {datetime.date.today()}; commit {commit or '?'}; "
              f"torch {torch.__version__}; {os.path.basename(args.cfg)} {args.size}, batch {args.batch}; "
              f"{'random' if args.weights is None else 'given'} weights; nbtrt tuning {args.tuning}; TF32 off; "
              f"CUDA-event median / p90 of one inference over {args.runs} runs after warm-up; PyTorch (CPU, fp32) "
              f"vs nbtrt reference {torch_err:.1e}."), "",
             "| contender | precision | median ms | p90 ms | img/s | rel. err vs fp32 reference | notes |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["times"] is None:
            lines.append(f"| {row['name']} | {row['precision']} | - | - | - | - | {row['note']} |")
            continue
        med, p90 = row["times"]
        lines.append(f"| {row['name']} | {row['precision']} | {med:.3f} | {p90:.3f} | {args.batch / med * 1000:.0f} | "
                     f"{row['err']:.1e} | {row['note']} |")
    return "\n".join(lines) + "\n"


def random_weights(cfg, folder: str) -> str:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from darknet_weights import write_weights
    path = os.path.join(folder, Path(cfg).stem + ".weights")
    write_weights(cfg, path, seed=0)
    print(f"random weights (seed 0) in {path}", flush=True)
    return path


def gpu_bench(cfg, weights, specs, params, x, ref, torch_err, args) -> str:
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    x_gpu = torch.from_numpy(x).cuda()
    rows: list = []
    bench_torch(specs, params, x_gpu, ref, torch, args.runs, rows)
    bench_engines(cfg, weights, x_gpu, ref, torch, args, rows)
    return markdown(rows, torch, args, torch_err)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default=os.path.join(SHARED, "darknet", "yolov2-voc.cfg"))
    p.add_argument("--weights", help="darknet .weights (default: random, seeded)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16"], choices=["fp32", "tf32", "fp16", "int8"])
    p.add_argument("--tuning", default="none", choices=["none", "fast", "full"], help="nbtrt's tuning level")
    p.add_argument("--timing-cache", help="nbtrt timing cache file (reused across runs)")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--cpu-check", action="store_true", help="only check PyTorch against the reference, on the CPU")
    args = p.parse_args(argv)
    import nbtrt
    from nbtrt import reference
    chw, specs = layer_specs(args.cfg)
    args.size = f"{chw[2]}x{chw[1]}"
    with tempfile.TemporaryDirectory() as folder:
        weights = args.weights or random_weights(args.cfg, folder)
        params = read_weights(weights, specs)
        x = np.random.default_rng(0).uniform(0, 1, (args.batch, *chw)).astype(np.float32)
        ref = next(iter(reference.run(nbtrt.parse(args.cfg, weights=weights), {"data": x[:1]}).values()))
        torch_err = check_torch(specs, params, x[:1], ref.astype(np.float64))
        if args.cpu_check:
            return 0
        table = gpu_bench(args.cfg, weights, specs, params, x, ref.astype(np.float64), torch_err, args)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
