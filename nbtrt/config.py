"""The one frozen build configuration, passed explicitly to every pass (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BuildConfig:
    """How to build an engine.

    ``input_shapes`` fixes the shapes of named inputs (e.g. ``{"x": (1, 3, 224, 224)}``) and ``dims``
    sizes symbolic dims (e.g. ``{"N": 1}``) before optimization, so that shape computations fold.
    ``disabled_passes`` names pipeline passes to skip (for debugging and for tests of single rules).
    ``tuning``: "none" picks each kernel's tactic by heuristic; "fast" times a few candidates per
    kernel on the GPU, "full" every valid one; ``tuning_budget_s`` caps the tuning time and
    ``timing_cache`` names a JSON file of earlier measurements (reused across builds and models).
    """

    precision: str = "fp32"
    input_shapes: dict = field(default_factory=dict)
    dims: dict = field(default_factory=dict)
    disabled_passes: frozenset = frozenset()
    tuning: str = "none"
    tuning_budget_s: float | None = None
    timing_cache: str | None = None

    def __post_init__(self):
        from .errors import NbtrtError
        if self.tuning not in ("none", "fast", "full"):
            raise NbtrtError(f"tuning must be 'none', 'fast' or 'full', got {self.tuning!r}")

    def __hash__(self) -> int:
        return hash((self.precision, tuple(sorted(self.input_shapes.items())), tuple(sorted(self.dims.items())),
                     self.disabled_passes, self.tuning, self.tuning_budget_s, self.timing_cache))
