"""An ONNX model with a custom-domain op, run by nbtrt through a plugin with its own Numba CUDA kernel.

The op is ``example.ops::SquarePlus`` (version 1), the smooth ReLU ``y = (x + sqrt(x² + b)) / 2`` with
an attribute ``b``: no ONNX op computes it, so nbtrt's ONNX frontend looks it up in the plugin registry.
The model is Conv → SquarePlus → GlobalAveragePool; the engine runs the conv and the pool as generated
kernels and the plugin's kernel between them (inside the CUDA graph on a GPU), and the engine file
keeps ``b`` (the plugin's serialized state) so ``nbtrt.load`` makes the plugin again.

    python examples/custom_op.py            # on a GPU; NUMBA_ENABLE_CUDASIM=1 runs it in the simulator
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import tempfile

import numpy as np
from numba import cuda
from onnx import TensorProto, helper, numpy_helper

import nbtrt
from nbtrt import reference
from nbtrt.ir import TensorType
from nbtrt.plugins import Plugin, register_plugin


@cuda.jit
def squareplus_kernel(x, y, b):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = (v + math.sqrt(v * v + b)) * 0.5


@register_plugin
class SquarePlus(Plugin):
    """``example.ops::SquarePlus``: element-wise, any shape, float32."""

    op_type, domain, version = "SquarePlus", "example.ops", 1

    def __init__(self, b: float = 4.0):
        if b < 0:
            raise ValueError(f"b must be >= 0, got {b}")
        self.b = float(b)

    def output_types(self, input_types):
        (t,) = input_types
        if t.dtype != "float32":
            raise ValueError(f"SquarePlus takes float32, got {t.dtype}")
        return [TensorType("float32", t.shape)]

    def enqueue(self, inputs, outputs, workspace, stream):
        n = inputs[0].size
        if n:
            squareplus_kernel[(n + 255) // 256, 256, stream](inputs[0].reshape(n), outputs[0].reshape(n),
                                                             np.float32(self.b))

    def reference(self, inputs):
        x = inputs[0].astype(np.float64)
        return [((x + np.sqrt(x * x + self.b)) / 2).astype(np.float32)]

    def serialize(self) -> bytes:
        return struct.pack("<d", self.b)

    @classmethod
    def deserialize(cls, data: bytes) -> "SquarePlus":
        return cls(struct.unpack("<d", data)[0])


def make_model(channels: int = 8, size: int = 16, b: float = 1.0, seed: int = 0):
    """Conv(3x3, pad 1) -> example.ops::SquarePlus(b) -> GlobalAveragePool, batch N."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((channels, 3, 3, 3)) / np.sqrt(27)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["image", "W"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("SquarePlus", ["conv"], ["act"], name="squareplus", domain="example.ops", b=b),
             helper.make_node("GlobalAveragePool", ["act"], ["features"], name="pool")]
    graph = helper.make_graph(nodes, "custom_op",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", channels, 1, 1])],
                              [numpy_helper.from_array(w, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.ops", 1)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=16)
    args = p.parse_args(argv)
    model = make_model(size=args.size)
    x = np.random.default_rng(1).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    want = reference.run(model, {"image": x})["features"]
    engine = nbtrt.compile(model, dims={"N": args.batch})
    print(engine.report.summary())
    got = engine.run({"image": x})["features"]
    with tempfile.NamedTemporaryFile(suffix=".engine") as f:
        engine.save(f.name)
        again = nbtrt.load(f.name).run({"image": x})["features"]
    err = float(np.abs(got - want).max())
    print(f"engine vs reference: max abs error {err:.3g}; reloaded engine equal: {np.array_equal(got, again)}")
    return 0 if err < 1e-4 and np.array_equal(got, again) else 1


if __name__ == "__main__":
    sys.exit(main())
