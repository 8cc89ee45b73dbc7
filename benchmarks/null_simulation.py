"""Null simulation of the compare statistics (issue 12): false "beyond noise" rate and interval coverage.

Synthetic score draws (no training; see ``imbvision.experiments.simulation``):
four strategies that are the baseline's twins (true ΔAP 0), then a family
with one real effect. For K = 3, 5 and 10 splits it reports the family-wise
rate of any twin called "beyond noise" (target ≤ 0.05) and the coverage of
the intervals, for the corrected resampled t-test that compare uses and, for
contrast, the naive paired t-test over splits (variance 1/K). Writes
``benchmarks/results/null_simulation.json``.

    .venv/bin/python benchmarks/null_simulation.py [--reps 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1000)
    args = ap.parse_args()

    from imbvision.experiments.simulation import SimSettings, simulate_comparisons, true_delta_ap

    t0 = time.perf_counter()
    st = SimSettings()
    null4 = {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}
    effect = true_delta_ap(0.6, st, draws=20000)
    rows = []
    for k in (3, 5, 10):
        for corrected in (True, False):
            res = simulate_comparisons(null4, splits=k, reps=args.reps, settings=st, corrected=corrected, seed=k)
            fw = float(np.mean([any(r[n]["beyond_noise"] for n in r) for r in res]))
            cov = float(np.mean([r[n]["decision_ci"][0] <= 0 <= r[n]["decision_ci"][1] for r in res for n in r]))
            eff = simulate_comparisons({"twin": 0.0, "better": 0.6}, splits=k, reps=args.reps, settings=st,
                                       corrected=corrected, seed=100 + k)
            cov95 = float(np.mean([r["better"]["ci"][0] <= effect <= r["better"]["ci"][1] for r in eff]))
            covd = float(np.mean([r["better"]["decision_ci"][0] <= effect <= r["better"]["decision_ci"][1]
                                  for r in eff]))
            power = float(np.mean([r["better"]["beyond_noise"] for r in eff]))
            rows.append({"splits": k, "test": "corrected (Nadeau & Bengio)" if corrected else "naive paired t (1/K)",
                         "family_wise_false_beyond_noise_4_twins": fw, "null_interval_coverage": cov,
                         "effect_95ci_coverage": cov95, "effect_decision_ci_coverage": covd,
                         "power_for_effect": power})
            print(f"K={k:2d} {rows[-1]['test']:28s} FWER {fw:.3f}  null cover {cov:.3f}  "
                  f"effect cover {cov95:.3f}/{covd:.3f}  power {power:.2f}")
    save("null_simulation", {
        "what": "simulated compare runs, strategies differing from the baseline only by noise (4 twins, Holm over 4) "
                "and a family with one real effect; per-split ΔAP tested as imbvision compare does",
        "settings": {**st.__dict__, "reps": args.reps, "true_delta_ap_of_effect": effect, "effect_shift": 0.6},
        "targets": {"family_wise_false_beyond_noise": "<= 0.05", "coverage": ">= 0.93"},
        "rows": rows, "wall_seconds": time.perf_counter() - t0,
    })


if __name__ == "__main__":
    main()
