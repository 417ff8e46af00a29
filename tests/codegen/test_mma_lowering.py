"""The tensor-core kernels (f16, tf32, s8) and the vector pools and pads (which the simulator cannot run: no inline PTX
there) are generated, type and lower for a real GPU in CI: Numba's CUDA front end (typing and LLVM
lowering with the inline-PTX intrinsics, no NVVM, GPU or CUDA toolkit needed) compiles each one in a
process without the simulator. Their numerics are checked on the GPU (tests/gpu/test_mma_gpu.py,
tests/gpu/test_vector_gpu.py)."""

from lowering import run

SCRIPT = r"""
from nbtrt.codegen import conv, gemm
from nbtrt.codegen.kernel import TensorArg
from lowering import lower_all
from test_mma_gpu import conv_node, gemm_node, nhwc_args

def args(node):
    ins = [TensorArg.contiguous(f"in{k}", v.type.dtype, v.type.shape) for k, v in enumerate(node.inputs)]
    return [TensorArg.contiguous("out0", node.outputs[0].type.dtype, node.outputs[0].type.shape)], ins

cases = []
for math, dtype in (("f16", "float16"), ("tf32", "float32")):
    # 3x3 with 64 channels per group: K in (tap, channel) order; 5 channels: the per-element decode; 1x1
    for x, w, attrs in [((2, 64, 9, 9), (40, 64, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1))),
                        ((1, 5, 9, 7), (24, 5, 3, 3), dict(kernel_shape=(3, 3), strides=(2, 2))),
                        ((2, 32, 6, 6), (48, 32, 1, 1), dict(kernel_shape=(1, 1)))]:
        node = conv_node(x, w, attrs, dtype, math, residual=True)
        for t in [t for t in conv.TACTICS if t.get("algorithm") == "mma" and t["math"] == math][:2]:
            cases.append(conv.emit(node, *args(node), t))
    node = gemm_node("Gemm", (40, 70), (30, 70), dict(transA=0, transB=1, alpha=1.0, beta=1.0), dtype, math)
    cases.append(gemm.emit(node, *args(node), next(t for t in gemm.TACTICS if t.get("algorithm") == "mma"
                                                   and t["math"] == math and gemm.valid(node, t))))
# the pipelined cp.async kernel on channels-last operands: a 3x3 (tap per chunk), a strided 1x1, groups
for x, w, attrs in [((2, 24, 9, 9), (40, 24, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1))),
                    ((1, 64, 8, 8), (96, 64, 1, 1), dict(kernel_shape=(1, 1), strides=(2, 2))),
                    ((2, 32, 7, 7), (32, 16, 3, 3), dict(kernel_shape=(3, 3), group=2))]:
    node = conv_node(x, w, attrs, "float16", "f16", residual=True)
    ins, outs = nhwc_args(node)
    for t in [conv.TACTICS.index(t) for t in conv.TACTICS if t.get("algorithm") == "mma_async"][:3]:
        cases.append(conv.emit(node, outs, ins, conv.TACTICS[t]))
    split = next(t for t in conv.TACTICS if t.get("splits") == 4)  # split K: parts summed in scratch
    cases.append(conv.emit(node, outs, ins, split))
    assert cases[-1].scratch and cases[-1].params[-2:] == ["work", "flags"]
assert all("mma_" in spec.source for spec in cases)
# pooling runs of 8 float16 channels (16-byte loads and stores), max with bias + Relu, average
from nbtrt.codegen import pool
from test_mma_gpu import channels_last
from test_vector_gpu import fp16_pool
for base, attrs in [("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
                    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0))]:
    node = fp16_pool(base, (2, 16, 9, 9), attrs, base == "MaxPool")
    ins = [channels_last("in0", "float16", (2, 16, 9, 9))] + [TensorArg.contiguous("in1", "float32", (16, 1, 1))]
    spec = pool.emit(node, [channels_last("out0", "float16", node.outputs[0].type.shape)], ins[:len(node.inputs)])
    assert "ld_v4" in spec.source
    cases.append(spec)
pool.BUSY = 0  # small pools take 16 int8 channels per thread too
for c, vector in ((24, "unpack_s8(r1)"), (32, "max_s16x2(acc7, o3)")):  # int8 max pools: 8 or 16 channels a thread
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    node = fp16_pool("MaxPool", (2, c, 9, 9), attrs, False, "int8")
    spec = pool.emit(node, [channels_last("out0", "int8", node.outputs[0].type.shape)],
                     [channels_last("in0", "int8", (2, c, 9, 9))])
    assert vector in spec.source
    cases.append(spec)
# an fp16 pipelined conv storing its output as int8 for int8 readers (int8 storage: out_scales)
node = conv_node((1, 32, 6, 6), (16, 32, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)), "float16", "f16", False)
node.attrs["out_scales"] = [0.05]
ins, outs = nhwc_args(node)
outs = [TensorArg.contiguous("out0", "int8", node.outputs[0].type.shape)]
cases.append(conv.emit(node, outs, ins, next(t for t in conv.TACTICS if t.get("algorithm") == "mma_async")))
assert "quantize_s8" in cases[-1].source
# int8 tensor cores (mma_async math s8): int8 channels-last input, a 3x3 with a residual into float16,
# a strided 1x1 with the raw sums, a grouped 3x3 storing int8; each also with split K (int32 partial sums)
from test_int8_gpu import int8_conv_node
from nbtrt.codegen.int8 import MAGIC_BITS
for x, w, attrs, epilogue, out in [
        ((2, 32, 9, 9), (40, 32, 3, 3), dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)), "residual", "float16"),
        ((1, 64, 8, 8), (96, 64, 1, 1), dict(kernel_shape=(1, 1), strides=(2, 2)), None, "float32"),
        ((2, 64, 7, 7), (32, 32, 3, 3), dict(kernel_shape=(3, 3), group=2), "bias_relu", "int8"),
        ((2, 32, 6, 6), (64, 32, 1, 1), dict(kernel_shape=(1, 1)), "residual_int8", "int8")]:
    node = int8_conv_node(x, w, attrs, epilogue, out)
    ins, outs = nhwc_args(node)
    s8 = [t for t in conv.TACTICS if t.get("algorithm") == "mma_async" and t["math"] == "s8"
          and conv.valid(node, t, outs, ins)]
    cases += [conv.emit(node, outs, ins, s8[0]), conv.emit(node, outs, ins, next(t for t in s8 if t.get("splits")))]
    assert "mma_s8" in cases[-1].source and "st_s32" in cases[-1].source
assert "st_v2" in cases[-1].source and "unpack_s8" in cases[-1].source  # 8 int8 channels per store and load
# the int8 residual's words loaded for the band before its stores; shared memory through 32-bit addresses; a
# short-K s8 sum, the int8 residual and the int8 output converted through float bits (no cvt instructions)
src = cases[-2].source
body = src.split("def conv_")[1]
assert "words0 = store_conv_words(" in body and body.index("words0 =") < body.index("store_conv_run(out0")
assert "lds_v4_f32" in body and "sts_f32(stage_at" in body and "smem[" not in body
assert "sts_f32(stage_at + 0, (bits_f32(" in src and "f32_bits(" in src and "float32(i0)" not in src
assert f"c0_0_0 = int32({MAGIC_BITS})" in body and "unpack_s8_f32(w3_0)" in src  # the sums start at the magic
assert "ldg_v4_f32(in4, ch + 4)" in src and "ldg_v4_f32(in2, ch)" in src and "[ch + 1]" not in src  # vector loads
from test_int8_gpu import merged_conv_node  # a merged 1x1 conv: each run of 8 channels to the output owning it
node = merged_conv_node((2, 64, 5, 7), (32, 16, 48), ("int8", "float16", "int8"), "s8")
outs = [channels_last(f"out{i}", v.type.dtype, v.type.shape, 96, 16) for i, v in enumerate(node.outputs)]
ins, _ = nhwc_args(node)
cases.append(conv.emit(node, outs, ins, next(t for t in conv.TACTICS if t.get("algorithm") == "mma_async"
                                             and t["math"] == "s8" and conv.valid(node, t, outs, ins))))
assert "store_conv_run(" in cases[-1].source and "elif ch < 48:" in cases[-1].source
from nbtrt.codegen import pad  # a constant pad writing 8 float16 channels per thread (the fp16 stem's input)
from test_vector_gpu import pad_node
node = pad_node((2, 3, 6, 5), "float32", [0, 0, 1, 0, 0, 5, 0, 1], None)
cases.append(pad.emit(node, [channels_last("out0", "float16", node.outputs[0].type.shape)],
                      [TensorArg.contiguous("in0", "float32", (2, 3, 6, 5)), None]))
assert "st_v4" in cases[-1].source
lower_all(cases)
"""


def test_tensor_core_kernels_lower_for_the_gpu():
    assert "41 kernels, 0 failures" in run(SCRIPT)
