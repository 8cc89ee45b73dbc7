"""Null simulation of the compare statistics: family-wise false "beyond noise" rate, coverage and power
per design (random splits, repeated stratified k-fold) and multiplicity rule (Holm over all, a declared
primary comparison).

Synthetic score draws (no training; see ``imbvision.experiments.simulation``), under two models of the
training-set effect: ``independent`` (each split's fitted model varies independently, the model of
earlier rounds) and ``overlap`` (part of that variation is carried by the training items, so splits whose
training sets overlap give correlated models, as real ones do). Families: four strategies that are the
baseline's twins (true ΔAP 0), and one real effect among three twins. Writes
``benchmarks/results/null_simulation.json``.

    .venv/bin/python benchmarks/null_simulation.py [--reps 1000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from _common import save

MODELS = {"independent": {}, "overlap": {"train_sd": 0.25, "split_sd": 0.1}}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1000)
    args = ap.parse_args()

    from dataclasses import replace

    from imbvision.experiments.simulation import SimSettings, simulate_comparisons, true_delta_ap

    t0, c0 = time.perf_counter(), _cpu()
    null4 = {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}
    fam = {"better": 0.6, "t1": 0.0, "t2": 0.0, "t3": 0.0}
    rows = []
    designs = [("random", 3, None), ("random", 5, None), ("random", 10, None), ("kfold", 10, 5), ("kfold", 10, 2)]
    for model, kw in MODELS.items():
        st = replace(SimSettings(), **kw)
        effect = true_delta_ap(0.6, st, draws=20000)
        for design, k, folds in designs:
            for corrected in (True, False):
                for primary in (None, "declared"):
                    if primary and not corrected:
                        continue
                    common = dict(splits=k, reps=args.reps, settings=st, corrected=corrected, design=design,
                                  folds=folds or 5)
                    res = simulate_comparisons(null4, seed=k, primary="a" if primary else None, **common)
                    fw = float(np.mean([any(r[n]["beyond_noise"] for n in r) for r in res]))
                    eff = simulate_comparisons(fam, seed=100 + k, primary="better" if primary else None, **common)
                    cis = [r["better"]["ci"] for r in eff if r["better"]["ci"] is not None]
                    cov95 = float(np.mean([c[0] <= effect <= c[1] for c in cis]))
                    power = float(np.mean([r["better"]["beyond_noise"] for r in eff]))
                    fw_eff = float(np.mean([any(r[n]["beyond_noise"] for n in ("t1", "t2", "t3")) for r in eff]))
                    row = {"model": model, "design": design if design == "random" else f"{k // folds}x{folds}-fold",
                           "splits": k, "n_test_over_n_train": (st.n_test if design == "random" else st.n / folds)
                           / (st.n - (st.n_test if design == "random" else st.n / folds)),
                           "test": "corrected (Nadeau & Bengio; Bouckaert & Frank for k-fold)" if corrected
                           else "naive paired t (1/K)",
                           "multiplicity": "primary declared, then Holm" if primary else "Holm over all",
                           "family_wise_false_beyond_noise_4_twins": fw,
                           "false_beyond_noise_twins_beside_effect": fw_eff,
                           "effect_95ci_coverage": cov95, "power_for_effect": power}
                    rows.append(row)
                    print(f"{model:11s} {row['design']:10s} K={k:2d} {row['test'][:9]:9s} {row['multiplicity'][:7]:7s} "
                          f"FWER {fw:.3f}  cover {cov95:.3f}  power {power:.2f}", flush=True)
    save("null_simulation", {
        "what": "simulated compare runs: 4 strategies differing from the baseline only by noise (family-wise false "
                "'beyond noise' rate), and one real effect among 3 twins (power, coverage); per-split ΔAP tested "
                "as imbvision compare does, per design, test and multiplicity rule",
        "settings": {"base": SimSettings().__dict__, "models": MODELS, "reps": args.reps, "effect_shift": 0.6,
                     "true_delta_ap_of_effect": {m: true_delta_ap(0.6, replace(SimSettings(), **kw), draws=20000)
                                                  for m, kw in MODELS.items()}},
        "targets": {"family_wise_false_beyond_noise": "<= 0.05, close to it rather than far below",
                    "coverage": ">= 0.93"},
        "rows": rows, "wall_seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0,
    })


if __name__ == "__main__":
    main()
