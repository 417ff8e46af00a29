"""Conv (and one Gemm) kernel tactics on a real GPU: compile, check against numpy, time.

For a few ResNet-50 layer shapes at batch 1 and 64 (each conv with a bias + Relu epilogue), every
tactic worth trying (``--precision fp16|tf32``: the tensor-core tactics beside the CUDA-core pick,
float16 tensors for fp16) is compiled through ``nbtrt.codegen.build.jit``, its output compared with the
numpy reference (float64 accumulation), and timed with CUDA events: the launches are captured in a
CUDA graph (10 launches per graph, so Numba's ~70 µs dispatch does not count) and the median of 20
graph replays after warm-up is reported, with GFLOP/s, registers and local memory per thread.

    python benchmarks/kernels_conv.py                 # everything (< 5 minutes on the H100)
    python benchmarks/kernels_conv.py --batch 1 --only res5
    python benchmarks/kernels_conv.py --precision fp16 --batch 64
    python benchmarks/kernels_conv.py --precision fp16 --layout nhwc   # + the pipelined cp.async kernels
    python benchmarks/kernels_conv.py --precision int8 # CUDA-core int8 (dp4a): float16 X quantized on load
    python benchmarks/kernels_conv.py --sim           # logic check in the CUDA simulator (tiny shapes)

No torch. ``--budget`` (seconds, default 270) stops trying new tactics when spent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

SHAPES = [  # name, C in, C out, H (= W), kernel, stride, pad
    ("stem_7x7s2", 3, 64, 224, 7, 2, 3),
    ("res2_3x3", 64, 64, 56, 3, 1, 1),
    ("res2_1x1_reduce", 256, 64, 56, 1, 1, 0),
    ("res2_1x1_expand", 64, 256, 56, 1, 1, 0),
    ("res3_3x3s2", 128, 128, 56, 3, 2, 1),
    ("res4_3x3", 256, 256, 14, 3, 1, 1),
    ("res5_3x3", 512, 512, 7, 3, 1, 1),
    ("res5_1x1s2_down", 1024, 2048, 14, 1, 2, 0),
]
BIG = [dict(bm=128, bn=128, bk=8, tm=8, tn=8), dict(bm=64, bn=128, bk=8, tm=8, tn=8),
       dict(bm=128, bn=64, bk=8, tm=8, tn=8), dict(bm=64, bn=64, bk=16, tm=4, tn=4),
       dict(bm=128, bn=128, bk=8, tm=8, tn=8, unroll=False)]
SMALL = [dict(bm=32, bn=32, bk=16, tm=4, tn=4), dict(bm=64, bn=32, bk=8, tm=4, tn=4, split_k=4),
         dict(bm=32, bn=32, bk=8, tm=4, tn=4, split_k=4), dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=4),
         dict(bm=32, bn=32, bk=8, tm=4, tn=4, split_k=4, unroll=False)]
BASE = dict(split_k=1, unroll=True)


def int8_math(node, multiplier: int):
    """int8 math (``codegen/int8.py``): X quantized on load with scale 0.05, int8 weights, the
    per-channel multipliers in input ``multiplier``."""
    node.attrs.update(math="int8", int8_scale=0.05, int8_multiplier=multiplier)
    return node


def conv_node(batch, c, m, h, k, s, p, precision="fp32"):
    from nbtrt.groups import Step, group_attrs, group_op
    from nbtrt.ir import Graph, TensorType
    g = Graph()
    o = (h + 2 * p - k) // s + 1
    dt = "float16" if precision in ("fp16", "int8") else "float32"
    ins = [g.add_input("x", TensorType(dt, (batch, c, h, h))),
           g.add_input("w", TensorType("int8" if precision == "int8" else dt, (m, c, k, k))),
           g.add_input("b", TensorType("float32", (m, 1, 1)))]
    ins += [g.add_input("mult", TensorType("float32", (m,)))] if precision == "int8" else []
    attrs = dict(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=(k, k), pads=(p,) * 4, strides=(s, s))
    program = (Step("Add", ("acc", "in2")), Step("Relu", ("s0",)))
    node = g.add_node(group_op("Conv"), ins, attrs=group_attrs("Conv", attrs, 2, (m,), (program,), ("conv", "relu")),
                      name="conv")
    node.outputs[0].type = TensorType(dt, (batch, m, o, o))
    node.attrs["math"] = precision
    return int8_math(node, 3) if precision == "int8" else node


def fc_node(batch, precision="fp32"):
    from nbtrt.groups import Step, group_attrs, group_op
    from nbtrt.ir import Graph, TensorType
    g = Graph()
    a_dt, w_dt = ("float16", "int8") if precision == "int8" else ("float32", "float32")
    ins = [g.add_input("a", TensorType(a_dt, (batch, 2048))), g.add_input("w", TensorType(w_dt, (1000, 2048))),
           g.add_input("b", TensorType("float32", (1000,)))]
    ins += [g.add_input("mult", TensorType("float32", (1000,)))] if precision == "int8" else []
    attrs = dict(transA=0, transB=1, alpha=1.0, beta=1.0)
    node = g.add_node(group_op("Gemm"), ins, attrs=group_attrs("Gemm", attrs, 2, (1000,), ((Step("Add", ("acc", "in2")),),),
                                                                ("fc",)), name="fc")
    node.outputs[0].type = TensorType("float32", (batch, 1000))
    return int8_math(node, 3) if precision == "int8" else node


def arg(param, dtype, shape, layout):
    """A kernel's view of a tensor: contiguous, or channels-last for 4-D ones under ``--layout nhwc``
    (the memory plan's strides: NHWC activations and, for weights (O, I, KH, KW), OHWI)."""
    from nbtrt.codegen.kernel import TensorArg
    from nbtrt.runtime.layout import channels_last_strides
    if layout == "nhwc" and len(shape) == 4:
        return TensorArg(param, dtype, tuple(shape), channels_last_strides(shape))
    return TensorArg.contiguous(param, dtype, shape)


def tactics(node, family, batch, is_1x1, layout="nchw"):
    """The tactics worth timing for this layer (the un-tuned pick first)."""
    from nbtrt.codegen import conv, gemm
    ins = [arg(f"in{k}", v.type.dtype, v.type.shape, layout) for k, v in enumerate(node.inputs)]
    outs = [arg("out0", node.outputs[0].type.dtype, node.outputs[0].type.shape, layout)]
    if family is conv and node.attrs.get("math") in ("fp16", "tf32"):
        first = conv.pick(conv.geometry(node, ins), node, ins[0], ins[1])
        simt = dict(algorithm="gemm_1x1" if is_1x1 else "implicit_gemm", **dict(BASE, **(BIG if batch > 1 else SMALL)[0]))
        cands = ([t for t in conv.TACTICS if t.get("algorithm") == "mma_async"]
                 + [t for t in conv.TACTICS if t.get("algorithm") == "mma"] + [simt])
    elif family is gemm:
        first = gemm.pick(gemm.Problem(node, outs, ins), node.attrs.get("math"))
        cands = [dict(BASE, **t) for t in (BIG if batch > 1 else SMALL)]
    else:
        first = conv.pick(conv.geometry(node, ins), node)
        algo = "gemm_1x1" if is_1x1 else "implicit_gemm"
        cands = [dict(algorithm=algo, **dict(BASE, **t)) for t in (BIG if batch > 1 else SMALL)]
        if is_1x1:
            cands.append(dict(algorithm="implicit_gemm", **dict(BASE, **(BIG if batch > 1 else SMALL)[0])))
        if node.inputs[0].type.shape[1] <= 4:
            cands.append(dict(algorithm="direct", threads=128))
    out = [first] + [t for t in cands if t != first]
    return [t for t in out if family.valid(node, t, outs, ins)], outs, ins


class Timer:
    """Median kernel time (ms) of ``launch()``: CUDA-graph replays, or plain launches as a fallback."""

    def __init__(self, cuda, stream):
        self.cuda, self.stream, self.graphs = cuda, stream, True

    def __call__(self, launch, per_graph=10, samples=20) -> tuple[float, str]:
        cuda, stream = self.cuda, self.stream
        for _ in range(3):
            launch()
        stream.synchronize()
        if self.graphs:
            try:
                return self._graph(launch, per_graph, samples), "graph"
            except Exception as e:  # noqa: BLE001 — report and fall back to plain launches
                print(f"  (CUDA graph capture failed: {e}; timing plain launches, launch overhead included)")
                self.graphs = False
        times = []
        for _ in range(samples):
            a, b = cuda.event(), cuda.event()
            a.record(stream)
            launch()
            b.record(stream)
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times), "events"

    def _graph(self, launch, per_graph, samples) -> float:
        from cuda.bindings import driver as drv

        from nbtrt.runtime.driver import begin_capture, check, end_capture, graph_launch
        handle = drv.CUstream(int(self.stream.handle))
        begin_capture(handle)
        try:
            for _ in range(per_graph):
                launch()
        finally:
            graph, exe = end_capture(handle)
        graph_launch(exe, handle)
        self.stream.synchronize()
        times = []
        for _ in range(samples):
            a, b = self.cuda.event(), self.cuda.event()
            a.record(self.stream)
            graph_launch(exe, handle)
            b.record(self.stream)
            b.synchronize()
            times.append(a.elapsed_time(b) / per_graph)
        check(drv.cuGraphExecDestroy(exe), "cuGraphExecDestroy")
        check(drv.cuGraphDestroy(graph), "cuGraphDestroy")
        return statistics.median(times)


def short(t: dict) -> str:
    if t.get("algorithm") == "direct":
        return f"direct/{t['threads']}"
    if t.get("algorithm") in ("mma", "mma_async"):
        stages = (f" {t['stages']} stages" if "stages" in t else "") + (f" {t['min_blocks']}/SM" if "min_blocks" in t else "")
        return f"{t['algorithm']} {t['math']} {t['bm']}x{t['bn']}x{t['bk']} warps {t['wm']}x{t['wn']}{stages}"
    name = {"implicit_gemm": "igemm", "gemm_1x1": "1x1"}.get(t.get("algorithm"), "gemm")
    extra = (f" sk{t['split_k']}" if t.get("split_k", 1) > 1 else "") + (" unroll" if t.get("unroll") else "")
    return f"{name} {t['bm']}x{t['bn']}x{t['bk']} {t['tm']}x{t['tn']}{extra}"


def run_layer(name, node, family, flops, batch, is_1x1, timer, deadline, args):
    from nbtrt.codegen.build import jit, load
    from nbtrt.codegen.kernel import scratch_arrays
    from nbtrt.codegen.numba_env import cuda
    from nbtrt.reference import KERNELS
    from nbtrt.runtime.memory import physical, strided
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in node.inputs]
    if node.attrs.get("math") == "int8":  # int8 weights, multipliers that keep the outputs near 1
        arrays[1] = rng.integers(-127, 128, arrays[1].shape).astype(np.int8)
        arrays[-1] = (rng.random(arrays[-1].shape) / (60 * np.sqrt(np.prod(arrays[1].shape[1:])))).astype(np.float32)
    else:
        arrays[1] /= np.sqrt(np.prod(arrays[1].shape[1:])).astype(arrays[1].dtype)
    out_dtype = node.outputs[0].type.dtype
    tolerance = 5e-3 if node.attrs.get("math") in ("fp16", "tf32", "int8") else 1e-4
    t0 = time.time()
    want = KERNELS[node.op](node, *[a.astype(np.float32) for a in arrays])[0]
    ref_s = time.time() - t0
    cands, outs, ins = tactics(node, family, batch, is_1x1, args.layout)
    dev = {a.param: cuda.to_device(physical(x, a.strides)) for a, x in zip(ins, arrays)}
    dev["out0"] = cuda.device_array(want.size, out_dtype)
    print(f"\n{name} batch {batch}: {flops / 1e9:.2f} GFLOP, output {list(want.shape)} (reference {ref_s:.1f} s)")
    rows = []
    for i, tactic in enumerate(cands):
        if i and time.time() > deadline:
            print("  (time budget spent: skipping the remaining tactics)")
            break
        label = short(tactic) + (" *pick" if i == 0 else "")
        big = tactic.get("bm") == 128 and tactic.get("bn") == 128 and tactic.get("unroll")
        for bounds in ([None, 2] if batch > 1 and big and not args.sim else [None]):
            try:
                spec = family.emit(node, outs, ins, tactic)
                t1 = time.time()
                kernel = jit(spec) if bounds is None else cuda.jit(load(spec), launch_bounds=(spec.block[0], bounds))
                params = [dev[p] for p in spec.tensor_params] + [
                    cuda.to_device(a) for a in (scratch_arrays(spec.scratch) if spec.scratch else [])]
                dev["out0"].copy_to_device(np.full(want.size, np.nan, out_dtype))  # unwritten shows
                launch = lambda: kernel[spec.grid, spec.block, timer.stream](*params)
                launch()
                timer.stream.synchronize()
                compile_s = time.time() - t1
                got = strided(dev["out0"].copy_to_host(), outs[0], want.shape).astype(np.float32)
                err = float(np.max(np.abs(got - want)) / max(1e-30, float(np.max(np.abs(want)))))
                ms, how = (0.0, "sim") if args.sim else timer(launch)
                regs = local = "?"
                if not args.sim:
                    overload = next(iter(kernel.overloads.values()))
                    regs, local = overload.regs_per_thread, overload.local_mem_per_thread
                tag = label + (f" lb({spec.block[0]},{bounds})" if bounds else "")
                ok = "ok" if err < tolerance else "WRONG"
                gf = flops / (ms * 1e6) if ms else 0.0
                rows.append((ms, tag))
                print(f"  {tag:42s} grid {str(spec.grid):18s} thr {spec.block[0]:4d} regs {regs:>3} lmem {local:>3} "
                      f"compile {compile_s:4.1f}s  {ms * 1e3:9.1f} us  {gf:8.0f} GFLOP/s  err {err:.1e} {ok} [{how}]")
            except Exception as e:  # noqa: BLE001 — one failing candidate must not stop the sweep
                print(f"  {label:42s} FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    if rows and not args.sim:
        best = min(rows)
        print(f"  best: {best[1]}  {best[0] * 1e3:.1f} us  {flops / (best[0] * 1e6):.0f} GFLOP/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 64])
    ap.add_argument("--only", default="", help="run the layers whose name contains this")
    ap.add_argument("--budget", type=float, default=270.0)
    ap.add_argument("--sim", action="store_true", help="tiny shapes in the CUDA simulator (logic check)")
    ap.add_argument("--precision", choices=["fp32", "fp16", "tf32", "int8"], default="fp32")
    ap.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw",
                    help="tensor layouts: NCHW, or channels-last activations and OHWI weights")
    args = ap.parse_args()
    if args.sim:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from nbtrt.codegen import conv, gemm
    from nbtrt.codegen.conv_geom import geometry
    from nbtrt.codegen.kernel import TensorArg
    from nbtrt.codegen.numba_env import cuda
    import warnings
    warnings.filterwarnings("ignore", message=".*(Grid size|under-utilization|host array).*")
    deadline = time.time() + args.budget
    timer = Timer(cuda, cuda.stream())
    if not args.sim:
        dev = cuda.get_current_device()
        print(f"device: {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}, cc {dev.compute_capability}")
    shapes = SHAPES if not args.sim else [("sim_3x3", 2, 4, 6, 3, 1, 1), ("sim_1x1", 5, 3, 4, 1, 1, 0)]
    batches = [1, 2] if args.sim else args.batch
    layers = []
    for batch in batches:
        for name, c, m, h, k, s, p in shapes:
            if args.only in name:
                node = conv_node(batch, c, m, h, k, s, p, args.precision)
                args_of = [TensorArg.contiguous(f"in{i}", v.type.dtype, v.type.shape) for i, v in enumerate(node.inputs)]
                layers.append((name, node, conv, geometry(node, args_of).flops, batch, k == 1 and s == 1 and p == 0))
        if not args.sim and args.only in "fc_gemm" and args.precision in ("fp32", "int8"):
            layers.append(("fc_gemm 2048->1000", fc_node(batch, args.precision), gemm, 2 * batch * 2048 * 1000, batch,
                           False))
    for i, layer in enumerate(layers):  # an equal share of what is left of the budget per layer
        run_layer(*layer, timer, time.time() + (deadline - time.time()) / (len(layers) - i), args)
    print(f"\ntotal {time.time() - deadline + args.budget:.0f} s")


if __name__ == "__main__":
    main()
