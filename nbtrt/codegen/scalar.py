"""Element-wise ops as scalar expressions of generated source (one per op of ops/elementwise.py).

``expression(op, attrs, args, dtype)`` returns Python source computing ``op`` on the argument
expressions ``args``, in ``dtype`` arithmetic: every literal is typed (``float32(0.5)``) so that
nothing widens to float64 on the GPU.
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from .kernel import literal


def expression(op: str, attrs: dict, args: list[str], dtype: str) -> str:
    f = lambda v: literal(v, dtype)
    a = args[0] if args else None
    unary = {
        "Identity": lambda: a,
        "Relu": lambda: f"max({a}, {f(0)})",
        "LeakyRelu": lambda: f"({a} if {a} >= {f(0)} else {a} * {f(attrs['alpha'])})",
        "Sigmoid": lambda: f"({f(1)} / ({f(1)} + math.exp(-{a})))",
        "Tanh": lambda: f"math.tanh({a})",
        "HardSigmoid": lambda: f"min(max({a} * {f(attrs['alpha'])} + {f(attrs['beta'])}, {f(0)}), {f(1)})",
        "HardSwish": lambda: f"({a} * min(max({a} / {f(6)} + {f(0.5)}, {f(0)}), {f(1)}))",
        "Elu": lambda: f"({a} if {a} > {f(0)} else {f(attrs['alpha'])} * (math.exp({a}) - {f(1)}))",
        "Selu": lambda: (f"({f(attrs['gamma'])} * {a} if {a} > {f(0)} else "
                         f"{f(attrs['gamma'] * attrs['alpha'])} * (math.exp({a}) - {f(1)}))"),
        "Softplus": lambda: f"(max({a}, {f(0)}) + math.log1p(math.exp(-abs({a}))))",
        "Gelu": lambda: _gelu(a, attrs, f),
        "Erf": lambda: f"math.erf({a})",
        "Exp": lambda: f"math.exp({a})",
        "Log": lambda: f"math.log({a})",
        "Sqrt": lambda: f"math.sqrt({a})",
        "Reciprocal": lambda: f"({f(1)} / {a})",
        "Neg": lambda: f"(-{a})",
        "Abs": lambda: f"abs({a})",
    }
    if op in unary:
        return unary[op]()
    if op == "Clip":
        out = a
        if len(args) > 1 and args[1] is not None:
            out = f"max({out}, {args[1]})"
        if len(args) > 2 and args[2] is not None:
            out = f"min({out}, {args[2]})"
        return out
    binary = {"Add": "({} + {})", "Sub": "({} - {})", "Mul": "({} * {})", "Div": "({} / {})",
              "Pow": "math.pow({}, {})", "Max": "max({}, {})", "Min": "min({}, {})"}
    if op in binary:
        return binary[op].format(*args)
    if op in ("Sum", "Mean"):
        total = "(" + " + ".join(args) + ")"
        return total if op == "Sum" else f"({total} / {f(len(args))})"
    if op == "PRelu":
        return f"({a} if {a} >= {f(0)} else {a} * {args[1]})"
    if op == "Where":
        return f"({args[1]} if {args[0]} else {args[2]})"
    if op == "Cast":
        return f"{attrs['to']}({a})"
    raise UnsupportedOpError([(op, "no element-wise code generator")])


def _gelu(a: str, attrs: dict, f) -> str:
    if attrs.get("approximate") == "tanh":
        inner = f"{f(0.7978845608028654)} * ({a} + {f(0.044715)} * {a} * {a} * {a})"
        return f"({f(0.5)} * {a} * ({f(1)} + math.tanh({inner})))"
    return f"({f(0.5)} * {a} * ({f(1)} + math.erf({a} * {f(0.7071067811865476)})))"
