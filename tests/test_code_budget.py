"""The size budget of DESIGN.md §2: modules under 400 lines, functions under 60."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "nbtrt"


def test_modules_and_functions_stay_small():
    too_long = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(ROOT.parent)
        if text.count("\n") > 400:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                too_long.append(f"{name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, "\n".join(too_long)
