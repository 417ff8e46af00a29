"""Compiling generated kernels for a real GPU without one: Numba's CUDA front end (typing and LLVM
lowering; no NVVM, GPU or CUDA toolkit) in a subprocess where the simulator is off.

``run(script)`` runs ``script`` (which generates specs and calls :func:`lower_all`) that way and
returns its stdout; the test skips when this Numba has no ``compile_cuda``."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def lower_all(specs) -> None:
    """In the subprocess: lower every spec, print failures and a count line, exit non-zero on any."""
    from numba import types
    try:
        from numba.cuda.compiler import compile_cuda
    except ImportError:
        print("SKIP: numba.cuda.compiler.compile_cuda is not available")
        sys.exit(0)

    from nbtrt.codegen.build import load, signature
    failures = 0
    for spec in specs:
        try:
            compile_cuda(load(spec), types.void, signature(spec).args, cc=(9, 0))
        except Exception as e:  # noqa: BLE001 — reported per kernel
            failures += 1
            print(f"{spec.name} {spec.param_dtypes} {spec.tactic}: {type(e).__name__}: {e}")
    print(f"{len(specs)} kernels, {failures} failures")
    sys.exit(1 if failures else 0)


def run(script: str) -> str:
    root = os.path.dirname(os.path.dirname(HERE))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0",
               PYTHONPATH=os.pathsep.join([HERE, os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "gpu"), root]))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=HERE, capture_output=True, text=True,
                          timeout=900)
    if done.stdout.startswith("SKIP"):
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    return done.stdout
