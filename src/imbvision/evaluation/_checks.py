"""Validation of label and score arrays and thresholds, shared by every metric module."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["check_binary_scores"]

_SPLIT_HINT = (
    "use a larger evaluation split, fewer cross-validation folds, or a stratified split "
    "so every split holds both classes"
)


def check_binary_scores(
    y: Any, score: Any, *, require_both: bool = True, what: str = "scores"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and scores; return ``(y as int8 0/1, score as float64)``.

    Raises
    ------
    DataError
        Empty input, lengths that differ, labels other than 0/1, NaN or infinite
        scores, or (with ``require_both``) a single class.
    """
    y_arr = np.asarray(y)
    s_arr = np.asarray(score)
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr[:, 0]
    if s_arr.ndim == 2 and s_arr.shape[1] == 1:
        s_arr = s_arr[:, 0]
    if y_arr.ndim != 1 or s_arr.ndim != 1:
        hint = (
            " (for predict_proba output pass column 1, the positive class: proba[:, 1])"
            if s_arr.ndim == 2 and s_arr.shape[-1] == 2
            else ""
        )
        raise DataError(
            f"labels and {what} must be 1-D arrays; got shapes {y_arr.shape} and "
            f"{s_arr.shape}{hint}"
        )
    if len(y_arr) != len(s_arr):
        raise DataError(
            f"labels and {what} have different lengths ({len(y_arr)} vs {len(s_arr)}); "
            "pass one score per labelled sample"
        )
    if len(y_arr) == 0:
        raise DataError(f"no samples: labels and {what} are empty")
    if y_arr.dtype == bool:
        y_arr = y_arr.astype(np.int8)
    try:
        y_num = y_arr.astype(np.float64)
    except (TypeError, ValueError):
        bad = sorted({str(v) for v in y_arr.tolist()})[:5]
        raise DataError(f"labels must be 0 (negative) or 1 (positive); got {bad}") from None
    bad_mask = (y_num != 0) & (y_num != 1)
    if bad_mask.any():
        bad = sorted(set(y_arr[bad_mask].tolist()))[:5]
        raise DataError(
            f"labels must be 0 (negative) or 1 (positive); got {bad}. "
            "Map your classes to 0/1 with the rare class as 1"
        )
    try:
        s_num = s_arr.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numbers; got dtype {s_arr.dtype}") from None
    finite = np.isfinite(s_num)
    if not finite.all():
        idx = np.flatnonzero(~finite)
        raise DataError(
            f"{what} contain {len(idx)} NaN or infinite value(s) "
            f"(first at index {int(idx[0])}: {s_num[idx[0]]!r}); "
            "every score must be a finite number — check the model output for overflow"
        )
    y_int = y_num.astype(np.int8)
    if require_both:
        n_pos = int(y_int.sum())
        if n_pos == 0 or n_pos == len(y_int):
            only = "0 (negative)" if n_pos == 0 else "1 (positive)"
            raise DataError(
                f"labels hold a single class: all {len(y_int)} samples are {only}. "
                "Average precision, ROC-AUC and recall are undefined without both classes; "
                + _SPLIT_HINT
            )
    return y_int, s_num


def _check_threshold(threshold: Any) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number; got {threshold!r}") from None
    if not math.isfinite(t):
        raise ConfigError(f"threshold must be finite; got {threshold!r}")
    return t
