"""How many test positives does a bootstrap interval of AP need? (issue 12: no zero-width intervals)

Binormal scores (negatives N(0, 1), positives N(1.5, 1)) at 10% prevalence;
for each count of test positives, ``reps`` test sets, each with the stratified
95% percentile bootstrap interval that ``evaluate_scores`` reports. Coverage
is of the population AP (a 2-million-image test set) and of the expected AP at
that test size; zero-width intervals are counted. The threshold
``MIN_POSITIVES_FOR_CI`` in ``evaluation/metrics.py`` is chosen from this
table. Writes ``benchmarks/results/ci_min_positives.json``.

    .venv/bin/python benchmarks/ci_min_positives.py [--reps 400]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--n-boot", type=int, default=500)
    args = ap.parse_args()

    from sklearn.metrics import average_precision_score

    from imbvision.evaluation import bootstrap_ci
    from imbvision.evaluation.metrics import MIN_POSITIVES_FOR_CI, _ap_rows

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    sep, rate = 1.5, 0.1

    def draw(n_pos: int, size: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
        n = int(round(n_pos / rate))
        y = np.zeros(size + (n,), dtype=np.int64)
        y[..., :n_pos] = 1
        return y, rng.standard_normal(size + (n,)) + sep * y

    yb, sb = draw(200_000)
    ap_pop = float(average_precision_score(yb, sb))
    rows = []
    for n_pos in (1, 2, 3, 4, 5, 7, 10, 15, 20, 40):
        Y, S = draw(n_pos, (4000,))
        ap_exp = float(np.mean(_ap_rows(Y, S)))
        cover_pop = cover_exp = zero = 0
        for _ in range(args.reps):
            y, s = draw(n_pos)
            _, lo, hi = bootstrap_ci(y, s, "ap", n_boot=args.n_boot, seed=int(rng.integers(1 << 31)))
            cover_pop += lo <= ap_pop <= hi
            cover_exp += lo <= ap_exp <= hi
            zero += hi - lo < 1e-12
        rows.append({"test_positives": n_pos, "coverage_population_ap": cover_pop / args.reps,
                     "coverage_expected_ap_at_this_size": cover_exp / args.reps,
                     "zero_width_share": zero / args.reps, "expected_ap_at_this_size": ap_exp,
                     "interval_shown": n_pos >= MIN_POSITIVES_FOR_CI})
        print(rows[-1])
    save("ci_min_positives", {"population_ap": ap_pop, "nominal": 0.95, "reps": args.reps, "n_boot": args.n_boot,
                              "min_positives_for_ci": MIN_POSITIVES_FOR_CI, "rows": rows,
                              "wall_seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
