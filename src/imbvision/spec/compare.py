"""What only ``compare`` takes beside the run specification: :class:`CompareConfig`.

:class:`CompareConfig` is the run specification (:class:`~imbvision.spec.RunSpec`) plus what only
``compare`` takes: the strategies, the seeds or folds, the executor and the declared primary
comparison. ``imbvision compare``'s options are generated from these fields; its ``config.json``
(the fingerprint its cells are keyed on) is :meth:`~imbvision.spec.RunSpec.fingerprint` plus the
comparison's own keys.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from ..errors import ConfigError
from ._declared import _field
from .run import RunSpec

__all__ = ["CompareConfig", "BASELINE", "EXECUTORS"]

#: ``--executor``: threads in this process, or Ray (a private one, or a cluster with ``--ray-address``).
EXECUTORS = ("local", "ray")
#: The plain baseline every remedy is tested against (``normality`` when no training positive exists).
BASELINE = "ce"


class CompareConfig(RunSpec):
    """Everything :func:`~imbvision.workflows.compare.run_compare` needs (one declared field each).

    Raises
    ------
    ConfigError
        On construction, for the first invalid value: the option, the value and what is valid.
    """

    strategies: Union[str, list[str], tuple[str, ...]] = _field(
        "default", "default | all | comma-separated list (each may use '+')", valid="default, all or strategy names",
        flag=("--strategies",))
    seeds: int = _field(10, "Seeds (each a different split; the split is the unit of evidence, so fewer than 6 "
                        "cannot show a difference without a normality assumption)", valid="use an integer, 1 or more", ge=1,
                        le=100_000)
    folds: Optional[int] = _field(None, "k-fold per seed instead of one train/val/test split",
                                  valid="use an integer, 2 or more", ge=2, le=1000)
    primary: Optional[str] = _field(
        None, "The strategy you came to test, declared before the run: tested at the full 5% level; the others are "
        "then tested (Holm) only if it is beyond noise. Fixed for the folder once set", valid="a compared strategy",
        flag=("--primary",))
    mode: Literal["head"] = _field(
        "head", "head (strategies on cached embeddings)",
        valid="compare runs head mode (strategies on cached embeddings); fine-tune single candidates with "
        "`imbvision train --mode finetune`")
    out: str = _field("runs/compare", "Output folder (resumable: rerun to continue)", valid="a folder", cli=False,
                      min_length=1)
    jobs: int = _field(1, "Cells in parallel: threads locally; with --executor ray the CPUs of the private Ray "
                       "(ignored with --ray-address)", valid="use an integer in 1..1024", ge=1, le=1024)
    executor: Literal[EXECUTORS] = _field("local", "local or ray (pip install imbvision[ray])",  # type: ignore[valid-type]
                                          valid=f"valid: {', '.join(EXECUTORS)}")
    ray_address: Optional[str] = _field(None, "An existing Ray cluster, e.g. HEAD:6379", valid="HOST:PORT",
                                        flag=("--ray-address",))
    n_boot: int = _field(2000, "Bootstrap resamples of the intervals", valid="use an integer in 0..1000000", ge=0,
                         le=1_000_000, cli=False)
    progress: bool = _field(True, "Progress bars (a terminal) or progress lines (a log)", valid="true or false",
                            cli=False)

    @classmethod
    def make(cls, cfg: "CompareConfig | str | None" = None, **overrides: Any) -> "CompareConfig":
        """``cfg`` (a config, the data source, or ``None``) with keyword ``overrides``; unknown keys are refused."""
        unknown = sorted(set(overrides) - cls.field_names())
        if unknown:
            raise ConfigError(f"unknown compare options {unknown}; valid: {sorted(cls.field_names())}")
        base = cfg.model_dump() if isinstance(cfg, CompareConfig) else ({"data": cfg} if cfg is not None else {})
        return cls(**{**base, **overrides})
