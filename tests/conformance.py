"""Loading the conformance data that ships with the onnx wheel, and comparing outputs.

Cases come from ``onnx.backend.test.case.node.collect_testcases()`` (generated in-process) and from
``onnx/backend/test/data/{light,real,pytorch-converted,pytorch-operator,simple}``.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from nbtrt import NbtrtError, reference
from nbtrt.frontends.onnx import FRONTEND_OPS
from nbtrt.ops import SCHEMAS

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


@dataclass
class Case:
    name: str
    model: object  # ModelProto or path
    data_sets: list  # [(inputs list, expected outputs list)]
    rtol: float = 1e-3
    atol: float = 1e-7


@dataclass
class Tally:
    passed: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)  # name -> reason
    total: int = 0

    def line(self, suite: str) -> str:
        n = len(self.passed) + len(self.failed)
        return f"{suite}: {len(self.passed)} passed / {n} selected / {self.total} total"


def supported(model: onnx.ModelProto) -> bool:
    """All nodes use ops nbtrt implements (subgraph ops are never supported)."""
    return all(n.domain in ("", "ai.onnx") and (n.op_type in SCHEMAS or n.op_type in FRONTEND_OPS)
               for n in model.graph.node)


def _array(x) -> np.ndarray:
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def node_cases() -> list[Case]:
    from onnx.backend.test.case.node import collect_testcases
    return [Case(c.name, c.model, c.data_sets, c.rtol, c.atol)
            for c in collect_testcases() if c.kind == "node"]


def _read_pb(path: str) -> np.ndarray:
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def folder_cases(suite: str) -> list[Case]:
    """Cases stored as ``model.onnx`` + ``test_data_set_*/{input,output}_*.pb``."""
    cases = []
    for d in sorted(glob.glob(os.path.join(DATA, suite, "*"))):
        model = os.path.join(d, "model.onnx")
        if not os.path.isfile(model):
            continue
        sets = []
        for s in sorted(glob.glob(os.path.join(d, "test_data_set_*"))):
            ins = [_read_pb(p) for p in sorted(glob.glob(os.path.join(s, "input_*.pb")), key=_index)]
            outs = [_read_pb(p) for p in sorted(glob.glob(os.path.join(s, "output_*.pb")), key=_index)]
            sets.append((ins, outs))
        cases.append(Case(os.path.basename(d), model, sets))
    return cases


def _index(path: str) -> int:
    return int(os.path.basename(path).split("_")[1].split(".")[0])


def light_cases() -> list[Case]:
    """The light model-zoo networks: input ``arange(n)/n`` (as onnx's runner makes it), expected
    output beside the model, tolerances from ``real/test_NAME/data.json``."""
    cases = []
    for path in sorted(glob.glob(os.path.join(DATA, "light", "light_*.onnx"))):
        name = os.path.basename(path)[len("light_"):-len(".onnx")]
        with open(os.path.join(DATA, "real", f"test_{name}", "data.json")) as f:
            tol = json.load(f)
        proto = onnx.load(path)
        inits = {t.name for t in proto.graph.initializer}
        ins = []
        for vi in proto.graph.input:
            if vi.name in inits:
                continue
            shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            ins.append((np.arange(n).reshape(shape) / n).astype(np.float32))
        outs = [_read_pb(path[:-5] + f"_output_{i}.pb") for i in range(len(proto.graph.output))]
        cases.append(Case(name, proto, [(ins, outs)], tol["rtol"], tol["atol"]))
    return cases


def check_case(case: Case) -> str | None:
    """Run ``case`` on the reference; None when it passes, else the reason."""
    proto = case.model if isinstance(case.model, onnx.ModelProto) else onnx.load(case.model)
    try:
        graph = reference.as_graph(proto)
        names = [v.name for v in graph.inputs]
        for inputs, expected in case.data_sets:
            arrays = [_array(x) for x in inputs]
            got = list(reference.run(graph, dict(zip(names, arrays))).values())
            for i, (g, e) in enumerate(zip(got, [_array(x) for x in expected])):
                reason = compare(g, e, case.rtol, case.atol)
                if reason:
                    return f"output {i}: {reason}"
    except NbtrtError as e:
        return f"{type(e).__name__}: {str(e)[:300]}"
    return None


def compare(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str | None:
    from nbtrt.dtypes import ML_FLOAT_TYPES, SUBBYTE_INT_TYPES
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != expected {want.dtype}"
    if want.dtype.name in ML_FLOAT_TYPES:  # bfloat16, float8, float4 (ml_dtypes, kind "V") as float32
        got, want = got.astype(np.float32), want.astype(np.float32)
    elif want.dtype.name in SUBBYTE_INT_TYPES:  # int4, uint4, int2, uint2 as int8
        got, want = got.astype(np.int8), want.astype(np.int8)
    if want.dtype.kind in "fc":
        ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        ok = np.array_equal(got, want)
    if not ok:
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        return f"max abs diff {np.nanmax(diff) if diff.size else 0:.3g}"
    return None


def run_suite(cases: list[Case], filter_supported: bool = True) -> Tally:
    tally = Tally(total=len(cases))
    for case in cases:
        proto = case.model if isinstance(case.model, onnx.ModelProto) else onnx.load(case.model)
        if filter_supported and not supported(proto):
            continue
        reason = check_case(case)
        if reason is None:
            tally.passed.append(case.name)
        else:
            tally.failed[case.name] = reason
    return tally
