"""The configuration of a ``compare`` run, written into its ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..training.config import PipelineOptions

__all__ = ["CompareConfig", "BASELINE"]

EXECUTORS = ("local", "ray")
#: The plain baseline every remedy is tested against (``normality`` when no training positive exists).
BASELINE = "ce"


@dataclass
class CompareConfig(PipelineOptions):
    """Everything :func:`~imbvision.experiments.compare.run_compare` needs; attributes mirror
    ``imbvision compare``'s options (the ones shared with ``train`` are :class:`PipelineOptions`)."""

    strategies: str | Sequence[str] = "default"
    seeds: int = 10
    folds: int | None = None
    mode: str = "head"
    out: str | Path = "runs/compare"
    jobs: int = 1
    executor: str = "local"
    ray_address: str | None = None
    n_boot: int = 2000
    progress: bool = True
    #: A strategy declared before the run as the primary question: tested at the full 5% level, the
    #: others (Holm) only once it is beyond noise (fixed-sequence procedure; ``None``: Holm over all).
    primary: str | None = None

    def __post_init__(self) -> None:
        if self.mode != "head":
            raise ConfigError(
                "compare runs head mode (strategies on cached embeddings); fine-tune single candidates with "
                "`imbvision train --mode finetune`"
            )
        if self.seeds < 1:
            raise ConfigError(f"--seeds {self.seeds} invalid; use 1 or more")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor {self.executor!r} invalid; valid: {', '.join(EXECUTORS)}")
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def make(cls, cfg: "CompareConfig | str | None" = None, **overrides: Any) -> "CompareConfig":
        """``cfg`` (a config, the data source, or ``None``) with keyword ``overrides``; unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown compare options {unknown}; valid: {sorted(names)}")
        base = cfg.to_dict() if isinstance(cfg, CompareConfig) else ({"data": cfg} if cfg is not None else {})
        return cls(**{**base, **overrides})
