"""The pipelined tensor-core conv kernel (``codegen/mma_async.py``) at ResNet-50 batch-64 layers, int8 (s8)
and fp16 (f16) side by side: every non-split tile, the un-tuned pick first, timed as CUDA-graph replays
(``kernels_conv.Timer``), with registers per thread.

    python benchmarks/kernels_pipelined.py                     # every layer, both maths, every tile
    python benchmarks/kernels_pipelined.py --only expand --pick # the 1x1 expand layers, the pick only

The layers are channels-last with OHWI weights, as the fp16 and int8 engines lay them out: int8 input
and output with an int8 residual (or bias + Relu) for s8, float16 for f16. The node builders are the
GPU tests' (``tests/gpu``), so correctness is theirs; this script only times. Needs a GPU (no torch).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests"), os.path.join(HERE, "..", "tests", "gpu"),
                os.path.join(HERE, "..", "tests", "codegen"), HERE]

LAYERS = [  # name, X shape, W shape, conv attributes, epilogue: residual ("res") or bias + Relu
    ("layer1_1x1_expand", (64, 64, 56, 56), (256, 64, 1, 1), dict(kernel_shape=(1, 1)), "res"),
    ("layer2_1x1_expand", (64, 128, 28, 28), (512, 128, 1, 1), dict(kernel_shape=(1, 1)), "res"),
    ("layer2_1x1_reduce", (64, 256, 56, 56), (128, 256, 1, 1), dict(kernel_shape=(1, 1)), "relu"),
    ("layer1_3x3", (64, 64, 56, 56), (64, 64, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)), "relu"),
    ("layer3_3x3", (64, 256, 14, 14), (256, 256, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)), "relu"),
]


def layer(x, w, attrs, epilogue, math, rng):
    """(node, its arrays, input args, output args) of one layer in ``math``."""
    from test_int8_gpu import int8_arrays, int8_conv_node
    from test_mma_gpu import conv_node, nhwc_args
    if math == "s8":
        node = int8_conv_node(x, w, attrs, "residual_int8" if epilogue == "res" else "bias_relu", "int8")
        arrays = int8_arrays(node, rng)
    else:
        node = conv_node(x, w, attrs, "float16", "f16", epilogue == "res")
        arrays = [rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in node.inputs]
    ins, outs = nhwc_args(node)
    return node, arrays, ins, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="the layers whose name contains this")
    parser.add_argument("--pick", action="store_true", help="time the un-tuned pick only")
    parser.add_argument("--math", nargs="+", default=["s8", "f16"], choices=["s8", "f16"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*(Grid size|under-utilization|host array).*")
    from kernels_conv import Timer

    from nbtrt.codegen import conv, mma_async
    from nbtrt.codegen.build import jit
    from nbtrt.codegen.numba_env import cuda
    from nbtrt.runtime.memory import physical
    timer, rng = Timer(cuda, cuda.stream()), np.random.default_rng(0)
    for name, x, w, attrs, epilogue in LAYERS:
        if args.only not in name:
            continue
        for math in args.math:
            node, arrays, ins, outs = layer(x, w, attrs, epilogue, math, rng)
            dev = {a.param: cuda.to_device(physical(v, a.strides)) for a, v in zip(ins, arrays)}
            dev["out0"] = cuda.device_array(outs[0].numel, outs[0].dtype)
            first = conv.pick(conv.geometry(node, ins), node, ins[0], ins[1])
            tiles = [dict(t, algorithm="mma_async") for t in mma_async.TACTICS
                     if t["math"] == math and "splits" not in t]
            for tactic in [first] + ([] if args.pick else [t for t in tiles if t != first]):
                spec = conv.emit(node, outs, ins, tactic)
                kernel = jit(spec)
                params = [dev[p] for p in spec.tensor_params]
                ms, _ = timer(lambda: kernel[spec.grid, spec.block, timer.stream](*params))
                regs = next(iter(kernel.overloads.values())).regs_per_thread
                pick = "  (pick)" if tactic is first else ""
                print(f"{name:18s} {math:3s} {tactic['bm']:3d}x{tactic['bn']:<3d} warps {tactic['wm']}x{tactic['wn']} "
                      f"{tactic['stages']} stages  regs {regs:3d}  {ms * 1e3:7.1f} us{pick}", flush=True)


if __name__ == "__main__":
    main()
