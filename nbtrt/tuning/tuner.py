"""The tuner (see the package docstring for the method)."""

from __future__ import annotations

import sys
import time

import numpy as np

from .. import codegen
from ..codegen import FAMILIES
from ..reference import run_node
from ..runtime.memory import strided
from .cache import TimingCache, signature

FAST_CANDIDATES = 4
REPEATS = 10


def candidates(family, node, level: str, current: dict, outs=None, ins=None) -> list[dict]:
    """The tactics to try for ``node`` (with these tensor layouts): the current one first; at level
    "fast" only the FAST_CANDIDATES - 1 valid tactics most like it besides (:func:`unlike`)."""
    valid = [t for t in family.TACTICS if t != current and family.valid(node, t, outs, ins)]
    if level == "fast":
        valid = sorted(valid, key=lambda t: unlike(current, t))[:FAST_CANDIDATES - 1]  # stable: ties in order
    return [current] + valid


def unlike(a: dict, b: dict) -> tuple:
    """How far tactic ``b`` is from ``a``: another algorithm, then splitting K or not (a batch-1 layer
    the heuristic splits wants split neighbours); ties keep the template's order."""
    return a.get("algorithm") != b.get("algorithm"), ("splits" in a) != ("splits" in b)


class _Device:
    """Reading tensors back from a GPU execution context (for the correctness check)."""

    def __init__(self, engine, backend):
        self.engine, self.b = engine, backend

    def read(self, v) -> np.ndarray:
        if v.is_constant:
            return v.const
        layout = self.engine.memory.layout(v)
        root = layout.root
        flat = np.empty(int(np.prod(root.type.shape)), root.type.dtype)
        self.b.drv.copy_dtoh(flat, self.b.ptr(root), self.b.stream)
        self.b.drv.synchronize(self.b.stream)
        return strided(flat, layout, v.type.shape)


def _first_item(node, arrays: list) -> tuple[list, bool]:
    """Inputs cut to batch item 0 when every tensor of the node shares the leading batch dim."""
    tensors = [v for v in list(node.inputs) + list(node.outputs) if v is not None and not v.is_constant]
    lead = {v.type.shape[0] if v.type.shape else None for v in tensors}
    if len(lead) != 1 or None in lead or lead == {1} or node.attrs.get("base") == "MatMul":
        return arrays, False
    return [a if v is None or v.is_constant else a[:1] for v, a in zip(node.inputs, arrays)], True


def expected_outputs(node, device: _Device) -> tuple[list[np.ndarray], bool]:
    arrays = [None if v is None else device.read(v) for v in node.inputs]
    arrays, cut = _first_item(node, arrays)
    saved = [v.type for v in node.outputs]
    if cut:  # the reference checks its results against the node's types: describe the cut ones
        from ..ir import TensorType
        for v in node.outputs:
            v.type = TensorType(v.type.dtype, (1,) + tuple(v.type.shape[1:]))
    try:
        return run_node(node, arrays), cut
    finally:
        for v, t in zip(node.outputs, saved):
            v.type = t


def tolerance(node, v) -> float:
    """The relative error a candidate may show on output ``v``: 1e-4 for strict fp32; a few float16
    roundings (of the output, or of the inputs of TF32 products) for the fp16 and tf32 kernels of
    ``passes/precision.py``."""
    return 5e-3 if v.type.dtype == "float16" or node.attrs.get("math") in ("fp16", "tf32", "int8") else 1e-4


def _matches(node, want: list, cut: bool, device: _Device) -> bool:
    for v, w in zip(node.outputs, want):
        got = device.read(v)[:1] if cut else device.read(v)
        diff = float(np.abs(got.astype(np.float64) - w).max())
        if v.type.dtype == "int8":  # int8 storage: a value on a rounding boundary may land one step off
            if diff > 1:
                return False
            continue
        if not np.isfinite(got).all() or diff / max(float(np.abs(w).max()), 1e-30) > tolerance(node, v):
            return False
    return True


def cached_tactic(cache: TimingCache, kind, node, outs, ins, precision: str, arch: str) -> dict | None:
    """The timing cache's tactic for this kernel, if any (used when the kernels are generated)."""
    if not hasattr(FAMILIES[kind], "valid"):
        return None
    hit = cache.get(signature(kind, node, outs, ins, precision, arch))
    return None if hit is None else hit["tactic"]


def tune(engine, config, cache: TimingCache, progress=sys.stderr) -> dict:
    """Tune ``engine``'s kernels in place; return statistics (tuned, cached, seconds)."""
    from ..runtime.engine import compile_all, tensor_arg
    start = time.perf_counter()
    nodes = {n.name: n for n in engine.graph.nodes}
    work, cached, first_of, same = {}, 0, {}, {}
    for i, k in enumerate(engine.kernels):
        family, node = FAMILIES[k.kind], nodes[k.node_name]
        if not hasattr(family, "valid"):
            continue
        outs = [tensor_arg(f"out{j}", v, engine.memory) for j, v in enumerate(node.outputs)]
        ins = [None if v is None else tensor_arg(f"in{j}", v, engine.memory) for j, v in enumerate(node.inputs)]
        key = signature(k.kind, node, outs, ins, config.precision, engine.arch)
        if cache.get(key) is not None:
            cached += 1
            continue
        if key in first_of:  # same kind, attributes and tensor layouts: same winner, same code
            same[i] = first_of[key]
            continue
        first_of[key] = i
        tactics = candidates(family, node, config.tuning, k.spec.tactic, outs, ins)
        if len(tactics) > 1:
            work[i] = (key, [(t, codegen.generate(node, outs, ins, t)) for t in tactics])
    if work:
        specs = [(i, t, s) for i, (_, cands) in work.items() for t, s in cands]
        compiled = compile_all([s for _, _, s in specs], engine.arch, tolerant=True)
        by_kernel: dict[int, list] = {}
        for (i, t, s), c in zip(specs, compiled):
            by_kernel.setdefault(i, []).append((t, s, c))
        _time_network(engine, nodes, work, by_kernel, same, cache, config, start, progress)
        cache.save()
        engine._functions = None  # contexts made from now on load the winners
    return {"tuned": len(work), "shared": len(same), "cached": cached, "seconds": time.perf_counter() - start}


def _time_network(engine, nodes, work, by_kernel, same, cache, config, start, progress) -> None:
    """Run the network kernel by kernel, choosing each tuned kernel's fastest correct candidate."""
    from ..codegen.kernel import Scratch
    from ..runtime import driver
    from ..runtime.context import ExecutionContext
    scratch = Scratch()
    for cands in by_kernel.values():
        for _, spec, _ in cands:
            scratch = scratch | spec.scratch
    ctx = ExecutionContext(engine, scratch)  # room for every candidate's scratch
    b = ctx._backend
    device = _Device(engine, b)
    rng = np.random.default_rng(0)
    for v in engine.graph.inputs:
        x = rng.standard_normal(v.type.shape).astype(v.type.dtype)
        driver.copy_htod(b.ptr(v), x, b.stream)
    for i, k in enumerate(engine.kernels):
        within_budget = config.tuning_budget_s is None or time.perf_counter() - start < config.tuning_budget_s
        if i in by_kernel and within_budget:
            best = _choose(engine, nodes[k.node_name], b, device, by_kernel[i])
            if best is not None:
                tactic, spec, comp, ms, fn, packed, values = best
                k.spec, k.compiled, k.args = spec, comp, values
                b.launches[i] = (fn, spec.grid, spec.block, packed)
                cache.put(work[i][0], tactic, ms)
        elif i in same:
            first = engine.kernels[same[i]]
            packed, values = _packed(engine, nodes[k.node_name], b, first.spec)
            k.spec, k.compiled, k.args = first.spec, first.compiled, values
            b.launches[i] = (b.launches[same[i]][0], first.spec.grid, first.spec.block, packed)
        if progress and (i in by_kernel or i in same):
            print(f"\rtuning {i + 1}/{len(engine.kernels)} kernels ({time.perf_counter() - start:.0f} s)",
                  end="", file=progress, flush=True)
        fn, grid, block, args = b.launches[i]
        driver.launch(fn, grid, block, args, b.stream)
    driver.synchronize(b.stream)
    if progress:
        print(file=progress)


def _packed(engine, node, b, spec):
    """Parameters for ``spec`` (a candidate may order or choose its parameters differently)."""
    value = {f"out{j}": v for j, v in enumerate(node.outputs)}
    value.update({f"in{j}": v for j, v in enumerate(node.inputs) if v is not None})
    values = [value[p] for p in spec.tensor_params]
    roots = [engine.memory.layout(v).root for v in values]
    return b.packed(roots, spec, {}), values


def _choose(engine, node, b, device, cands):
    """The fastest candidate whose output matches the reference (None if none does)."""
    from ..runtime import driver
    want, cut = expected_outputs(node, device)
    best = None
    for tactic, spec, comp in cands:
        if comp is None:
            continue
        args, values = _packed(engine, node, b, spec)
        try:  # a candidate the GPU refuses to load or launch (too many resources) scores infinite
            _, fn = driver.load_function(comp.cubin, comp.entry)
            driver.launch(fn, spec.grid, spec.block, args, b.stream)
        except driver.CudaError:
            continue
        if not _matches(node, want, cut, device):
            continue
        ms = driver.time_launches(fn, spec.grid, spec.block, args, b.stream, REPEATS)
        if best is None or ms < best[3]:
            best = (tactic, spec, comp, ms, fn, args, values)
    return best
