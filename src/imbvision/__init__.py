"""imbvision: find a rare object in images.

Every class-imbalance remedy as a named, composable strategy, compared on
your own data with honest statistics.

>>> import imbvision                                                     # doctest: +SKIP
>>> run = imbvision.train(data="demo", strategy="copy-paste", out="runs/cp")
>>> imbvision.Model.load("runs/cp").predict_proba(["scan.png"])
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "train", "compare", "Model", "load_source"]


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import imbvision` and the CLI's start-up fast.
    if name == "train":
        from .workflows.train import train
        return train
    if name == "compare":
        from .workflows.compare import run_compare
        return run_compare
    if name == "Model":
        from .model import Model
        return Model
    if name == "load_source":
        from .data.sources import load_source
        return load_source
    raise AttributeError(f"module 'imbvision' has no attribute {name!r}")
