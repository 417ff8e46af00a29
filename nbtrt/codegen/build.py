"""Turning a :class:`KernelSpec` into something that runs.

- :func:`load` executes the generated source and returns the Python kernel function.
- :func:`jit` wraps it with ``numba.cuda.jit`` (the simulator path, and a GPU debugging path).
- :func:`compile_cubin` compiles it ahead of time for a GPU arch: Numba lowers it to PTX with the
  signature ``void(dtype[::1], ...)`` (every parameter a flat contiguous buffer), nvJitLink turns the
  PTX into a cubin, and the entry symbol is read off the PTX.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import NbtrtError
from .kernel import NUMBA_TYPES, KernelSpec
from .numba_env import cuda, simulated


def namespace() -> dict:
    from numba import boolean, float32, float64, int8, int32, int64, uint8, uint16, uint32
    from numba.core.types import float16
    ns = {"cuda": cuda, "math": math, "float32": float32, "float16": float16, "float64": float64,
          "int64": int64, "int32": int32, "int8": int8, "uint8": uint8, "uint16": uint16, "uint32": uint32,
          "boolean": boolean}
    if simulated():  # plain-integer stand-ins of the intrinsics the CUDA-core kernels call
        from .sim_intrinsics import STAND_INS
        ns.update(STAND_INS)
    else:  # the inline-PTX intrinsics (no simulator lowering)
        from .ptx import INTRINSICS
        ns.update(INTRINSICS)
    return ns


def load(spec: KernelSpec):
    """Execute ``spec.source`` and return its entry function (plain Python, not yet compiled)."""
    ns = namespace()
    try:
        exec(compile(spec.source, f"<nbtrt kernel {spec.name}>", "exec"), ns)
    except SyntaxError as e:
        raise NbtrtError(f"generated kernel {spec.name} does not parse: {e}\n{spec.source}") from None
    return ns[spec.name]


def launch_bounds(spec: KernelSpec) -> tuple[int, int] | None:
    """(threads, blocks per SM) when the tactic asks for a minimum number of resident blocks (the
    compiler then caps the registers per thread to fit them), else None."""
    blocks = spec.tactic.get("min_blocks")
    return (int(spec.block[0] * spec.block[1] * spec.block[2]), int(blocks)) if blocks else None


def jit(spec: KernelSpec):
    """A Numba dispatcher for ``spec`` (launch as ``jit(spec)[grid, block](*arrays)``)."""
    bounds = launch_bounds(spec)
    return cuda.jit(load(spec), launch_bounds=bounds) if bounds else cuda.jit(load(spec))


def signature(spec: KernelSpec):
    from numba import types
    ns = namespace()
    return types.void(*[ns[NUMBA_TYPES[d]][::1] for d in spec.param_dtypes])


@dataclass(frozen=True)
class Compiled:
    """A kernel compiled for one arch: the cubin, its PTX (fallback) and the entry symbol."""

    cubin: bytes
    ptx: str
    entry: str
    arch: str


def compile_cubin(spec: KernelSpec, arch: str = "sm_90") -> Compiled:
    cc = (int(arch[3:-1]), int(arch[-1]))
    bounds = launch_bounds(spec)
    ptx, _ = cuda.compile(load(spec), signature(spec), device=False, abi="numba", output="ptx", cc=cc,
                          **({"launch_bounds": bounds} if bounds else {}))
    match = re.search(r"\.entry\s+([\w$]+)\s*\(", ptx)
    if match is None:
        raise NbtrtError(f"no kernel entry in the PTX of {spec.name}")
    from cuda.core import Linker, LinkerOptions, ObjectCode
    linker = Linker(ObjectCode.from_ptx(ptx.encode() if isinstance(ptx, str) else ptx),
                    options=LinkerOptions(arch=arch))
    cubin = linker.link("cubin").code
    return Compiled(bytes(cubin), ptx, match.group(1), arch)
