"""The engine commands of the ``nbtrt`` command line (``cli.py`` registers them).

    nbtrt build MODEL -o FILE [--dim N=8] [--input-shape x=1x3x224x224] [--arch sm_90] [--tuning fast]
               [--precision fp16] [--layer-precision NODE=fp32] [--layout nhwc]
               [--calibration-data calib.npz] [--calibration-batch 32] [--calibrator entropy]
               [--calibration-cache model.calib]
        Build an engine for fixed shapes and write the engine file. ``--arch`` cross-compiles for that
        GPU arch (no GPU needed; needs ``pip install 'nbtrt[cuda]'`` and NUMBA_ENABLE_CUDASIM unset).
        ``--precision`` fp32 (default), tf32, fp16 or int8; ``--layer-precision`` overrides it per ONNX
        node; ``--layout`` auto (default: channels-last for fp16 and int8), nchw or nhwc lays out the
        activations. int8 scales come from the model's Q/DQ nodes, a calibration cache, or calibrating
        on ``--calibration-data``: an .npz of arrays by input name, samples along axis 0, fed in
        batches of ``--calibration-batch``.
    nbtrt run ENGINE [--inputs in.npz] [--outputs out.npz]
        Load an engine file and run it (on the GPU, or in the simulator with NUMBA_ENABLE_CUDASIM=1).
        ``nbtrt run MODEL --precision P`` builds an engine of that precision and runs it.
    nbtrt bench MODEL_OR_ENGINE [--dim N=8] [--input-shape ...] [--runs 200] [--warmup 20] [--profile]
        Latency (median, p90, p99 in ms) and throughput on the GPU; ``--profile`` adds the time of every
        kernel alone. Needs a CUDA GPU.
    nbtrt inspect ENGINE [--source KERNEL] [--json]
        What an engine file holds: versions, arch, config, inputs and outputs, memory plan, kernels
        (kind, precision, tactic, grid, block, code sizes); ``--source`` prints one kernel's generated
        source.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .errors import NbtrtError


def is_engine_file(path: str) -> bool:
    """True when ``path`` is a file that starts with the engine magic."""
    from .runtime.serialize import MAGIC
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def parse_input_shapes(items) -> dict[str, tuple[int, ...]]:
    """``["x=1x3x224x224"]`` -> ``{"x": (1, 3, 224, 224)}``."""
    shapes = {}
    for item in items or []:
        name, _, dims = item.rpartition("=")
        parts = dims.lower().split("x")
        if not name or not all(p.isdigit() for p in parts):
            raise NbtrtError(f"--input-shape expects NAME=D0xD1x..., got {item!r}")
        shapes[name] = tuple(int(p) for p in parts)
    return shapes


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _where() -> str:
    from .codegen.numba_env import simulated
    return "the CUDA simulator" if simulated() else "the GPU"


def add_precision(p, calibration: bool = True) -> None:
    """The --precision, --layer-precision and --layout options of a command that builds engines (and,
    with ``calibration``, the int8 calibration options)."""
    from .config import BUILD_PRECISIONS, LAYOUTS
    p.add_argument("--precision", choices=BUILD_PRECISIONS,
                   help="fp32 (default, strict), tf32 (conv/gemm on TF32 tensor cores), fp16 (float16 "
                        "activations and weights, float32 accumulation) or int8 (conv/gemm in int8; scales "
                        "from Q/DQ nodes, --calibration-cache or --calibration-data)")
    p.add_argument("--layer-precision", action="append", metavar="NODE=PRECISION",
                   help="the precision of one ONNX node, e.g. /fc/Gemm=fp32 (repeatable)")
    p.add_argument("--layout", choices=LAYOUTS,
                   help="activation layout between kernels: auto (default: nhwc for fp16 and int8, else "
                        "nchw), nchw or nhwc (channels-last)")
    if not calibration:
        return
    p.add_argument("--calibration-data", metavar="NPZ",
                   help="int8: .npz of calibration arrays by input name, samples along axis 0")
    p.add_argument("--calibration-batch", type=int, default=32, help="samples per calibration batch (32)")
    p.add_argument("--calibrator", choices=["entropy", "minmax", "percentile"], help="int8 (default entropy)")
    p.add_argument("--calibration-cache", metavar="FILE",
                   help="int8: read the scales from FILE when it exists, else write them there")


def precision_options(args) -> dict:
    """The ``compile``/``BuildConfig`` keywords that --precision, --layer-precision and --layout give."""
    from .config import PRECISIONS
    options, layers = {}, {}
    for key in ("precision", "layout"):
        if getattr(args, key, None):
            options[key] = getattr(args, key)
    for item in getattr(args, "layer_precision", None) or []:
        name, _, precision = item.rpartition("=")
        if not name or precision not in PRECISIONS:
            raise NbtrtError(f"--layer-precision expects NODE=PRECISION ({', '.join(PRECISIONS)}), got {item!r}")
        layers[name] = precision
    if layers:
        options["layer_precision"] = layers
    return options


def build_options(args) -> dict:
    """:func:`precision_options` and the calibration options' ``compile`` keywords (int8 only)."""
    options = precision_options(args)
    given = {k: getattr(args, k, None) for k in ("calibration_data", "calibrator", "calibration_cache")}
    if not any(given.values()):
        return options
    if getattr(args, "precision", None) != "int8":
        raise NbtrtError("--calibration-data, --calibrator and --calibration-cache need --precision int8")
    options.update({k: v for k, v in given.items() if v})
    if given["calibration_data"]:
        options["calibration_data"] = calibration_batches(given["calibration_data"], args.calibration_batch)
    return options


def calibration_batches(path: str, batch: int) -> list[dict]:
    """The calibration batches of an .npz file: its arrays by input name, split along axis 0 into
    batches of ``batch`` samples (the last may be smaller)."""
    if batch < 1:
        raise NbtrtError(f"--calibration-batch must be at least 1, got {batch}")
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as e:
        raise NbtrtError(f"cannot read the calibration data {path!r}: {e}") from None
    counts = {name: len(a) if a.ndim else None for name, a in arrays.items()}
    if not arrays or len(set(counts.values())) != 1 or None in counts.values():
        raise NbtrtError(f"calibration data {path!r} must hold arrays with one sample count along axis 0; "
                         f"it holds {', '.join(f'{k} {list(a.shape)}' for k, a in arrays.items()) or 'nothing'}")
    total = next(iter(counts.values()))
    return [{name: a[i:i + batch] for name, a in arrays.items()} for i in range(0, total, batch)]


def _engine_for(spec: str, dims: dict, shapes: dict, **build):
    """(engine, seconds, what happened) for an engine file or a model to build."""
    from . import compile as build_engine, load
    from .cli import resolve_model
    t0 = time.perf_counter()
    if is_engine_file(spec):
        if dims or shapes:
            raise NbtrtError("an engine is built for fixed shapes: --dim and --input-shape apply to models")
        if build:
            raise NbtrtError("an engine's precision is fixed when it is built, and its layout: --precision, "
                             "--layer-precision, --layout and the calibration options apply to models")
        return load(spec), time.perf_counter() - t0, "loaded"
    engine = build_engine(resolve_model(spec), dims=dims, input_shapes=shapes, **build)
    return engine, time.perf_counter() - t0, "built"


def cmd_build(args) -> int:
    """build an engine and write the engine file"""
    from .cli import _parse_dims
    if is_engine_file(args.model):
        raise NbtrtError(f"{args.model} is already an engine file; build takes a model")
    engine, seconds, _ = _engine_for(args.model, _parse_dims(args.dim), parse_input_shapes(args.input_shape),
                                     arch=args.arch, tuning=args.tuning, timing_cache=args.timing_cache,
                                     **build_options(args))
    engine.save(args.output)
    code = f"cubins for {engine.arch}" if engine.arch else "kernel sources only (simulator build)"
    print(f"{args.model} -> {args.output} ({_mb(os.path.getsize(args.output))}): {len(engine.kernels)} kernels, "
          f"{code}; built in {seconds:.1f} s")
    print("  " + engine.report.summary().splitlines()[0])
    print("  inputs: " + ", ".join(f"{v.name} {v.type}" for v in engine.graph.inputs))
    return 0


def run_engine(args) -> int:
    """``nbtrt run ENGINE``: load the engine file and run it (``nbtrt run MODEL --precision P``: build
    one of that precision first)."""
    from .cli import _load_inputs, _parse_dims, make_inputs, report_outputs
    if args.dim and is_engine_file(args.model):
        raise NbtrtError("an engine is built for fixed shapes: --dim applies to models")
    engine, load_s, how = _engine_for(args.model, _parse_dims(args.dim), {}, **build_options(args))
    feeds = make_inputs(engine.graph, _load_inputs(args.inputs), {})
    t0 = time.perf_counter()
    outputs = engine.run(feeds)
    print(f"{args.model}: engine of {len(engine.kernels)} kernels ({engine.arch or 'no cubins'}, "
          f"{engine.config.precision}); {how} in {load_s:.2f} s, ran on {_where()} in "
          f"{time.perf_counter() - t0:.2f} s")
    report_outputs(outputs, args.outputs)
    return 0


def _require_gpu() -> None:
    from .codegen.numba_env import gpu_available, simulated
    if simulated():
        raise NbtrtError("bench needs a CUDA GPU: this process runs Numba's CUDA simulator "
                         "(NUMBA_ENABLE_CUDASIM=1), whose timings mean nothing")
    if not gpu_available():
        raise NbtrtError("bench needs a CUDA GPU, and this machine has none (nbtrt run works in the simulator: "
                         "NUMBA_ENABLE_CUDASIM=1)")


def _stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return (f"median {np.median(a):.3f} ms  p90 {np.percentile(a, 90):.3f}  p99 {np.percentile(a, 99):.3f}  "
            f"min {a.min():.3f}  mean {a.mean():.3f}")


def _timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def cmd_bench(args) -> int:
    """latency and throughput of an engine on the GPU"""
    from .cli import _parse_dims, make_inputs
    from .runtime import driver
    from .runtime.context import DeviceTensor
    if args.runs < 1 or args.warmup < 0:
        raise NbtrtError("--runs must be at least 1 and --warmup at least 0")
    _require_gpu()
    engine, seconds, how = _engine_for(args.model, _parse_dims(args.dim), parse_input_shapes(args.input_shape),
                                       **build_options(args))
    ctx = engine.create_context()
    feeds = make_inputs(engine.graph, {}, {})
    buffers = {k: driver.upload(x) for k, x in feeds.items()}
    on_device = {k: DeviceTensor(buffers[k].ptr, x.shape, x.dtype.name) for k, x in feeds.items()}
    stream = driver.stream_create()

    def device_run():
        ctx.run_async(on_device, stream)
        driver.synchronize(stream)

    for _ in range(args.warmup):
        ctx.run(feeds)
        device_run()
    host = _timed(lambda: ctx.run(feeds), args.runs)
    device = _timed(device_run, args.runs)
    t0 = time.perf_counter()
    for _ in range(args.runs):
        ctx.run_async(on_device, stream)
    driver.synchronize(stream)
    per_run = (time.perf_counter() - t0) * 1e3 / args.runs
    first = engine.graph.inputs[0].type.shape if engine.graph.inputs else ()
    batch = first[0] if first else 1
    print(f"{args.model}: {how} in {seconds:.2f} s; {len(engine.kernels)} kernels on {engine.arch}, "
          f"batch {batch}, {args.runs} runs after {args.warmup} warm-up runs")
    print(f"  latency, host inputs and outputs (run):   {_stats(host)}")
    print(f"  latency, inputs on the GPU (run_async):   {_stats(device)}")
    print(f"  throughput (back-to-back run_async): {per_run:.3f} ms per run, {batch * 1e3 / per_run:.1f} "
          f"inferences/s")
    if args.profile:
        print_profile(ctx.profile(feeds, repeats=max(args.runs // 10, 5)))
    return 0


def print_profile(rows: list[dict]) -> None:
    """The per-kernel table of ``ExecutionContext.profile``, slowest share first in a column."""
    total = sum(r["ms"] for r in rows) or 1.0
    print(f"  {'#':>3} {'kernel':40} {'kind':8} {'ms':>8} {'share':>6}  grid x block, tactic")
    for i, r in enumerate(rows):
        tactic = ", ".join(f"{k}={v}" for k, v in sorted(r["tactic"].items())) or "default"
        print(f"  {i:>3} {r['name'][:40]:40} {r['kind']:8} {r['ms']:8.4f} {100 * r['ms'] / total:5.1f}%  "
              f"{tuple(r['grid'])} x {tuple(r['block'])}, {tactic}")
    print(f"  {'':3} {'sum of kernels':40} {'':8} {total:8.4f}")


def cmd_inspect(args) -> int:
    """show what an engine file holds"""
    from .runtime.serialize import open_file
    f = open_file(args.engine)
    h = f.header
    if args.source is not None:
        print(kernel_source(f, args.source), end="")
        return 0
    if args.json:
        print(json.dumps(h, indent=1))
        return 0
    print(f"{args.engine}: {_mb(os.path.getsize(args.engine))}, engine format {f.version}, nbtrt {h['nbtrt']}")
    print(f"  arch: {h['arch'] or 'none: a simulator build, kernel sources only (recompiled on a GPU)'}")
    print("  built with: " + ", ".join(f"{k} {v}" for k, v in h["versions"].items() if v))
    print("  config: " + ", ".join(f"{k}={v}" for k, v in h["config"].items() if v not in (None, {}, [])))
    for what in ("inputs", "outputs"):
        print(f"  {what}: " + ", ".join(f"{v['name']} {v['dtype']}{v['shape']}" for v in h[what]))
    m = h["memory"]
    print(f"  memory: activations {_mb(m['arena_bytes'])} peak (arena), {_mb(m['total_bytes'])} sum of buffers; "
          f"weights {_mb(h['weights_bytes'])}")
    r = h["report"]
    print(f"  plan: {r['nodes_before']} ONNX nodes -> {r['kernel_count']} kernels ({len(r['views'])} views)")
    if h.get("tuning"):
        print("  tuning: " + ", ".join(f"{k} {v}" for k, v in h["tuning"].items()))
    precision = {k["name"]: k for k in r["kernels"]}
    print(f"  {'#':>3} {'kernel':36} {'kind':8} {'prec':5} {'grid':14} {'block':14} {'cubin':>8}  tactic")
    for i, k in enumerate(h["kernels"]):
        tactic = ", ".join(f"{a}={b}" for a, b in sorted(k["tactic"].items())) or "default"
        print(f"  {i:>3} {k['name'][:36]:36} {k['kind']:8} {precision.get(k['name'], {}).get('precision') or '-':5} "
              f"{str(tuple(k['grid'])):14} {str(tuple(k['block'])):14} "
              f"{_mb(k['cubin_bytes']) if k['cubin_bytes'] else '-':>8}  {tactic}")
    reasons = [f"{k['name']}: {k['precision']} ({k['precision_reason']})" for k in r["kernels"]
               if k.get("precision_reason")]
    if reasons:
        print("  precision reasons: " + "; ".join(reasons))
    return 0


def kernel_source(f, which: str) -> str:
    """The generated source of kernel ``which`` (index, kernel name or node name) of engine file ``f``."""
    records = json.loads(f.read("graph.json"))["kernels"]
    for i, r in enumerate(records):
        if which in (str(i), r["name"], r["node"]):
            return f.text(r["source"])
    names = ", ".join(r["node"] for r in records)
    raise NbtrtError(f"no kernel {which!r} in {f.label}; give an index (0-{len(records) - 1}) or one of: {names}")


def add_commands(sub, add_dim) -> None:
    """Register build, bench and inspect on the ``nbtrt`` parser (``run`` is shared with models)."""
    p = sub.add_parser("build", help=cmd_build.__doc__)
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="the engine file to write")
    add_dim(p)
    p.add_argument("--arch", help="compile for this GPU arch, e.g. sm_90 (default: this machine's GPU)")
    p.add_argument("--tuning", default="none", choices=("none", "fast", "full"),
                   help="time candidate tactics on the GPU (default: none, heuristic choices)")
    p.add_argument("--timing-cache", help="JSON file of earlier tuning measurements (read and updated)")
    add_precision(p)
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("bench", help=cmd_bench.__doc__)
    p.add_argument("model", help="an engine file, or a model to build first")
    add_dim(p)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--profile", action="store_true", help="also time every kernel alone")
    add_precision(p)
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("inspect", help=cmd_inspect.__doc__)
    p.add_argument("engine")
    p.add_argument("--source", metavar="KERNEL", help="print this kernel's source (index, kernel or node name)")
    p.add_argument("--json", action="store_true", help="print the whole header as JSON")
    p.set_defaults(func=cmd_inspect)
