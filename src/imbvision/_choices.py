"""The value sets of the pipeline's choice settings, as plain data (no imports).

Declared once here, below everything, so the run specification (:mod:`imbvision.spec`), the code
that applies a choice (:mod:`imbvision.backbones.patches`, :mod:`imbvision.data.split_file`, …) and
the command line at start-up read the same tuple.
"""

from __future__ import annotations

__all__ = ["TILES", "RESIZE_MODES", "FEATURES", "CALIBRATIONS", "SPLIT_RULES", "PATCH_LAYERS",
           "DEFAULT_PATCH_LAYERS", "LEGACY_PATCH_LAYERS", "ACCELERATORS", "PRECISIONS", "DIST_STRATEGIES"]

#: ``--tiles``: 0 (whole image only) or an N×N grid of tiles, N in 2..6.
TILES = (0, 2, 3, 4, 5, 6)
#: ``--resize``: how an image meets the square canvas (:mod:`imbvision.backbones.patch_geometry`).
RESIZE_MODES = ("stretch", "keep-aspect")
#: ``--features``: which head-mode embedding (``auto``: ``both`` with tiles, else ``global``).
FEATURES = ("auto", "global", "tiles", "both")
#: ``--calibration``: fitted on validation (:mod:`imbvision.evaluation.calibration`).
CALIBRATIONS = ("none", "intercept", "platt", "isotonic")
#: ``--split``: ``random`` (drawn per seed) or ``official`` (the benchmark layout's own train/test).
SPLIT_RULES = ("random", "official")
#: ``--patch-layers``: pairs of backbone strides whose blocks make a patch descriptor (finer grid first).
PATCH_LAYERS = {"s16+s32": (16, 32), "s8+s16": (8, 16)}
DEFAULT_PATCH_LAYERS = "s16+s32"
#: Bundles and run folders made before ``--patch-layers`` existed used this pair.
LEGACY_PATCH_LAYERS = "s8+s16"
#: Fine-tuning on Lightning Fabric: the accelerators, precisions and strategies imbvision supports (a subset of
#: Fabric's registries; tests/test_spec.py checks they stay valid there).
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
DIST_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true", "fsdp", "dp")
