"""The one frozen build configuration, passed explicitly to every pass (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BuildConfig:
    """How to build an engine.

    ``input_shapes`` fixes the shapes of named inputs (e.g. ``{"x": (1, 3, 224, 224)}``) and ``dims``
    sizes symbolic dims (e.g. ``{"N": 1}``) before optimization, so that shape computations fold.
    ``disabled_passes`` names pipeline passes to skip (for debugging and for tests of single rules).
    """

    precision: str = "fp32"
    input_shapes: dict = field(default_factory=dict)
    dims: dict = field(default_factory=dict)
    disabled_passes: frozenset = frozenset()

    def __hash__(self) -> int:
        return hash((self.precision, tuple(sorted(self.input_shapes.items())),
                     tuple(sorted(self.dims.items())), self.disabled_passes))
