"""The one frozen build configuration, passed explicitly to every pass (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

PRECISIONS = ("fp32", "tf32", "fp16")  # most precise first (per layer: layer_precision)
BUILD_PRECISIONS = PRECISIONS + ("int8",)  # a build's precision (int8 needs scales: nbtrt.compile)
LAYOUTS = ("auto", "nchw", "nhwc")  # activation memory layout (see runtime/layout.py)


@dataclass(frozen=True)
class BuildConfig:
    """How to build an engine.

    ``input_shapes`` fixes the shapes of named inputs (e.g. ``{"x": (1, 3, 224, 224)}``) and ``dims``
    sizes symbolic dims (e.g. ``{"N": 1}``) before optimization, so that shape computations fold.
    ``disabled_passes`` names pipeline passes to skip (for debugging and for tests of single rules).
    ``tuning``: "none" picks each kernel's tactic by heuristic; "fast" times a few candidates per
    kernel on the GPU, "full" every valid one; ``tuning_budget_s`` caps the tuning time and
    ``timing_cache`` names a JSON file of earlier measurements (reused across builds and models).
    ``precision``: "fp32" (strict), "tf32" (conv/gemm may use TF32 tensor cores) or "fp16" (float16
    activations and weights, float32 accumulation) or "int8" (conv/gemm kernels with calibrated input
    scales compute in int8, the rest as fp16; see ``nbtrt.compile``); ``layer_precision`` overrides it
    per ONNX node name, e.g. ``{"/fc/Gemm": "fp32"}`` (see ``passes/precision.py``).
    ``layout``: how the memory plan lays out 4-D activations between kernels: "nchw" (row-major),
    "nhwc" (channels-last where it may, see ``runtime/layout.py``) or "auto" (channels-last for the
    fp16 and int8 builds, whose tensor-core kernels want it; NCHW for fp32 and tf32).
    """

    precision: str = "fp32"
    input_shapes: dict = field(default_factory=dict)
    dims: dict = field(default_factory=dict)
    disabled_passes: frozenset = frozenset()
    tuning: str = "none"
    tuning_budget_s: float | None = None
    timing_cache: str | None = None
    layer_precision: dict = field(default_factory=dict)
    layout: str = "auto"

    def __post_init__(self):
        from .errors import NbtrtError
        if self.tuning not in ("none", "fast", "full"):
            raise NbtrtError(f"tuning must be 'none', 'fast' or 'full', got {self.tuning!r}")
        if self.precision not in BUILD_PRECISIONS:
            raise NbtrtError(f"precision must be one of {', '.join(map(repr, BUILD_PRECISIONS))}, "
                             f"got {self.precision!r}")
        if self.layout not in LAYOUTS:
            raise NbtrtError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, got {self.layout!r}")
        if not isinstance(self.layer_precision, dict):
            raise NbtrtError(f"layer_precision must be a dict of ONNX node name -> precision, "
                             f"got {type(self.layer_precision).__name__}")
        for name, p in self.layer_precision.items():
            if not isinstance(name, str) or p not in PRECISIONS:
                raise NbtrtError(f"layer_precision[{name!r}] = {p!r}: keys are ONNX node names, values one of "
                                 f"{', '.join(map(repr, PRECISIONS))}")

    @property
    def memory_layout(self) -> str:
        """"nchw" or "nhwc": ``layout`` with "auto" resolved (channels-last for fp16 and int8)."""
        if self.layout == "auto":
            return "nhwc" if self.precision in ("fp16", "int8") else "nchw"
        return self.layout

    def __hash__(self) -> int:
        return hash((self.precision, tuple(sorted(self.input_shapes.items())), tuple(sorted(self.dims.items())),
                     self.disabled_passes, self.tuning, self.tuning_budget_s, self.timing_cache,
                     tuple(sorted(self.layer_precision.items())), self.layout))
