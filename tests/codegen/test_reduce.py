"""ReduceSum / ReduceMean / ReduceMax kernels in the simulator against the reference: random shapes,
axes and keepdims, every row tactic (a thread per row, shared-memory trees of 2–8 threads, a capped
grid so the loop over row groups runs), strided outputs; plus the checks every row-kernel test file
uses: no float64 arithmetic in the typed kernel, no bare float literals in the source.

The helpers here (``plain``, ``float64_values``, ``bare_floats``, ``row_tactics``) are imported by
``test_pool.py`` and ``test_normalize.py``.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness import assert_matches, run_generated
from nbtrt.codegen import generate, reduce
from nbtrt.codegen.kernel import TensorArg
from nbtrt.ir import Graph, TensorType
from nbtrt.ops import fill_attributes, infer_node

FAST = settings(max_examples=20, deadline=None)


def plain(op, shapes, attrs, consts=None, n_outputs=1, dtype="float32"):
    """A plain ONNX node on graph inputs of ``shapes`` (``consts``: input index -> constant array),
    attributes filled and outputs inferred as the frontend does."""
    g = Graph()
    consts = consts or {}
    ins = [None if s is None else g.add_constant(f"c{k}", consts[k]) if k in consts
           else g.add_input(f"x{k}", TensorType(dtype, tuple(s))) for k, s in enumerate(shapes)]
    node = g.add_node(op, ins, n_outputs=n_outputs, attrs=dict(attrs), name=f"{op.lower()}_1")
    fill_attributes(node)
    infer_node(node)
    return node


def spec_for(node, arrays, tactic=None):
    """The kernel generated for ``node`` on contiguous tensors shaped like ``arrays``."""
    ins = [None if a is None else TensorArg.contiguous(f"in{k}", a.dtype.name, a.shape) for k, a in enumerate(arrays)]
    outs = [TensorArg.contiguous(f"out{i}", v.type.dtype, v.type.shape) for i, v in enumerate(node.outputs)]
    return generate(node, outs, ins, tactic)


@st.composite
def row_tactics(draw, max_threads=8):
    """A small row tactic: threads × rows <= 32 and at most 3 blocks (the simulator runs threads as
    Python threads and every syncthreads as a barrier, so few and small blocks keep tests fast)."""
    threads = draw(st.sampled_from([t for t in (1, 2, 4, 8) if t <= max_threads]))
    rows = draw(st.sampled_from([r for r in (1, 2, 4, 8) if threads * r <= 32]))
    return {"threads": threads, "rows": rows, "blocks": draw(st.integers(1, 3))}


_CHECK = r"""
import json, sys
from numba import types
from numba.cuda.compiler import compile_cuda
from nbtrt.codegen.build import load, signature
from nbtrt.codegen.kernel import KernelSpec
wide = {}
for d in json.load(sys.stdin):
    spec = KernelSpec(**d)
    cres = compile_cuda(load(spec), types.void, signature(spec).args, cc=(9, 0))
    names = [k for k, t in cres.fndesc.typemap.items() if str(t) == "float64"
             and (not k.startswith("$") or any(w in k for w in ("binop", "call", "getitem")))]
    if names:
        wide[spec.name] = sorted(names)
print(json.dumps(wide))
"""


def float64_values(specs) -> dict:
    """Type the kernels with Numba's CUDA front end (no GPU, no NVVM needed) in a subprocess without
    the simulator; return, per kernel, the variables and intermediate results typed float64."""
    payload = json.dumps([dict(name=s.name, source=s.source, params=s.params, grid=s.grid, block=s.block,
                               param_dtypes=s.param_dtypes) for s in specs])
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    done = subprocess.run([sys.executable, "-c", _CHECK], input=payload, capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


FLOAT = re.compile(r"(?<![\w.])(\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+|math\.(?:inf|nan|pi|e)\b)")


def bare_floats(source: str) -> list[str]:
    """Float literals of the (non-comment) source that are not the argument of a float32(...) cast."""
    bad = []
    for line in source.splitlines():
        code = line.split("#", 1)[0]
        for m in FLOAT.finditer(code):
            if not re.search(r"float32\(-?$", code[:m.start()]):
                bad.append(f"{m.group(0)} in: {line.strip()}")
    return bad


# -- the reductions -----------------------------------------------------------------------------------

@st.composite
def reduce_case(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    assume(int(np.prod(shape)) <= 48)
    axes = draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank, unique_by=lambda a: a % rank))
    return shape, axes


@FAST
@given(reduce_case(), st.sampled_from(["ReduceSum", "ReduceMean", "ReduceMax"]), st.sampled_from([0, 1]),
       row_tactics(), st.integers(0, 1000))
def test_reduce_random(case, op, keepdims, tactic, seed):
    shape, axes = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    axes = np.array(axes, np.int64)
    node = plain(op, [shape, axes.shape], {"keepdims": keepdims}, consts={1: axes})
    assert_matches(node, [x, axes], rtol=1e-5, atol=1e-5, tactic=tactic)


def test_reduce_all_axes_and_noop():
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    node = plain("ReduceMean", [x.shape], {"keepdims": 0})  # no axes: every axis
    spec = assert_matches(node, [x], atol=1e-6, tactic={"threads": 8, "rows": 1})
    assert spec.grid == (1, 1, 1)
    empty = np.zeros(0, np.int64)
    node = plain("ReduceSum", [x.shape, (0,)], {"noop_with_empty_axes": 1}, consts={1: empty})
    assert_matches(node, [x, empty], tactic={"threads": 1, "rows": 8})


def test_reduce_into_strided_output():
    """A keepdims=0 reduction writing its [2, 3] result into columns 1..3 of a [2, 5] buffer."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    axes = np.array([1], np.int64)
    node = plain("ReduceMax", [x.shape, (1,)], {"keepdims": 0}, consts={1: axes})
    dst = TensorArg("out0", "float32", (2, 3), (5, 1), 1)
    (got,), buffers, _ = run_generated(node, [x, axes], {"threads": 2, "rows": 4}, [dst], {"out0": 10})
    np.testing.assert_array_equal(got, x.max(axis=1))
    whole = buffers["out0"].reshape(2, 5)
    assert np.isnan(whole[:, 0]).all() and np.isnan(whole[:, 4]).all()


def test_auto_tactics():
    rows = reduce.Rows((64, 1000), (1,))
    assert reduce.resolve(None, rows, TensorArg.contiguous("x", "float32", (64, 1000))) == \
        {"threads": 256, "rows": 1}
    nchw = TensorArg.contiguous("x", "float32", (8, 16, 32, 32))
    channels = reduce.Rows(nchw.shape, (1,))  # softmax over C: strided rows, adjacent neighbours
    assert reduce.resolve({}, channels, nchw)["threads"] == 1
    spatial = reduce.Rows(nchw.shape, (2, 3))  # a global pool of 32 x 32
    assert reduce.resolve({}, spatial, nchw) == {"threads": 256, "rows": 1}
    seven = TensorArg.contiguous("x", "float32", (64, 2048, 7, 7))
    assert reduce.resolve({}, reduce.Rows(seven.shape, (2, 3)), seven) == {"threads": 32, "rows": 8}


def test_source_is_float32_and_readable():
    x = np.zeros((2, 3, 5), np.float32)
    specs = []
    for op, axes in (("ReduceMean", [1, 2]), ("ReduceSum", [0]), ("ReduceMax", [-1])):
        a = np.array(axes, np.int64)
        specs.append(spec_for(plain(op, [x.shape, a.shape], {}, consts={1: a}), [x, a], {"threads": 4, "rows": 2}))
    for spec in specs:
        assert spec.source.startswith("# nbtrt reduce kernel for 'reduce"), spec.source
        assert "cuda.syncthreads()" in spec.source and not bare_floats(spec.source), spec.source
    assert "acc / float32(15.0)" in specs[0].source
    assert float64_values(specs) == {}
