"""The float16 kernels type-check and lower for a real GPU, not only in the simulator (which runs them
as numpy code and accepts any mix of dtypes): Numba's CUDA front end (typing and LLVM lowering, no
NVVM needed, so no GPU or CUDA toolkit) compiles every kernel that test_float16.py generates, in a
process without the simulator."""

from lowering import run

SCRIPT = r"""
from nbtrt.codegen import generate
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
from lowering import lower_all
lower_all(specs)
"""


def test_float16_kernels_lower_for_the_gpu():
    out = run(SCRIPT)
    assert ", 0 failures" in out and int(out.split()[-4]) >= 20, out
