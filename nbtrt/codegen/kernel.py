"""What a kernel template produces and consumes.

Every tensor reaches a generated kernel as a flat, contiguous 1-D buffer parameter; the template bakes
in the tensor's shape, element strides and element offset inside that buffer (:class:`TensorArg`), so
the same kernel can read a slice of a merged conv's output or write its slice of a concat buffer.
Scalars are baked as ``float32(...)`` literals so that no arithmetic silently widens to float64.

Storage and compute dtypes: float16 tensors are storage only. A kernel computes in
:func:`compute_dtype` of its tensors (float32 when they are float16 or float32, in any mix), widens
every float16 element it reads (:func:`load`) and rounds on store (:func:`store`), so one kernel can
read a float32 network input and write float16 activations, or read float16 and write a float32
network output (see ``passes/precision.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FLOATS = ("float16", "float32", "float64")
NUMBA_TYPES = {"float32": "float32", "float16": "float16", "float64": "float64", "int64": "int64",
               "int32": "int32", "int8": "int8", "uint8": "uint8", "bool": "boolean"}


@dataclass(frozen=True)
class TensorArg:
    """How a kernel sees one tensor: parameter name, dtype, shape, element strides and offset."""

    param: str
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0

    @staticmethod
    def contiguous(param: str, dtype: str, shape, offset: int = 0) -> "TensorArg":
        return TensorArg(param, dtype, tuple(shape), contiguous_strides(shape), offset)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Scratch:
    """Scratch memory a kernel asks of its execution context, as two trailing parameters (``SCRATCH``):
    ``work`` float32 words it writes and reads within one launch (e.g. split-K partial sums), and
    ``flags`` int32 counters that are zero before every launch (the kernel leaves them zero). A
    context holds one of each, as large as its largest kernel asks: kernels run one after another."""

    work: int = 0
    flags: int = 0

    def __or__(self, other: "Scratch | None") -> "Scratch":
        other = other or Scratch()
        return Scratch(max(self.work, other.work), max(self.flags, other.flags))


SCRATCH = (("work", "float32"), ("flags", "int32"))  # (parameter, dtype), after the tensors


def scratch_arrays(scratch: Scratch, zeros=np.zeros) -> list:
    """Zeroed scratch buffers in ``SCRATCH`` order, made by ``zeros(n, dtype)`` (numpy's by default)."""
    return [zeros(max(n, 1), dtype) for n, (_, dtype) in zip((scratch.work, scratch.flags), SCRATCH)]


@dataclass
class KernelSpec:
    """A generated kernel: its source, entry function, parameters (in order) and launch shape.
    With ``scratch`` its last two parameters are the context's scratch buffers (``SCRATCH``)."""

    name: str
    source: str
    params: list[str]
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    param_dtypes: list[str] = field(default_factory=list)
    tactic: dict = field(default_factory=dict)
    scratch: Scratch | None = None

    @property
    def tensor_params(self) -> list[str]:
        """The parameters that are tensors (all but the scratch buffers)."""
        return self.params[:len(self.params) - len(SCRATCH)] if self.scratch else list(self.params)


def contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(tuple(shape)):
        strides.append(acc)
        acc *= int(d)
    return tuple(reversed(strides))


def same_strides(shape, a, b) -> bool:
    """Whether strides ``a`` and ``b`` place ``shape``'s elements alike (size-1 dims never move)."""
    return all(x == y for d, x, y in zip(shape, a, b) if d != 1)


def runs_of_8(a: TensorArg, dtype: str = "float16") -> bool:
    """Whether ``a`` is ``dtype`` channels-last (dim 1 contiguous) with every run of 8 channels at an
    aligned address (16 bytes for float16, 8 for int8): kernels may then move 8 channels per vector
    load or store."""
    return runs_of(a, 8, dtype)


def runs_of(a: TensorArg, n: int, dtype: str) -> bool:
    """:func:`runs_of_8` for runs of ``n`` channels (aligned to n elements)."""
    return (a.dtype == dtype and len(a.shape) >= 3 and a.strides[1] == 1 and a.shape[1] % n == 0
            and a.offset % n == 0 and all(s % n == 0 for k, s in enumerate(a.strides) if k != 1 and a.shape[k] > 1))


def literal(value, dtype: str = "float32") -> str:
    """A typed literal for generated source."""
    if dtype == "bool":
        return "True" if value else "False"
    if np.issubdtype(np.dtype(dtype), np.integer):
        return f"{dtype}({int(value)})"
    v = float(value)
    if np.isnan(v):
        return f"{dtype}(math.nan)"
    if np.isinf(v):
        return f"{dtype}({'-' if v < 0 else ''}math.inf)"
    return f"{dtype}({v!r})"


def compute_dtype(*dtypes: str) -> str:
    """The dtype a kernel over tensors of ``dtypes`` computes in: float16 and float32 (in any mix)
    compute in float32, float64 in float64; without floats, the first dtype."""
    floats = [d for d in dtypes if d in FLOATS]
    if not floats:
        return dtypes[0] if dtypes else "float32"
    return "float64" if "float64" in floats else "float32"


def convert(expr: str, dtype: str, to: str) -> str:
    """``expr`` (of ``dtype``) converted to ``to`` when both are floats of different widths."""
    return f"{to}({expr})" if dtype != to and dtype in FLOATS and to in FLOATS else expr


def load(arg: TensorArg, index: str, cd: str) -> str:
    """``arg[index]``, widened (or narrowed) to the compute dtype ``cd`` when it is another float."""
    return convert(f"{arg.param}[{index}]", arg.dtype, cd)


def store(arg: TensorArg, index: str, value: str, cd: str) -> str:
    """The statement storing ``value`` (computed in ``cd``) at ``arg[index]``, rounded to ``arg``'s
    float dtype (e.g. float32 -> float16)."""
    return f"{arg.param}[{index}] = {convert(value, cd, arg.dtype)}"


def unravel(flat: str, shape, prefix="c", order=None) -> list[str]:
    """Source lines that set ``c0..c{r-1}`` to the coordinates of flat index ``flat`` in ``shape``
    (``prefix`` "c"; or a list of the variables' names).

    ``order`` lists the dims from outermost to innermost (default: row-major, the last dim fastest);
    e.g. :func:`element_order` of a channels-last output makes consecutive flat indices walk its
    channels, so consecutive threads write consecutive addresses."""
    order = tuple(range(len(shape))) if order is None else tuple(order)
    step, acc = {}, 1
    for k in reversed(order):
        step[k] = acc
        acc *= int(shape[k])
    names = [f"{prefix}{k}" for k in range(len(shape))] if isinstance(prefix, str) else list(prefix)
    lines = []
    for k, (d, c) in enumerate(zip(shape, names)):
        s = step[k]
        if d == 1:
            lines.append(f"{c} = 0")
        elif k == order[0]:
            lines.append(f"{c} = {flat} // {s}" if s != 1 else f"{c} = {flat}")
        else:
            q = f"{flat} // {s}" if s != 1 else flat
            lines.append(f"{c} = ({q}) % {d}")
    return lines


def element_order(arg: TensorArg) -> tuple[int, ...] | None:
    """The dims of ``arg`` from outermost to innermost in memory (largest stride first, ties and
    size-1 dims in dim order), for :func:`unravel`; None when that is row-major order (a contiguous
    tensor, or a slice of one), so that such kernels keep their plain row-major code."""
    big = [s for d, s in zip(arg.shape, arg.strides) if d != 1]
    if all(a >= b for a, b in zip(big, big[1:])):
        return None
    return tuple(sorted(range(len(arg.shape)), key=lambda k: -arg.strides[k] if arg.shape[k] != 1 else 0))


def index_of(arg: TensorArg, out_shape, coords) -> str:
    """The element index of ``arg`` at output coordinates ``coords`` (numpy broadcasting: ``arg`` is
    right-aligned with ``out_shape``, its size-1 dims read index 0)."""
    terms = [str(arg.offset)] if arg.offset else []
    lead = len(out_shape) - len(arg.shape)
    for k, (d, s) in enumerate(zip(arg.shape, arg.strides)):
        if d != 1 and s != 0:
            c = coords[lead + k]
            terms.append(c if s == 1 else f"{c} * {s}")
    return " + ".join(terms) or "0"


def header(kind: str, node, tactic: dict, outputs, inputs) -> list[str]:
    """The comment block that opens every generated kernel."""
    from ..groups import sources
    lines = [f"# nbtrt {kind} kernel for {node.name!r}",
             f"# ONNX nodes: {', '.join(sources(node))}",
             f"# tactic: {', '.join(f'{k}={v}' for k, v in sorted(tactic.items())) or 'default'}"]
    lines += [f"# out {a.param}: {a.dtype}{list(a.shape)} strides {list(a.strides)} offset {a.offset}"
              for a in outputs]
    lines += [f"# in  {a.param}: {a.dtype}{list(a.shape)} strides {list(a.strides)} offset {a.offset}"
              for a in inputs]
    return lines


def identifier(name: str) -> str:
    """A Python identifier made from an ONNX node name."""
    return "".join(ch if ch.isalnum() else "_" for ch in name)[:48]


def indent(lines, n: int = 1) -> list[str]:
    return ["    " * n + line for line in lines]
