"""Build-time autotuning: time every valid tactic of each kernel on the GPU and keep the fastest.

``tune(engine, config)`` (called by the engine build when ``config.tuning`` is not "none"):

1. per kernel whose template declares a tactic space (``TACTICS`` and ``valid`` beside the template),
   the candidates: "full" takes every valid tactic, "fast" the heuristic's choice and a few
   neighbours; kernels found in the timing cache were generated with the cached tactic when the
   engine was built (``cached_tactic``) and are neither recompiled nor timed;
2. all candidates of all kernels are generated and compiled in one parallel batch (a candidate that
   fails to compile scores infinite);
3. the network runs kernel by kernel on random inputs, so each kernel's inputs are real tensors: every
   candidate runs once, its output is checked against the reference interpreter (on the first batch
   item for batched tensors; a mismatch scores infinite), then it is timed with CUDA events (median of
   several launches); the fastest replaces the kernel, and runs to produce its outputs.
"""

from .cache import TimingCache, signature
from .tuner import cached_tactic, tune

__all__ = ["tune", "cached_tactic", "TimingCache", "signature"]
