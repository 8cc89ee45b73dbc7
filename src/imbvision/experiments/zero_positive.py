"""``compare`` when a training split holds no positive, and validation splits without one.

With nothing to learn the rare class from, only heads whose record says ``needs_positives=False``
can train: they are compared against the first such head at its defaults (``normality``), with the
record's ``variants`` added when nothing else of the request is left. A threshold rule or calibration
that needs validation positives is refused before any fit where a validation split has none.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..strategies.registry import compose, list_strategies

__all__ = ["zero_positive_strategies", "plan_for_positives"]


def _needs_positives(name: str) -> bool:
    """Whether the recipe's head needs training positives (its record says so)."""
    from ..training.head import choose_head

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return choose_head(compose(name)).record.needs_positives


def zero_positive_strategies(names: Sequence[str], resolve: Callable[..., list[str]]) -> tuple[list[str], str, list[str]]:
    """The strategies that can train without a positive, their baseline, and those dropped.

    The baseline is the first head whose record learns from negatives alone (``normality``) at its
    defaults; when nothing else of the request can train, the head records' ``variants`` are compared
    against it.
    """
    heads = [r for r in list_strategies("head") if not r.needs_positives]
    if not heads:
        raise ConfigError("the training split holds no positive and no registered head learns from negatives alone")
    baseline = heads[0].name
    keep = [n for n in names if not _needs_positives(n)]
    dropped = [n for n in names if n not in keep]
    if not [n for n in keep if n != baseline]:
        keep += [v for r in heads for v in (r.name, *r.variants)]
    return resolve(keep, baseline), baseline, dropped


def plan_for_positives(names: list[str], splits: Sequence[tuple[int, Any, Any]], y: np.ndarray, threshold: str,
                       calibration: str, resolve: Callable[..., list[str]], default_baseline: str
                       ) -> tuple[list[str], str]:
    """The strategies and baseline of a comparison over ``splits``, and the checks of its validation splits.

    Returns the names unchanged with ``default_baseline`` when every training split holds a positive;
    otherwise :func:`zero_positive_strategies` (``resolve(names, baseline)`` puts the baseline first),
    said in one warning.
    """
    from ..evaluation.postprocess import check_validation_labels
    from ..notices import DataWarning

    for s, f, sp in splits:  # before any fit: a rule that needs validation positives where a split has none
        check_validation_labels(y[sp.val], threshold, calibration, f"the validation split of seed {s}"
                                + (f" fold {f}" if f is not None else ""))
    if all(y[sp.train].any() for _, _, sp in splits):
        return names, default_baseline
    names, baseline, dropped = zero_positive_strategies(names, resolve)
    many = len(splits) > 1
    warnings.warn(f"the training split{'s' if many else ''} hold{'' if many else 's'} no positive, so compare ranks "
                  f"the heads that learn from negatives alone ({', '.join(names)}) against {baseline} at its defaults"
                  + (f"; left out (they need training positives): {', '.join(dropped)}" if dropped else ""),
                  DataWarning, stacklevel=3)
    return names, baseline
