"""The ``nbtrt`` command line.

    nbtrt run MODEL_OR_ENGINE [--inputs in.npz] [--outputs out.npz] [--dim N=8] [--precision fp16]
        Run an engine file (see ``nbtrt build``) on the GPU or in the simulator, or parse a MODEL and
        run it on the numpy reference interpreter (with ``--precision``: build an engine of that
        precision and run that); summarise the outputs. Inputs not given are filled
        with seeded random data; a model's symbolic dims default to 1.
    nbtrt compare MODEL [--inputs in.npz] [--dim N=8] [--rtol 1e-4] [--atol 1e-5]
        Run MODEL on the reference and on onnxruntime (when installed) and report the differences.
    nbtrt graph MODEL
        Print the type-checked IR.
    nbtrt plan MODEL [--json] [--dim N=1] [--graph] [--precision fp16] [--layer-precision NODE=fp32]
        Optimize MODEL and print the build report: every fusion decision and the kernels that remain,
        with their precision.
    nbtrt build | bench | inspect ...
        Engine files: build one, time one (or a model) on the GPU, show what one holds; see
        ``cli_engine.py``.

``nbtrt --plugins MODULE ...`` imports a module or ``.py`` file that registers plugins (for models with
custom ops and engines that hold plugins) before the command runs.

MODEL is a path to an .onnx file (a Darknet .cfg or Caffe .prototxt with its .weights/.caffemodel
beside it also works, except for ``compare``), or ``zoo:NAME`` for a network shipped in the onnx
wheel's ``backend/test/data/light`` folder (e.g. ``zoo:light_inception_v1``, GoogLeNet).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .errors import NbtrtError


def resolve_model(spec: str) -> str:
    """A path, or ``zoo:NAME`` for ``onnx/backend/test/data/light/NAME.onnx``."""
    if not spec.startswith("zoo:"):
        return spec
    from importlib.util import find_spec
    folder = os.path.join(os.path.dirname(find_spec("onnx").origin), "backend", "test", "data", "light")
    path = os.path.join(folder, spec[4:] + ".onnx")
    if not os.path.isfile(path):
        names = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".onnx"))
        raise NbtrtError(f"no zoo model {spec[4:]!r}; available: {', '.join(names)}")
    return path


def make_inputs(graph, given: dict, dims: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """The inputs in ``given`` plus seeded random data for the others (symbolic dims from ``dims``, else 1)."""
    rng = np.random.default_rng(seed)
    feeds = dict(given)
    for v in graph.inputs:
        if v.name in feeds:
            continue
        if v.type.shape is None:
            raise NbtrtError(f"input {v.name!r} has unknown rank; pass it with --inputs")
        shape = [d if isinstance(d, int) else dims.get(d, 1) for d in v.type.shape]
        if v.type.dtype == "bool":
            feeds[v.name] = rng.random(shape) < 0.5
        elif np.issubdtype(np.dtype(v.type.dtype), np.integer):
            feeds[v.name] = rng.integers(0, 10, shape).astype(v.type.dtype)
        else:
            feeds[v.name] = rng.standard_normal(shape).astype(v.type.dtype)
    return feeds


def _parse_dims(items) -> dict[str, int]:
    dims = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not value.isdigit():
            raise NbtrtError(f"--dim expects NAME=SIZE, got {item!r}")
        dims[name] = int(value)
    return dims


def _load_inputs(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise NbtrtError(f"{path}: cannot read inputs ({e})") from None


def _summary(name: str, a: np.ndarray) -> str:
    head = ", ".join(f"{x:.6g}" for x in a.reshape(-1)[:4].tolist())
    stats = f"min {a.min():.6g} max {a.max():.6g} mean {a.mean():.6g}" if a.size and a.dtype != bool else ""
    return f"  {name}: {a.dtype}{list(a.shape)} [{head}{', ...' if a.size > 4 else ''}] {stats}"


def cmd_graph(args) -> int:
    from . import parse
    print(parse(resolve_model(args.model)))
    return 0


def cmd_plan(args) -> int:
    """optimize a model and print the build report"""
    from . import plan
    from .cli_engine import precision_options
    from .config import BuildConfig
    config = BuildConfig(dims=_parse_dims(args.dim), **precision_options(args))
    graph, report = plan(resolve_model(args.model), config)
    if args.graph:
        print(graph)
    print(report.to_json() if args.json else report.summary())
    return 0


def cmd_run(args) -> int:
    """run an engine file, or a model on the reference interpreter"""
    from .cli_engine import is_engine_file, run_engine
    building = (args.precision, args.layer_precision, args.calibration_data, args.calibrator, args.calibration_cache)
    if is_engine_file(args.model) or any(building):
        return run_engine(args)
    from . import parse, reference
    t0 = time.perf_counter()
    graph = parse(resolve_model(args.model))
    t1 = time.perf_counter()
    feeds = make_inputs(graph, _load_inputs(args.inputs), _parse_dims(args.dim))
    outputs = reference.run(graph, feeds)
    t2 = time.perf_counter()
    print(f"{args.model}: {len(graph.nodes)} nodes, {len(graph.constants)} constants; "
          f"parsed in {t1 - t0:.2f} s, ran on the reference in {t2 - t1:.2f} s")
    report_outputs(outputs, args.outputs)
    return 0


def report_outputs(outputs: dict, path: str | None) -> None:
    """Summarise each output; write them all to ``path`` (.npz) when given."""
    for name, a in outputs.items():
        print(_summary(name, a))
    if path:
        np.savez(path, **outputs)
        print(f"outputs written to {path}")


def cmd_compare(args) -> int:
    """run a model on the reference and on onnxruntime and compare"""
    from . import reference
    from .frontends.onnx import parse
    path = resolve_model(args.model)
    graph = parse(path)
    feeds = make_inputs(graph, _load_inputs(args.inputs), _parse_dims(args.dim))
    ours = reference.run(graph, feeds)
    try:
        import onnxruntime as ort
    except ImportError:
        raise NbtrtError("compare needs onnxruntime (pip install 'nbtrt[test]')") from None
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    theirs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    ok = True
    for name, a in ours.items():
        b = theirs[name]
        err = np.abs(a.astype(np.float64) - b.astype(np.float64))
        bad = not np.allclose(a, b, rtol=args.rtol, atol=args.atol, equal_nan=True)
        ok &= not bad
        print(f"  {name}: max abs err {err.max() if err.size else 0:.3g}  {'MISMATCH' if bad else 'ok'}")
    return 0 if ok else 1


def _add_dims(p) -> None:
    p.add_argument("--dim", action="append", help="size of a symbolic dim, NAME=SIZE (repeatable)")
    p.add_argument("--input-shape", action="append", help="shape of an input, NAME=D0xD1x... (repeatable)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nbtrt", description="nbtrt: generated-CUDA inference optimizer")
    from .cli_engine import add_commands, add_precision
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE",
                        help="import a module (or .py file) that registers plugins first (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("graph", help="print the type-checked IR of a model")
    p.add_argument("model")
    p.set_defaults(func=cmd_graph)
    p = sub.add_parser("plan", help=cmd_plan.__doc__)
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="the whole report as JSON")
    p.add_argument("--graph", action="store_true", help="also print the optimized IR")
    p.add_argument("--dim", action="append", help="size of a symbolic dim, NAME=SIZE (repeatable)")
    add_precision(p, calibration=False)
    p.set_defaults(func=cmd_plan)
    for name, func in (("run", cmd_run), ("compare", cmd_compare)):
        p = sub.add_parser(name, help=func.__doc__)
        p.add_argument("model")
        p.add_argument("--inputs", help=".npz file of input arrays by name (others are random)")
        p.add_argument("--dim", action="append", help="size of a symbolic dim, NAME=SIZE (repeatable)")
        p.set_defaults(func=func)
    sub.choices["run"].add_argument("--outputs", help="write the outputs to this .npz file")
    add_precision(sub.choices["run"])
    sub.choices["compare"].add_argument("--rtol", type=float, default=1e-4)
    sub.choices["compare"].add_argument("--atol", type=float, default=1e-5)
    add_commands(sub, _add_dims)
    args = parser.parse_args(argv)
    try:
        from .plugins import load_plugins
        load_plugins(args.plugins)
        return args.func(args)
    except NbtrtError as e:
        print(f"nbtrt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
