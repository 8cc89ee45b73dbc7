"""The resolved configuration of a training run, written into every run folder (``config.json``).

Declared in :mod:`imbvision.spec` (one field per setting, read by the command line at start-up
without importing this package); re-exported here where the training code reads it.
"""

from __future__ import annotations

from ..spec import MODES, RunSpec, TrainConfig

__all__ = ["TrainConfig", "PipelineOptions", "MODES"]

#: The settings ``train`` and ``compare`` share (kept under this name for library users).
PipelineOptions = RunSpec
