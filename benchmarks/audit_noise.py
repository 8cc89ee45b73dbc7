"""Benchmark: does the audit find injected label noise on Magnetic-tile?

Protocol (issue 6). Read ``../shared/data/magnetic-tile`` in place, embed it
once (EfficientNet-Lite0, cached in ``benchmarks/results/cache``), then for
each seed flip the labels of 10% of the positives (defects now labelled
"free": missed objects) and as many negatives (free tiles now labelled
"defect"), run :func:`imbvision.audit.run_audit` on the noisy labels and,
among the top 2·F suspects (F = total flips), measure the share of flipped
positives caught (target >= 60%); also the precision and recall of the
audit's flags (the rows of suspects.csv) for both directions.

Usage::

    .venv/bin/python benchmarks/audit_noise.py [--tiles 2] [--features global|tiles|both] [--k 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imbvision._io import write_json  # noqa: E402
from imbvision.audit import run_audit  # noqa: E402
from imbvision.backbones import embed_dataset  # noqa: E402
from imbvision.data.records import Dataset, ImageRecord  # noqa: E402
from imbvision.data.sources import load_source  # noqa: E402

TARGET = 0.60


def flip(dataset: Dataset, rate: float, seed: int) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Flip ``rate`` of the positives and as many negatives (masks dropped); return the noisy set and the flips."""
    y = dataset.labels
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m = int(round(rate * pos.size))
    fp = np.sort(rng.choice(pos, m, replace=False))
    fn = np.sort(rng.choice(neg, m, replace=False))
    flipped = set(fp.tolist()) | set(fn.tolist())
    # masks are left out: a flipped defect would otherwise be caught by its mask (the
    # audit's label/mask consistency check) and the benchmark would not measure the embeddings
    recs = [ImageRecord(r.path, 1 - r.label if i in flipped else r.label, None, r.group, r.class_name)
            for i, r in enumerate(dataset.records)]
    return Dataset(recs, dataset.source + f" (noisy, seed {seed})", dataset.positive_name,
                   dataset.negative_name), fp, fn


def _pr(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int((flagged & truth).sum())
    return {"flagged": int(flagged.sum()), "true": int(truth.sum()), "hits": tp,
            "precision": tp / flagged.sum() if flagged.sum() else 0.0,
            "recall": tp / truth.sum() if truth.sum() else 0.0}


def evaluate(res, noisy: Dataset, fp: np.ndarray, fn: np.ndarray) -> dict:
    n = len(noisy)
    F = fp.size + fn.size
    y = noisy.labels
    is_fp = np.zeros(n, bool)
    is_fp[fp] = True  # true positives now labelled negative
    is_fn = np.zeros(n, bool)
    is_fn[fn] = True  # true negatives now labelled positive
    # top 2F of suspects.csv (the list a user reviews) and of the full score ranking
    listed = np.array([s["_index"] for s in res.suspects], dtype=np.int64)
    top_list = np.zeros(n, bool)
    top_list[listed[: 2 * F]] = True
    top_rank = np.zeros(n, bool)
    top_rank[res.ranking()[: 2 * F]] = True
    # "flags": images the audit doubts (suggested relabel or review); isolation-only
    # or weak-score rows (suggested keep) are listed for context but not counted
    flags = np.zeros(n, bool)
    relabel = np.zeros(n, bool)
    for s in res.suspects:
        flags[s["_index"]] = s["suggested_action"] in ("relabel", "review")
        relabel[s["_index"]] = s["suggested_action"] == "relabel"
    cl = res.cl_flags
    return {
        "flips": F,
        "suspects_listed": int(listed.size),
        "top2F_suspects": {
            "flipped_positive_caught": float(is_fp[top_list].sum() / fp.size),
            "flipped_negative_caught": float(is_fn[top_list].sum() / fn.size),
            "precision": float((is_fp | is_fn)[top_list].sum() / max(top_list.sum(), 1)),
        },
        "top2F_score_ranking": {
            "flipped_positive_caught": float(is_fp[top_rank].sum() / fp.size),
            "flipped_negative_caught": float(is_fn[top_rank].sum() / fn.size),
            "precision": float((is_fp | is_fn)[top_rank].sum() / 2 / F),
        },
        "flags_labelled_negative_looks_positive": _pr(flags & (y == 0), is_fp),
        "flags_labelled_positive_looks_negative": _pr(flags & (y == 1), is_fn),
        "relabel_labelled_negative_looks_positive": _pr(relabel & (y == 0), is_fp),
        "relabel_labelled_positive_looks_negative": _pr(relabel & (y == 1), is_fn),
        "cl_flags_labelled_negative_looks_positive": _pr(cl & (y == 0), is_fp),
        "cl_flags_labelled_positive_looks_negative": _pr(cl & (y == 1), is_fn),
        "cv_ap_noisy": res.summary["hardness"].get("cv_average_precision"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "magnetic-tile"))
    ap.add_argument("--tiles", type=int, default=0, help="embed with an N x N tile grid too (0 = whole image)")
    ap.add_argument("--features", default="global", choices=["global", "tiles", "both"])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--C", default="auto", type=lambda v: v if v == "auto" else float(v))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rate", type=float, default=0.10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "audit_noise.json"))
    ap.add_argument("--label", default="", help="name of this attempt in the output")
    args = ap.parse_args(argv)

    ds = load_source(f"magnetic-tile:{args.data}")
    t0 = time.perf_counter()
    emb = embed_dataset(ds, tiles=args.tiles, cache_dir=ROOT / "benchmarks" / "results" / "cache", progress=True)
    X = emb.features(args.features)
    t_embed = time.perf_counter() - t0
    work = ROOT / "benchmarks" / "results" / "cache" / "audit_noise"  # git-ignored
    per_seed = {}
    for s in args.seeds:
        noisy, fp, fn = flip(ds, args.rate, s)
        t1 = time.perf_counter()
        res = run_audit(noisy, X, work / f"seed{s}", k=args.k, seed=s, C=args.C, repeats=args.repeats,
                        progress=False)
        m = evaluate(res, noisy, fp, fn)
        m["audit_seconds"] = time.perf_counter() - t1
        per_seed[str(s)] = m

    def mean(path: list[str]) -> float:
        vals = []
        for m in per_seed.values():
            v = m
            for p in path:
                v = v[p]
            vals.append(float(v))
        return float(np.mean(vals))

    keys = {
        "flipped_positive_caught_top2F": ["top2F_suspects", "flipped_positive_caught"],
        "flipped_negative_caught_top2F": ["top2F_suspects", "flipped_negative_caught"],
        "precision_top2F": ["top2F_suspects", "precision"],
        "flipped_positive_caught_top2F_ranking": ["top2F_score_ranking", "flipped_positive_caught"],
        "flags_neg_looks_pos_precision": ["flags_labelled_negative_looks_positive", "precision"],
        "flags_neg_looks_pos_recall": ["flags_labelled_negative_looks_positive", "recall"],
        "flags_pos_looks_neg_precision": ["flags_labelled_positive_looks_negative", "precision"],
        "flags_pos_looks_neg_recall": ["flags_labelled_positive_looks_negative", "recall"],
        "relabel_neg_looks_pos_precision": ["relabel_labelled_negative_looks_positive", "precision"],
        "relabel_pos_looks_neg_precision": ["relabel_labelled_positive_looks_negative", "precision"],
        "cl_neg_looks_pos_precision": ["cl_flags_labelled_negative_looks_positive", "precision"],
        "cl_neg_looks_pos_recall": ["cl_flags_labelled_negative_looks_positive", "recall"],
        "cl_pos_looks_neg_precision": ["cl_flags_labelled_positive_looks_negative", "precision"],
        "cl_pos_looks_neg_recall": ["cl_flags_labelled_positive_looks_negative", "recall"],
        "cv_ap_noisy": ["cv_ap_noisy"],
    }
    mean_ = {name: mean(p) for name, p in keys.items()}
    result = {
        "attempt": args.label or f"features={args.features} tiles={args.tiles} k={args.k} C={args.C} repeats={args.repeats}",
        "protocol": (f"magnetic-tile, {len(ds)} images ({int(ds.labels.sum())} defects); flip {args.rate:.0%} of "
                     "positives and as many negatives per seed; measure among the top 2F suspects (F = flips)"),
        "target": {"flipped_positive_caught_top2F": TARGET},
        "target_met": mean_["flipped_positive_caught_top2F"] >= TARGET,
        "settings": {"tiles": args.tiles, "features": args.features, "k": args.k, "C": args.C,
                     "repeats": args.repeats, "seeds": args.seeds, "rate": args.rate,
                     "embedding": emb.settings, "embed_seconds": t_embed, "feature_dims": int(X.shape[1])},
        "per_seed": per_seed,
        "mean": mean_,
    }
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    attempts = [a for a in previous.get("attempts", []) if a.get("attempt") != result["attempt"]]
    attempts.append({k: result[k] for k in ("attempt", "settings", "mean", "target_met")})
    write_json(out, {**result, "attempts": attempts})

    print(f"\n{result['attempt']}  ({X.shape[1]} dims, embed {t_embed:.0f}s)")
    print(f"{'seed':>5} {'F':>4} {'listed':>6} {'pos caught':>10} {'neg caught':>10} {'prec@2F':>8} "
          f"{'doubt P/R neg→pos':>17} {'doubt P/R pos→neg':>17} {'AP':>6}")
    for s, m in per_seed.items():
        t = m["top2F_suspects"]
        a, b = m["flags_labelled_negative_looks_positive"], m["flags_labelled_positive_looks_negative"]
        print(f"{s:>5} {m['flips']:>4} {m['suspects_listed']:>6} {t['flipped_positive_caught']:>10.2f} "
              f"{t['flipped_negative_caught']:>10.2f} {t['precision']:>8.2f} "
              f"{a['precision']:>8.2f}/{a['recall']:<8.2f} {b['precision']:>8.2f}/{b['recall']:<8.2f} "
              f"{m['cv_ap_noisy']:>6.3f}")
    mm = mean_
    print(f"{'mean':>5} {'':>4} {'':>6} {mm['flipped_positive_caught_top2F']:>10.2f} "
          f"{mm['flipped_negative_caught_top2F']:>10.2f} {mm['precision_top2F']:>8.2f} "
          f"{mm['flags_neg_looks_pos_precision']:>8.2f}/{mm['flags_neg_looks_pos_recall']:<8.2f} "
          f"{mm['flags_pos_looks_neg_precision']:>8.2f}/{mm['flags_pos_looks_neg_recall']:<8.2f} "
          f"{mm['cv_ap_noisy']:>6.3f}")
    print(f"target: >= {TARGET:.0%} of flipped positives among the top 2F suspects -> "
          f"{'MET' if result['target_met'] else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
