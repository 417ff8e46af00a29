"""THE build pipeline: the ordered list of graph rewrites, in one place.

Nothing registers itself on import; to add a pass, write ``passes/<name>.py`` with ``NAME`` and
``run(graph, config, report)`` and put it in :data:`PIPELINE` where it belongs. Order matters:

1. ``bind_shapes``        fix the input shapes the config gives, re-infer every type
2. ``fold_qdq``           explicit quantization: Q -> DQ activation pairs removed (their scales to
                          ``graph.quant_scales``), DQ of int8 weights folded to float constants (their
                          scales to ``graph.weight_scales``); before fold_constants, which would
                          evaluate the weight DQs and lose their scales
3. ``fold_constants``     evaluate nodes whose inputs are all constant (weights built by
                          ConstantOfShape, Shape/Gather/Concat/Reshape chains on static shapes, Casts)
4. ``remove_identity``    drop Identity and Dropout (inference)
5. ``fold_batchnorm``     BatchNormalization into the preceding Conv/ConvTranspose/Gemm weights; a
                          lone BN becomes a per-channel Mul + Add
6. ``fold_affine``        per-channel Mul/Add by constants after a Conv/Gemm into its weights/bias
7. ``fuse_epilogue``      bias, scale/shift, activations and a residual add into the producing
                          conv/gemm/pool group
8. ``fuse_elementwise``   the remaining element-wise chains into one group each
9. ``merge_parallel``     convs with equal attributes that read the same tensor into one wider conv
10. ``eliminate_concat``  producers write straight into their slice of the concat buffer
11. ``dead_code``         remove nodes nothing reads
12. ``space_to_depth``    a strided conv on a few-channel network input (the RGB stem) becomes a stride-1
                          conv with a smaller kernel on its SpaceToDepth (channels-last builds: 16
                          channels, whole tensor-core chunks); before precision, which may make it int8
13. ``precision``         what each kernel computes in (fp32 / tf32 / fp16, layer_precision overrides)
                          and which tensors become float16; after the fusions, so that it sees the
                          final kernels
14. ``pad_channels``      an fp16 conv reading a few-channel network input reads it zero-padded to 8
                          channels (float16, channels-last: 16-byte chunks for the tensor-core copies)
"""

from __future__ import annotations

from ..config import BuildConfig
from ..ir import Graph
from ..report import BuildReport
from . import (bind_shapes, dead_code, eliminate_concat, fold_affine, fold_batchnorm, fold_constants, fold_qdq,
               fuse_elementwise, fuse_epilogue, merge_parallel, pad_channels, precision, remove_identity,
               space_to_depth)

PIPELINE = (
    bind_shapes,
    fold_qdq,
    fold_constants,
    remove_identity,
    dead_code,
    fold_batchnorm,
    fold_affine,
    fuse_epilogue,
    fuse_elementwise,
    merge_parallel,
    eliminate_concat,
    dead_code,
    space_to_depth,
    precision,
    pad_channels,
)


def optimize(graph: Graph, config: BuildConfig | None = None) -> BuildReport:
    """Run the pipeline on ``graph`` in place; return the build report."""
    config = config or BuildConfig()
    report = BuildReport(nodes_before=len(graph.nodes))
    precision.check_names(graph, config)
    for p in PIPELINE:
        if p.NAME not in config.disabled_passes:
            p.run(graph, config, report)
    graph.verify()
    report.record_kernels(graph)
    return report


__all__ = ["PIPELINE", "optimize"]
