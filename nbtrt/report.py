"""The build report: every decision the passes made, and the kernels that remain.

``decisions``: one entry per rule match — the pass, the rule, the ONNX node names involved, whether
it was applied and, when not, why ("not fused: bias shared with another node"). ``kernels``: one entry
per kernel of the optimized graph — its name, kind, the ONNX node names fused into it, its precision
("fp32", "tf32", "fp16"; None for a kernel without float tensors) and ``precision_reason`` when that is
not simply the build's precision ("layer_precision override (...)", "plugin has no fp16 kernel", ...;
see ``passes/precision.py``). Views (reshape-like nodes, in-place concats) launch nothing and are
listed under ``views``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from .groups import kernel_kind, sources
from .ir import Graph


@dataclass(frozen=True)
class Decision:
    pass_name: str
    rule: str
    nodes: tuple[str, ...]
    applied: bool
    reason: str | None = None


@dataclass
class BuildReport:
    decisions: list[Decision] = field(default_factory=list)
    kernels: list[dict] = field(default_factory=list)
    views: list[dict] = field(default_factory=list)
    nodes_before: int = 0
    precisions: dict = field(default_factory=dict)  # kernel name -> (precision, reason), by passes/precision.py

    def decide(self, pass_name: str, rule: str, nodes, reason: str | None = None) -> bool:
        """Record a decision; returns True when applied (no reason to refuse)."""
        self.decisions.append(Decision(pass_name, rule, tuple(nodes), reason is None, reason))
        return reason is None

    def record_kernels(self, graph: Graph) -> None:
        self.kernels, self.views = [], []
        for node in graph.nodes:
            kind = kernel_kind(node)
            entry = {"name": node.name, "kind": kind or "view", "op": node.op, "nodes": list(sources(node))}
            if kind:
                entry["precision"], entry["precision_reason"] = self.precisions.get(node.name, (None, None))
            (self.kernels if kind else self.views).append(entry)

    def applied(self, rule: str) -> list[Decision]:
        return [d for d in self.decisions if d.rule == rule and d.applied]

    def to_dict(self) -> dict:
        return {"nodes_before": self.nodes_before, "kernel_count": len(self.kernels),
                "decisions": [asdict(d) for d in self.decisions], "kernels": self.kernels, "views": self.views}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def summary(self) -> str:
        lines = [f"{self.nodes_before} ONNX nodes -> {len(self.kernels)} kernels ({len(self.views)} views)"]
        by_rule = Counter((d.rule, d.applied) for d in self.decisions)
        for (rule, applied), n in sorted(by_rule.items()):
            lines.append(f"  {rule}: {n} {'applied' if applied else 'refused'}")
        kinds = Counter(k["kind"] for k in self.kernels)
        lines.append("  kernels: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        precisions = Counter(k.get("precision") or "-" for k in self.kernels)
        lines.append("  precision: " + ", ".join(f"{p} {n}" for p, n in sorted(precisions.items())))
        lines += [f"  {k['precision']}: {k['name']}: {k['precision_reason']}" for k in self.kernels
                  if k.get("precision_reason")]
        for d in self.decisions:
            if not d.applied:
                lines.append(f"  not applied: {d.rule} on {', '.join(d.nodes)}: {d.reason}")
        return "\n".join(lines)
