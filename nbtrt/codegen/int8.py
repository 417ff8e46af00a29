"""int8 math in the CUDA-core GEMM kernels: conv (implicit GEMM, 1×1 GEMM) and gemm groups whose
``math`` attribute is "int8" (set by ``passes/precision.py``, see ``passes/int8.py``).

Such a node has an int8 weight constant ``Wq`` (input 1, symmetric per output channel), the float
activation X (input 0, float16 or float32 storage) with its calibrated scale ``s_in`` (attribute
``int8_scale``) and a float32 vector ``mult[channel] = s_in · s_w[channel]`` over the output
channels (the input named by attribute ``int8_multiplier``). The kernel computes::

    q(x)   = clip(rint(x · (1/s_in)), -127, 127)     on load (nbtrt.quant.quantize)
    acc    = Σ_k Wq · q(X)                           int32 accumulators: exact
    y      = epilogue(float32(acc) · mult[channel])  then bias, activation, residual, store

X may also arrive as int8 (int8 storage, ``passes/int8.py``: its producer quantized it with the
same scale), and is then taken as it is. On CUDA cores (``tiled.py``) the tiles hold words of four
K-consecutive int8 values and the products are ``dp4a`` (four multiply-adds per instruction). On
tensor cores (``mma_async.py`` math "s8", ``mma.sync m16n8k32 .s8``) X must be so stored,
channels-last: the 16-byte copies move bytes, they cannot quantize.
Direct convs have no int8 form.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node
from .kernel import TensorArg, literal, load

ACC = "int32"
ALGORITHMS = ("implicit_gemm", "gemm_1x1", "mma_async")
PACK = 4  # int8 values per 32-bit word of the CUDA-core tiles (dp4a, ``tiled.py``)


def is_int8(node: Node | None) -> bool:
    return node is not None and node.attrs.get("math") == "int8"


def pack(node: Node | None) -> int:
    """K elements per entry of a CUDA-core kernel's tiles: dp4a words for int8 math, else one."""
    return PACK if is_int8(node) else 1


def reader(node: Node):
    """``read(arg, index)`` for the tiles: int8 weights widen to int32, the float activation is
    quantized with the node's input scale."""
    scale = node.attrs["int8_scale"]

    def read(arg: TensorArg, index: str) -> str:
        if arg.dtype == "int8":
            return f"int32({arg.param}[{index}])"
        return quantized(load(arg, index, "float32"), scale)
    return read


def quantize_function() -> list[str]:
    """The device function the reads and int8 stores call (once per kernel source)."""
    return ['@cuda.jit(device=True, inline="always")',
            "def quantize_s8(x, inv_scale):",
            "    # nbtrt.quant.quantize, clip(rint(x / scale), -127, 127), with a multiply by 1 / scale (an IEEE",
            "    # division costs tens of instructions); round() rounds half to even",
            "    v = min(max(x * inv_scale, float32(-127.0)), float32(127.0))",
            "    return int32(round(v))", ""]


def quantized(value: str, scale: float) -> str:
    """The int32 ``quantize_s8`` makes of float32 ``value`` with ``scale`` (it multiplies by the literal
    float32 1 / scale, as the reference does)."""
    return f"quantize_s8({value}, {_inverse(scale)})"


def _inverse(scale: float) -> str:
    """The literal float32 1 / ``scale`` the quantizations multiply by, as the reference does."""
    return literal(float(np.float32(1.0) / np.float32(scale)))


def dequantized_int8(value: str, scale: float) -> str:
    """An int8-stored value (a residual, ``in_scales``) as float32: ``float32(q) · s``."""
    return f"float32({value}) * {literal(scale)}"


# Conversions between int32 and float32 issue at 16 per clock per SM (an eighth of a multiply), three
# per element of an int8 epilogue (the sum, an int8 residual, the quantized result): the run stores of
# the tensor-core kernels (inline PTX, never simulated) avoid them. For an integer |i| < 2^22 the float
# MAGIC + i is exact and its bits are MAGIC's plus i (MAGIC_BITS + i: a short-K sum starts there);
# adding MAGIC to a float in [-127, 127] rounds it to an integer, half to even (rint), into the low bits.
MAGIC, MAGIC_BITS = 12582912.0, 0x4B400000  # 1.5 · 2^23
EXACT = 1 << 22


def quantized_bits(value: str, scale: float, nonnegative: bool = False) -> str:
    """An int32 whose low byte is ``quantize_s8(value)`` (for ``pack_s8``), with no conversion;
    ``nonnegative``: ``value`` is never below 0 (a Relu's result), so no clip at -127."""
    low = f"{value} * {_inverse(scale)}"
    low = low if nonnegative else f"max({low}, float32(-127.0))"
    return f"f32_bits(min({low}, float32(127.0)) + float32({MAGIC}))"


def exact_float(value: str) -> str:
    """float32 of the int32 ``value`` when |value| < EXACT, with no conversion."""
    return f"(bits_f32(int32({value} + {MAGIC_BITS})) - float32({MAGIC}))"


def biased_float(value: str) -> str:
    """float32 of an int32 sum that started at MAGIC_BITS instead of 0 (|sum| < EXACT): one subtraction."""
    return f"(bits_f32({value}) - float32({MAGIC}))"


# ``ptx.unpack_s8_f32`` widens int8 q to the float 2^23 + 128 + q (its bits: 2^23's with the byte q + 128)
S8_BIAS = 8388736.0


def unpacked_float(value: str) -> str:
    """float32 of an int8 that ``unpack_s8_f32`` widened, with one subtraction."""
    return f"({value} - float32({S8_BIAS}))"


def multiplier(node: Node, inputs: list[TensorArg | None]) -> TensorArg:
    return inputs[int(node.attrs["int8_multiplier"])]


def dequantized(node: Node, inputs: list[TensorArg | None], value: str, channel: str) -> str:
    """The float32 accumulator the epilogue receives: ``float32(acc) · mult[channel]``."""
    return f"float32({value}) * {multiplier(node, inputs).param}[{channel}]"


def header(node: Node, inputs: list[TensorArg | None]) -> list[str]:
    return [f"# int8 math: X quantized on load (scale {node.attrs['int8_scale']!r}), int8 weights, int32 "
            f"accumulation; the epilogue gets acc * {multiplier(node, inputs).param}[output channel]"]
