"""Plain-integer stand-ins, for Numba's CUDA simulator, of the inline-PTX intrinsics (``ptx.py``) that the
CUDA-core kernels call, so that CI runs those kernels whole. On a GPU the generated source is the
same and the names resolve to the intrinsics.

- ``pack_s8(a, b, c, d)``: the low bytes of four integers in one 32-bit word, ``a`` in the lowest byte
  (kept as a signed int32 so an int32 shared array takes it as it is).
- ``dp4a(a, b, c)``: ``c + Σ_d byte_d(a) · byte_d(b)`` over the four signed bytes of each word,
  wrapped to int32 as the instruction does.
"""

from __future__ import annotations

import numpy as np


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def pack_s8(a, b, c, d) -> np.int32:
    word = sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate((a, b, c, d)))
    return np.int32(_signed(word, 32))


def dp4a(a, b, c) -> np.int32:
    total = int(c) + sum(_signed(int(a) >> (8 * i), 8) * _signed(int(b) >> (8 * i), 8) for i in range(4))
    return np.int32(_signed(total, 32))


STAND_INS = {"pack_s8": pack_s8, "dp4a": dp4a}
