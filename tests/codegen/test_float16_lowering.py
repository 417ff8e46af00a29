"""The float16 kernels type-check and lower for a real GPU, not only in the simulator (which runs them
as numpy code and accepts any mix of dtypes): Numba's CUDA front end (typing and LLVM lowering, no
NVVM needed, so no GPU or CUDA toolkit) compiles every kernel that test_float16.py generates, in a
process without the simulator."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = r"""
import sys
try:
    from numba.cuda.compiler import compile_cuda
except ImportError:
    print("SKIP: numba.cuda.compiler.compile_cuda is not available")
    sys.exit(0)
from numba import types
from nbtrt.codegen import generate
from nbtrt.codegen.build import load, signature
from nbtrt.codegen.kernel import TensorArg
import test_float16 as cases

specs = []

def generated(node, arrays, tactic=None, **kw):
    ins = [None if a is None else TensorArg.contiguous(f"in{k}", a.dtype.name, a.shape) for k, a in enumerate(arrays)]
    outs = [TensorArg.contiguous(f"out{i}", v.type.dtype, v.type.shape) for i, v in enumerate(node.outputs)]
    specs.append(generate(node, outs, ins, tactic))
    return specs[-1]

cases.check = generated
for name in sorted(dir(cases)):
    fn = getattr(cases, name)
    if not name.startswith("test_") or hasattr(fn, "hypothesis"):
        continue
    calls = [{}]
    for mark in [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]:
        keys = [k.strip() for k in mark.args[0].split(",")]
        calls = [dict(c, **dict(zip(keys, v if isinstance(v, tuple) else (v,)))) for c in calls for v in mark.args[1]]
    for kw in calls:
        fn(**kw)
failures = 0
for spec in specs:
    try:
        compile_cuda(load(spec), types.void, signature(spec).args, cc=(9, 0))
    except Exception as e:
        failures += 1
        print(f"{spec.name} {spec.param_dtypes}: {type(e).__name__}: {e}")
print(f"{len(specs)} kernels, {failures} failures")
sys.exit(1 if failures else 0)
"""


def test_float16_kernels_lower_for_the_gpu():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0",
               PYTHONPATH=os.pathsep.join([HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=HERE, capture_output=True, text=True,
                          timeout=600)
    if done.stdout.startswith("SKIP"):
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert ", 0 failures" in done.stdout and int(done.stdout.split()[-4]) >= 20, done.stdout
