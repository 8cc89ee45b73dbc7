"""The threshold rule grammar (``--threshold``): :class:`ThresholdRule` and :func:`parse_threshold_rule`.

Plain text parsing without numpy, so the run specification (:mod:`imbvision.spec`) checks a rule
at start-up; :mod:`imbvision.evaluation.threshold` applies rules to scores.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

__all__ = ["ThresholdRule", "RuleKind", "VALID_RULES", "parse_threshold_rule"]

RuleKind = Literal["max-f1", "fbeta", "recall", "precision", "fixed", "fpr"]

VALID_RULES = ("max-f1 | fbeta:BETA | recall>=R | precision>=P | fixed:T | fpr<=A "
               "(e.g. recall>=0.95, fixed:0.5, fpr<=0.01)")

@dataclass(frozen=True)
class ThresholdRule:
    """How to pick a threshold: ``kind`` plus its ``value`` (None for max-f1)."""

    kind: RuleKind
    value: float | None = None

    def __str__(self) -> str:
        v = "" if self.value is None else f"{self.value:g}"
        return {
            "max-f1": "max-f1",
            "fbeta": f"fbeta:{v}",
            "recall": f"recall>={v}",
            "precision": f"precision>={v}",
            "fixed": f"fixed:{v}",
            "fpr": f"fpr<={v}",
        }[self.kind]

    @property
    def needs_positives(self) -> bool:
        """Whether the rule needs validation positives (every rule but ``fpr<=`` and ``fixed:``)."""
        return self.kind not in ("fpr", "fixed")


_NUM = r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_PATTERNS: tuple[tuple[str, RuleKind], ...] = (
    (r"max[-_]?f1", "max-f1"),
    (rf"f[-_]?beta\s*[:=]\s*{_NUM}", "fbeta"),
    (rf"recall\s*>=\s*{_NUM}", "recall"),
    (rf"precision\s*>=\s*{_NUM}", "precision"),
    (rf"fixed\s*[:=]\s*{_NUM}", "fixed"),
    (rf"(?:fpr|false[-_]?alarm[-_]?rate)\s*<=\s*{_NUM}", "fpr"),
)


def parse_threshold_rule(text: str | ThresholdRule) -> ThresholdRule:
    """Parse ``max-f1 | fbeta:2 | recall>=0.95 | precision>=0.9 | fixed:0.5``.

    Raises
    ------
    ConfigError
        Unknown form or a value out of range; the message lists the valid forms.
    """
    if isinstance(text, ThresholdRule):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"threshold rule must be text; got {text!r}. Valid: {VALID_RULES}")
    t = text.strip().lower()
    for pattern, kind in _PATTERNS:
        m = re.fullmatch(pattern, t)
        if not m:
            continue
        if kind == "max-f1":
            return ThresholdRule("max-f1")
        v = float(m.group(1))
        if kind in ("recall", "precision") and not (0.0 < v <= 1.0):
            raise ConfigError(
                f"threshold rule {text!r}: {kind} target must be in (0, 1]; got {v:g}"
            )
        if kind == "fbeta" and not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"threshold rule {text!r}: beta must be > 0; got {v:g}")
        if kind == "fpr" and not (0.0 < v < 0.5):
            raise ConfigError(
                f"threshold rule {text!r}: a false-alarm rate must be in (0, 0.5), e.g. fpr<=0.01; got {v:g}"
            )
        if kind == "fixed" and not (0.0 < v <= 1.0):  # 0 would flag every image
            raise ConfigError(
                f"threshold rule {text!r}: a fixed threshold on probabilities must be in (0, 1]; "
                f"got {v:g}"
            )
        return ThresholdRule(kind, v)
    raise ConfigError(f"unknown threshold rule {text!r}; valid: {VALID_RULES}")
