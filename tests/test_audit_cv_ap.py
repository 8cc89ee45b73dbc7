"""Issue 12 §7: the audit's cross-validated AP is one number, explained, and agrees with its own grid."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from imbvision.audit._signals import oof_probabilities


@pytest.mark.parametrize("repeats", [1, 2, 3])
def test_cv_ap_is_the_mean_of_the_repeats_and_repeat_one_is_the_grid_row(repeats: int) -> None:
    rng = np.random.default_rng(0)
    y = np.array([1] * 20 + [0] * 180)
    X = rng.normal(size=(200, 12))
    X[:, 0] += y * 1.2  # hard: averaging repeats (an ensemble) scores higher than any one head
    oof = oof_probabilities(X, y, folds=5, seed=0, C="auto", repeats=repeats)
    assert len(oof.ap_repeats) == repeats
    assert oof.ap == pytest.approx(np.mean(oof.ap_repeats), abs=1e-12)
    assert oof.ap_repeats[0] == pytest.approx(oof.C_grid[f"{oof.C:g}"]["ap"], abs=1e-12)
    assert min(oof.ap_repeats) - 1e-12 <= oof.ap <= max(oof.ap_repeats) + 1e-12
    ensemble = average_precision_score(y, oof.p1)  # the averaged probabilities are not what is reported
    if repeats == 1:
        assert ensemble == pytest.approx(oof.ap, abs=1e-12)
