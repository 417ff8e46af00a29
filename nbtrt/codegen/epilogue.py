"""Emitting an epilogue program (groups.Program) as straight-line source.

``emit(program, acc, load, dtype)`` turns each Step into one assignment ``e<j> = <expr>``; operands
``in<k>`` are loaded through ``load(k)`` (the template knows where operand k lives relative to the
element being computed), ``acc`` is the template's accumulator expression.
"""

from __future__ import annotations

from typing import Callable

from ..groups import Program
from .scalar import expression


def emit(program: Program, acc: str | None, load: Callable[[int], str], dtype: str,
         prefix: str = "e") -> tuple[list[str], str]:
    """Return (source lines, name of the variable holding the result)."""
    lines: list[str] = []
    env = {"acc": acc}
    for j, step in enumerate(program):
        args = [env[a] if a in env else load(int(a[2:])) for a in step.args]
        lines.append(f"{prefix}{j} = {expression(step.op, dict(step.attrs), args, dtype)}")
        env[f"s{j}"] = f"{prefix}{j}"
    return lines, env[f"s{len(program) - 1}"] if program else acc


def operands(program: Program) -> list[int]:
    """The node-input indices a program reads, in first-use order."""
    seen: list[int] = []
    for step in program:
        for a in step.args:
            if a.startswith("in") and int(a[2:]) not in seen:
                seen.append(int(a[2:]))
    return seen
