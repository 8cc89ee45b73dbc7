"""Write docs/benchmarks.md from benchmarks/results/*.json, so the page and the JSON cannot drift.

    python benchmarks/make_tables.py           # rewrite docs/benchmarks.md
    python benchmarks/make_tables.py --check   # exit 1 when the page differs from what the JSON gives

Every figure on the page is read from a results file here; the prose around a table says what was
measured and how, never a number. A results file this script has no section for still appears, as a
table of its values under "Other results", so a new benchmark is on the page the day it writes JSON.
``tests/test_benchmarks_page.py`` checks that the committed page equals the generated one.

Only the standard library: the page is built without torch or imbvision.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"

Section = Callable[[dict[str, Any]], str]


# ---------------------------------------------------------------- formatting
def f(x: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, '—' for missing."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def pm(d: dict[str, Any] | None, digits: int = 3) -> str:
    """``mean ± std`` of a ``{"mean", "std"}`` dict."""
    return "—" if not d else f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def ci(v: list[float] | None, digits: int = 3, signed: bool = True) -> str:
    if not v:
        return "no interval"
    fmt = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    return f"[{fmt.format(v[0])}, {fmt.format(v[1])}]"


def table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return (v if isinstance(v, str) else f(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def quote(text: str) -> str:
    return "> " + text.strip() + "\n"


def _p_rule(x: dict[str, Any]) -> str:
    """A leaderboard row's adjusted p and the rule behind it (declared primary, after it, or Holm)."""
    p = x.get("p_holm")
    if p is None:
        return "—"
    rule = {"primary": "declared primary", "after primary": "Holm, after the primary"}.get(x.get("gate"), "Holm")
    return f"{p:.2g} ({rule})"


# ---------------------------------------------------------------- sections
def compare_mt(d: dict[str, Any]) -> str:
    out = [f"{d['what']}: {f(d['wall_s'], 0)} s wall (shared machine), **{f(d['cpu_s'], 0)} CPU-seconds**, "
           f"peak RSS {f(d['peak_rss_mb'], 0)} MB.\n\n"]
    holm = {r["strategy"]: r for r in d["holm_only"]["leaderboard"]}
    rows = [[r["strategy"], r["ap_mean"], r.get("roc_auc"), f(r.get("pixel_auroc")), f(r.get("aupro")),
             "—" if r.get("delta_ap") is None else f"{r['delta_ap']:+.3f}",
             "—" if r.get("splits_better") is None else f"{r['splits_better']}/{r['splits_worse']}",
             _p_rule(r), _p_rule(holm[r["strategy"]]),
             f(r.get("fit_seconds"), 1)] for r in d["declared"]["leaderboard"]]
    out.append(table(["strategy", "AP", "ROC-AUC", "pixel AUROC", "AUPRO", "ΔAP", "splits better/worse",
                      f"p, primary {d['primary']} declared", "p, Holm over all", "fit s"], rows))
    out.append(f"\nDecision with `--primary {d['primary']}`:\n\n" + quote(d["declared"]["recommendation"]))
    out.append("\nThe same cells, Holm over every remedy:\n\n" + quote(d["holm_only"]["recommendation"]))
    return "".join(out)


def demo(d: dict[str, Any]) -> str:
    out = [d["what"] + "\n\n"]
    rows = []
    runs = dict(sorted(d["runs"].items(), key=lambda kv: (kv[0] != "before", kv[0])))  # before, then after
    for name, r in runs.items():
        rows.append([name, r["command"], r["strategies"], r["seeds"], f(r["wall_s"], 0), f(r["cpu_s"], 0),
                     f(r.get("peak_rss_mb"), 0), r.get("conclusion", "—")])
    out.append(table(["run", "command", "strategies", "splits", "wall s", "CPU s", "peak RSS MB", "conclusion"],
                     rows))
    t = d["targets"]
    out.append(f"\nTargets: wall ≤ {t['wall_s']} s on a quiet 2-core machine, ≤ {t['cpu_s']} CPU-seconds, a "
               "conclusion beyond noise. " + d["decision"] + "\n")
    for name, r in runs.items():
        if r.get("source"):
            out.append(f"\n`{name}`: {r['source']}\n")
        if not r.get("leaderboard"):
            continue
        out.append(f"\nLeaderboard of `{name}` ({r['data']}):\n\n")
        out.append(table(["strategy", "AP", "ΔAP vs ce [interval of its decision]", "adjusted p (rule)",
                          "splits better/worse"],
                         [[x["strategy"], x["ap_mean"],
                           "—" if x.get("delta_ap") is None else f"{x['delta_ap']:+.3f} {ci(x.get('delta_ci'))}",
                           _p_rule(x),
                           "—" if x.get("splits_better") is None else f"{x['splits_better']}/{x['splits_worse']}"]
                          for x in r["leaderboard"]]))
        if r.get("recommendation"):
            out.append("\n" + quote(r["recommendation"]))
        if r.get("steps"):
            out.append("\nWhere the time went (wall seconds, from the run's own timings):\n\n")
            out.append(table(["step", "wall s"], [[k, f(v.get("wall_s"), 1)] for k, v in r["steps"].items()]))
    return "".join(out)


def cli_startup(d: dict[str, Any]) -> str:
    before, after = d["runs"]["before"]["cases"], d["runs"]["after"]["cases"]
    rows = [[case, f"`{after[case]['command']}`", f"{before[case]['median_s']:.2f} s" if case in before else "—",
             f"**{after[case]['median_s']:.2f} s**"] for case in after]
    return (f"Median of {d['runs']['after']['repeat']} fresh processes per command, warm strategy catalog; "
            f"target < {d['target_s']} s.\n\n" + table(["case", "command", "before", "after"], rows))


def check_cache(d: dict[str, Any]) -> str:
    return (f"Decoding and checking every image and mask of Magnetic-tile ({d['images']:,} images): "
            f"**{d['cold_s']:.1f} s** cold, **{d['warm_s']:.1f} s** with the per-file check cache warm.\n")


def embed(d: dict[str, Any]) -> str:
    t = d["targets"]
    rows = [[d["engine"], f"**{d['end_to_end_img_per_s']:.0f} img/s**", f"{d['bare_engine_img_per_s']:.0f} img/s",
             f(d["ratio"], 2), f"{d['cached_rerun_seconds']:.2f} s", f"{d['peak_rss_mb']:.0f} MB"]]
    dd = d.get("draft_decode") or {}
    out = (f"Magnetic-tile, {d['images']:,} images at {d['image_size']} px, EfficientNet-Lite0. Targets: "
           f"≥ {t['img_per_s']} img/s end to end, end-to-end / bare-engine ratio ≥ {t['ratio']}.\n\n"
           + table(["engine", "end-to-end `embed`", "bare engine on ready tensors", "ratio", "cached rerun",
                    "peak RSS"], rows))
    if dd:
        out += (f"\nDraft-mode JPEG decoding (Pillow's DCT scaling) on a {dd['image']}: {dd['full_ms']:.0f} ms in full, "
                f"{dd['draft_ms']:.1f} ms in draft mode ({dd['speed_up']:.0f}×).\n")
    return out


HEADS = [("global", "global `logreg` (one pooled vector per image)"), ("patch", "`patch` (masks)"),
         ("patch_mil_only", "`patch` (no masks: MIL only)"),
         ("normality", "`normality` (zero training positives needed)"), ("fusion", "`fusion`")]


def patch_mt(d: dict[str, Any]) -> str:
    pf = d["patch_features"]
    seeds = len(d.get("per_seed") or d.get("fusion_minus_global") or [])
    cols = [("ap", "test AP, this release"), ("before_alignment", "before the heat-map alignment"),
            ("before", "previous release")]
    def ap(key: str, head: str) -> str:
        src = d.get("ap") if key == "ap" else (d.get(key) or {}).get("ap")
        return pm((src or {}).get(head))

    rows = [[label] + [ap(k, h) for k, _ in cols] for h, label in HEADS]
    out = (f"Magnetic-tile, defect vs free, {d['rate']:.0%} training positives, {d['splits']}; {seeds} seeds; patch "
           f"features `{pf['layers']}` at {pf['image_size']} px ({pf['resize']}). Test AP, mean ± std over seeds.\n\n"
           + table(["head"] + [c for _, c in cols], rows))
    if d.get("fusion_minus_global"):
        out += ("\n`fusion` − global per seed: " + ", ".join(f"{v:+.3f}" for v in d["fusion_minus_global"]) + ".\n")
    loc = d.get("localisation_seed0")
    if loc:
        out += "\nLocalisation on the seed-0 test split (heat maps against the masks):\n\n" + table(
            ["head", "pixel AUROC", "derived-mask IoU, mean", "median", "test defects"],
            [[h, v["pixel_auroc"], v["derived_mask_iou_mean"], v["derived_mask_iou_median"], v["positives"]]
             for h, v in loc.items()])
    sp = d.get("speed")
    if sp:
        out += f"\nSpeed ({sp['images']:,} images, cold cache):\n\n" + table(["what", "measured"], [
            ["patch features end to end", f"{sp['end_to_end_img_per_s']:.0f} img/s (bare engine "
                                          f"{sp['bare_engine_img_per_s']:.0f} img/s)"],
            ["`normality` scoring", f"{sp['normality_score_img_per_s']:.0f} img/s (fit {sp['normality_fit_s']:.1f} s, "
                                    f"bank {sp['normality_bank']:,} patches, {sp['normality_index']})"],
            ["`patch` scoring", f"{sp['patch_score_img_per_s']:.0f} img/s (fit {sp['patch_fit_s']:.1f} s)"],
            ["patch cache", f"{sp['bytes_per_image'] / 1e3:.0f} kB per image, {sp['cache_5000_images_gb']:.2f} GB "
                            "for 5,000 images (memory-mapped)"],
            ["peak RSS of the benchmark", f"{d['peak_rss_mb']:.0f} MB"]])
    return out


def patch_demo(d: dict[str, Any]) -> str:
    layers = list(d["by_patch_layers"])
    heads = [r["strategy"] for r in d["by_patch_layers"][layers[0]]["leaderboard"]]
    rows = []
    for h in sorted(heads):
        row = [f"`{h}`"]
        for lay in layers:
            r = next(x for x in d["by_patch_layers"][lay]["leaderboard"] if x["strategy"] == h)
            row.append(f(r["ap_mean"]) + (f" (Holm p {r['p_holm']:.2g})" if r.get("p_holm") is not None else ""))
        rows.append(row)
    walls = ", ".join(f"`{lay}` {d['by_patch_layers'][lay]['wall_seconds']:.0f} s" for lay in layers)
    return (f"{d['data']}, `compare`, {d['seeds']} seeds; test AP by patch-feature setting (wall time: {walls}).\n\n"
            + table(["strategy"] + [f"`{lay}`" for lay in layers], rows))


def strategies(d: dict[str, Any]) -> str:
    rows = [[f"`{r['strategy']}`", r["family"], r["head"], r["new_images"], f(r["seconds"], 2), r["test_ap"]]
            for r in d["rows"]]
    return (f"Head mode on the cached Magnetic-tile embeddings ({d['train_rows']:,} training rows); seconds include "
            f"making and embedding new images (target under {d['target_seconds']} s each).\n\n"
            + table(["strategy", "family", "head", "new images", "seconds", "test AP (seed 0)"], rows))


def train(d: dict[str, Any]) -> str:
    h, ft = d["head"], d["finetune"]
    rows = [[f"`{lp['strategy']}`", f(lp["samples_per_s"], 2), f(lp["ratio"], 2)] for lp in ft["loops"]]
    return (f"Head mode, train + evaluate on Magnetic-tile with embeddings cached: **{h['wall_seconds']:.1f} s**, "
            f"test AP {h['test_ap']:.3f}. Fine-tuning on CPU at {ft['image_size']} px, batch {ft['batch_size']} "
            f"(a bare forward-backward-step on ready tensors: {ft['bare_samples_per_s']:.2f} samples/s; "
            f"target ratio ≥ {ft['target_ratio']}):\n\n" + table(["strategy", "samples/s", "ratio to bare step"], rows))


def mt_rare(d: dict[str, Any]) -> str:
    runs = d["runs"]
    names = list(runs)
    by = {n: {r["strategy"]: r for r in runs[n]["leaderboard"]} for n in names}
    order = sorted(by[names[-1]], key=lambda s: -by[names[-1]][s]["ap_mean"])
    rows = [[f"`{s}`"] + [f"{by[n][s]['ap_mean']:.3f} ± {by[n][s]['ap_std']:.3f}" if s in by[n] else "—"
                          for n in names] for s in order]
    b = d["best"]
    return (f"{d['data']}, training positives cut to {d['train_positive_rate']:.0%} of the training split, "
            f"{d['seeds']} seeds, head mode; AP mean ± std (`tiles0`: global features, `tiles2`: global + 2×2 tiles).\n\n"
            + table(["strategy"] + [f"`{n}`" for n in names], rows)
            + f"\nBest: `{b['strategy']}` with `{b['setting']}`, AP {b['ap_mean']:.3f} ± {b['ap_std']:.3f} "
              f"(target {d['targets']['best_ap']}). Wall time {d['total_cold_seconds'] / 60:.1f} min cold, "
              f"{d['total_warm_seconds']:.0f} s with embeddings cached.\n")


def audit_noise(d: dict[str, Any]) -> str:
    m = d["mean"]
    rows = [["flipped positives caught in the top 2F suspects", m["flipped_positive_caught_top2F"]],
            ["flipped negatives caught in the top 2F", m["flipped_negative_caught_top2F"]],
            ["precision of the top 2F", m["precision_top2F"]],
            ["'labelled negative, looks positive' flags: precision / recall",
             f"{m['flags_neg_looks_pos_precision']:.2f} / {m['flags_neg_looks_pos_recall']:.2f}"],
            ["'labelled positive, looks negative' flags: precision / recall",
             f"{m['flags_pos_looks_neg_precision']:.2f} / {m['flags_pos_looks_neg_recall']:.2f}"]]
    return (f"{d['protocol']}; {len(d['settings']['seeds'])} seeds ({d['attempt']}). Target: flipped positives caught "
            f"≥ {d['target']['flipped_positive_caught_top2F']}.\n\n" + table(["measure", "mean"], rows))


def compare_before_after(d: dict[str, Any]) -> str:
    rows = []
    for name, r in d["runs"].items():
        board = r["leaderboard"]
        picks = [board[0]] + ([min(board, key=lambda x: x.get("delta_ap") or 0)] if len(board) > 1 else [])
        for x in {id(p): p for p in picks}.values():
            if x.get("delta_ap") is None:
                continue
            rows.append([name, f"`{x['strategy']}`", x["ap_mean"], f"{x['delta_ap']:+.3f} {ci(x.get('delta_ci'))}",
                         f(x.get("p_holm"), 2 if (x.get("p_holm") or 1) > 0.01 else 4), f(x.get("beyond_noise"))])
    return ("The same comparisons under the per-image bootstrap of earlier releases (`before`) and the split-level "
            "corrected resampled t-test with Holm (`after`); for each run the top-ranked strategy and the one with "
            "the lowest ΔAP.\n\n" + table(["run", "strategy", "AP", "ΔAP [interval]", "Holm p", "beyond noise"], rows))


def issue_seeds(d: dict[str, Any]) -> str:
    rows = []
    for name, w in d["windows"].items():
        top = next((r for r in w.get("rows") or [] if r.get("delta_ap") is not None), None)
        if top:
            rows.append([name, f"`{top['strategy']}`", top["ap_mean"], f"{top['delta_ap']:+.3f}",
                         f(top.get("p_holm"), 2), f(top.get("beyond_noise"))])
    return (f"{d['data']}, strategies {', '.join(f'`{s}`' for s in d['strategies'])}: windows of seeds where the "
            "per-image bootstrap of earlier releases claimed effects, under the split-level test.\n\n"
            + table(["window", "top strategy", "AP", "ΔAP", "Holm p", "beyond noise"], rows))


def null_sim(d: dict[str, Any]) -> str:
    s = d["settings"]
    rows = [[r["model"], r["design"], r["splits"], r["test"], r["multiplicity"],
             r["family_wise_false_beyond_noise_4_twins"], f(r["effect_95ci_coverage"], 3), f(r["power_for_effect"], 2)]
            for r in d["rows"]]
    true = ", ".join(f"{m} {v:+.3f}" for m, v in s["true_delta_ap_of_effect"].items())
    return (f"{d['what']}; {s['reps']:,} simulated comparisons each, true ΔAP of the effect: {true}. "
            f"Models of the training-set effect: {', '.join(f'{m} {kw or {}}' for m, kw in s['models'].items())}. "
            f"Targets: family-wise {d['targets']['family_wise_false_beyond_noise']}, "
            f"coverage {d['targets']['coverage']}. CPU {d.get('cpu_seconds', 0):.0f} s.\n\n"
            + table(["training effect", "design", "splits", "test", "multiplicity",
                     "family-wise false 'beyond noise'", "effect 95% CI coverage", "power"], rows))


def ci_positives(d: dict[str, Any]) -> str:
    rows = [[r["test_positives"], r["coverage_population_ap"], r["zero_width_share"], f(r["interval_shown"])]
            for r in d["rows"]]
    return (f"Coverage of the per-run AP interval (stratified bootstrap, {d['n_boot']} resamples, {d['reps']} "
            f"repetitions, nominal {d['nominal']:.0%}) by the number of test positives; an interval is shown from "
            f"{d['min_positives_for_ci']} positives on.\n\n"
            + table(["test positives", "coverage of the population AP", "zero-width share", "interval shown"], rows))


def hardness(d: dict[str, Any]) -> str:
    rows = [[f"`{s['demo']}`", s["prevalence"], s["ap"], s.get("control_easy_ap")] for s in d["sets"]]
    return (f"{d['what']}. Control: {d['control']}.\n\n"
            + table(["demo set", "prevalence", "AP on raw pixels", "AP with an obvious square (control)"], rows))


#: file stem → (title, anchor, section). Order = order on the page.
def declarations(d: dict[str, Any]) -> str:
    rows = [[f"`{k}`", ", ".join(f"`{x}`" for x in r["literals"]), r["before"]["literal_lines"],
             len(r["before"]["files"]), f"**{r['after']['literal_lines']}**", f"**{len(r['after']['files'])}**",
             r["before"]["option_definitions"], f"**{r['after']['option_definitions']}**"]
            for k, r in d["settings"].items()]
    o = d["cli_option_definitions"]
    return (f"`python benchmarks/count_declarations.py`: revision {d['before']} (before the run specification) vs "
            f"{d['after']}. The run specification (`imbvision.spec`) declares {d['spec_fields']} fields; the "
            f"`train` and `compare` functions wrote {o['before']} `typer.Option` parameters before and write "
            f"{o['after']} now (their own arguments: `--data`, `--out`, `--from`, `--json` …), the rest generated "
            f"from the fields. {d['note']}\n\n"
            + table(["setting", "literals counted", "lines before", "files before", "lines after", "files after",
                     "CLI definitions before", "after"], rows))



def predict_speed(d: dict[str, Any]) -> str:
    rows = [[f"`{d['strategy']}`", d["images"], d["heatmaps_written"], f"{d['wall_s']:.0f}", f"{d['cpu_s']:.0f}",
             f"**{d['img_per_s_wall']:.1f}**", f"{d['img_per_s_cpu']:.1f}", f"{d['peak_rss_mb_children']:.0f}",
             " / ".join(f"{x:.1f}" for x in d["load_avg_end"])]]
    return (f"{d['what']}. Training took {d['train_wall_s']:.0f} s wall, {d['train_cpu_s']:.0f} CPU-s. Target: "
            f"≥ {d['targets']['img_per_s']} img/s.\n\n"
            + table(["head", "images", "heat maps", "wall s", "CPU-s", "img/s (wall)", "img per CPU-s",
                     "peak RSS MB", "load average at the end"], rows))


def trust_memory(d: dict[str, Any]) -> str:
    rows = [[c["image"], f(c["pixels"]), "refused: " + c["refused"].split(": ", 2)[-1] if c.get("refused")
             else ("×".join(str(v) for v in c["overlay"]) if c.get("overlay") else "—"),
             f"**{c['peak_rss_mb']:.0f} MB**", f(c["cpu_s"], 1), f(c["wall_s"], 1)] for c in d["cases"]]
    b = d.get("before") or {}
    before = (f" Before the bound ({b['source']}), the {b['image']} image peaked at {b['peak_rss_mb']:,} MB and wrote a "
              f"{'×'.join(str(v) for v in b['overlay'])} overlay." if b else "")
    return (f"`{d['what'].split(', ')[0]}`, {', '.join(d['what'].split(', ')[1:])}. Heat maps are capped at {d['heatmap_max_side']:,} px on the long side and overlays "
            f"at {d['overlay_max_side']:,} px (aspect kept); images beyond {d['max_aspect']}:1 are refused by the "
            f"image check.{before}\n\n"
            + table(["image (PNG)", "pixels", "overlay written", "peak RSS", "CPU-s", "wall s"], rows))


def trust_verify(d: dict[str, Any]) -> str:
    names = {"cells_reused": "same `--out`: every feature and cell reused",
             "cells_fitted": "new `--out`: features reused, cells fitted"}
    rows = []
    for case, label in names.items():
        c = d[case]
        rows.append([label, f"{c['verified']['cpu_s']:.1f}", f"{c['unverified']['cpu_s']:.1f}",
                     f"{c['verification_cost']['cpu_s']:+.1f} ({100 * c['verification_share']['cpu_s']:+.1f}%)",
                     f"**{c['in_checks_s']:.2f} ({100 * c['in_checks_share_of_cpu']:.1f}%)**",
                     f"{c['verified']['wall_s']:.1f}", f"{c['unverified']['wall_s']:.1f}"])
    return (f"`imbvision compare` on {d['what'].split(' on ', 1)[1]}. Cold run (empty cache): {d['cold']['cpu_s']:.0f} "
            f"CPU-s, {d['cold']['wall_s']:.0f} s wall. Then each cached run in a fresh process, as shipped (verified) "
            "and with the read-time checks (embedding-shard digests, per-row patch-feature SHA-256, cell checksums) "
            f"skipped; median of {d['repeat']} runs each, in back-to-back pairs; the difference is the median paired difference and carries the noise "
            "of a shared machine; the seconds spent inside the checks themselves (added up in the verified runs, "
            "share of that run's CPU-s) are the exact cost. Patch rows on disk: "
            f"{d['patch_rows_mb']:.0f} MB.\n\n"
            + table(["cached run", "CPU-s verified", "CPU-s unverified", "difference", "inside the checks",
                     "wall s verified", "wall s unverified"], rows))


def bank(d: dict[str, Any]) -> str:
    parts = [f"Magnetic-tile patch features ({d['patch_features']['image_size']} px {d['patch_features']['resize']}, "
             f"{d['patch_features']['layers']}), {d['splits']} splits.\n"]
    if "coreset" in d:
        c = d["coreset"]
        rows = [[k if k == "exact" else f"shards of {int(k):,}", f(v["val_ap"]), f(v["test_ap"]),
                 f"{v['test_ap_minus_exact']:+.4f}", f(v["radius_max"], 2), f(v["radius_mean"], 2),
                 f(v["fit_cpu_s"], 1)] for k, v in c["summary"].items()]
        parts.append(f"\n**Coreset** (the `normality` head, zero positives, {c['seeds']} seeds): the exact greedy "
                     "k-centre against the shard-by-shard coreset; coverage radius = distance of the training patches "
                     "to their nearest bank row.\n\n"
                     + table(["coreset", "val AP", "test AP", "test AP − exact", "radius max", "radius mean",
                              "fit CPU-s"], rows))
    if "fusion" in d:
        fu = d["fusion"]
        m, diff = fu["mean"], fu["test_ap_one_bank_minus_refit"]
        parts.append(f"\n**Fusion without a refit per fold** ({fu['rate']:.0%} training positives, {fu['seeds']} seeds): "
                     f"one bank with each image's own patches and its duplicate set's left out, against a bank refitted "
                     f"per fold: test AP {m['one-bank_test_ap']:.3f} vs {m['refit_test_ap']:.3f} (difference "
                     f"{diff['mean']:+.4f} ± {diff['std']:.4f} over seeds), fit {m['one-bank_fit_cpu_s']:.1f} vs "
                     f"{m['refit_fit_cpu_s']:.1f} CPU-s.\n")
    if "scaling" in d:
        sc = d["scaling"]
        rows = [[p["head"], f"{p['train_negatives']:,}", f"{p['bank']:,}", f(p["fit_score_cpu_s"], 1),
                 f(p["fit_score_wall_s"], 1), f"{p['peak_rss_mb']:,.0f}"] for p in sc["points"]]
        slopes = ", ".join(f"`{h}` {v:.2f}" for h, v in sc["log_log_slope"].items())
        rss = ", ".join(f"`{h}` {v:,.0f} MB" for h, v in sc["peak_rss_mb_at_10000"].items())
        t = d.get("targets", {})
        parts.append(f"\n**Cost growth** (fit + score of a quarter as many test images, one process per point): "
                     f"log-log slope of CPU-s against training negatives {slopes} (target ≤ "
                     f"{t.get('log_log_slope', '—')}); peak RSS at 10,000 training images {rss} (target ≤ "
                     f"{t.get('peak_rss_mb_at_10000', '—'):,} MB). The bank stops growing at its cap (50,000 rows).\n\n"
                     + table(["head", "training negatives", "bank rows", "CPU-s", "wall s", "peak RSS MB"], rows))
    return "".join(parts)


SECTIONS: dict[str, tuple[str, str, Section]] = {
    "bench_demo": ("Demo: `make demo` from a cold cache", "demo", demo),
    "bench_compare_mt": ("Magnetic-tile: the default comparison over 10 splits", "magnetic-tile-default-comparison",
                         compare_mt),
    "bench_cli_startup": ("Command start-up", "command-start-up", cli_startup),
    "count_declarations": ("Where each pipeline setting is written", "declarations", declarations),
    "bench_bank": ("Memory bank: coreset, fusion without refits, cost growth", "memory-bank", bank),
    "bench_predict": ("Prediction with heat maps: `predict --heatmaps` on Magnetic-tile", "predict-speed",
                      predict_speed),
    "bench_check_cache": ("Image check with and without the check cache", "image-check", check_cache),
    "bench_embed": ("Embedding throughput", "embedding-throughput", embed),
    "bench_patch": ("Patch heads on Magnetic-tile", "patch-heads-on-magnetic-tile", patch_mt),
    "bench_patch_demo": ("Patch-feature settings on the demo set", "patch-feature-settings-on-the-demo-set",
                         patch_demo),
    "bench_strategies": ("Fit time of every strategy", "fit-time-of-every-strategy", strategies),
    "bench_train": ("Training speed: head mode and fine-tuning", "training-speed", train),
    "mt_rare": ("Magnetic-tile with 5% training positives: every remedy", "magnetic-tile-rare", mt_rare),
    "audit_noise": ("Audit: suspect labels with injected label noise", "audit-label-noise", audit_noise),
    "compare_before_after": ("Comparison statistics: per-image bootstrap vs split-level test",
                             "comparison-statistics", compare_before_after),
    "demo_issue_seeds": ("Seed windows where the per-image bootstrap claimed effects", "seed-windows", issue_seeds),
    "null_simulation": ("Null simulation of the comparison test", "null-simulation", null_sim),
    "ci_min_positives": ("Per-run AP interval coverage by test positives", "interval-coverage", ci_positives),
    "demo_hardness": ("How hard the demo set is on raw pixels", "demo-hardness", hardness),
    "bench_trust_memory": ("Memory of `predict --heatmaps` by image aspect", "predict-memory-by-aspect",
                           trust_memory),
    "bench_trust_verify": ("Cost of verifying cached artefacts on read", "read-verification-cost", trust_verify),
}
SKIP_KEYS = {"machine", "versions", "load_avg_start", "load_avg_end", "load_avg_before", "load_avg_after"}


def generic(d: Any, prefix: str = "", rows: list | None = None, depth: int = 0) -> list[list[str]]:
    """Scalar values of a results file as (key path, value) rows, for files without a section of their own."""
    rows = [] if rows is None else rows
    if isinstance(d, dict):
        for k, v in d.items():
            if k in SKIP_KEYS:
                continue
            generic(v, f"{prefix}.{k}" if prefix else str(k), rows, depth + 1)
    elif isinstance(d, list):
        if all(not isinstance(v, (dict, list)) for v in d) and len(d) <= 12:
            rows.append([prefix, ", ".join(f(v) for v in d)])
        elif depth < 4:
            for i, v in enumerate(d[:12]):
                generic(v, f"{prefix}[{i}]", rows, depth + 1)
    else:
        rows.append([prefix, f(d)])
    return rows


def build(results: Path = RESULTS) -> str:
    files = {p.stem: p for p in sorted(results.glob("*.json"))}
    machines = {json.dumps(json.loads(p.read_text(encoding="utf-8")).get("machine"), sort_keys=True)
                for p in files.values()} - {"null"}
    parts = ["# Benchmarks\n\n",
             "<!-- Generated by benchmarks/make_tables.py from benchmarks/results/*.json: edit those, not this page. -->\n\n",
             "Scripts in `benchmarks/` write JSON to `benchmarks/results/`; this page is generated from those files "
             "(`python benchmarks/make_tables.py`), and a test checks that it equals what the files give. Figures "
             "are from a 2-core CPU machine without a GPU, often shared with other jobs: CPU-seconds are the "
             "steadier figure where a table gives both. Magnetic-tile benchmarks read `../shared/data/magnetic-tile` "
             "in place.\n\n"]
    known = [s for s in SECTIONS if s in files]
    others = [s for s in files if s not in SECTIONS]
    parts.append("".join(f"- [{SECTIONS[s][0]}](#{SECTIONS[s][1]}) (`{s}.json`)\n" for s in known))
    if others:
        parts.append("- [Other results](#other-results): " + ", ".join(f"`{s}.json`" for s in others) + "\n")
    for s in known:
        title, anchor, render = SECTIONS[s]
        d = json.loads(files[s].read_text(encoding="utf-8"))
        parts.append(f'\n<a id="{anchor}"></a>\n\n## {title}\n\n`benchmarks/results/{s}.json`\n\n{render(d)}')
    if others:
        parts.append('\n<a id="other-results"></a>\n\n## Other results\n\nFiles without a section of their own '
                     "yet: their values as written.\n")
        for s in others:
            d = json.loads(files[s].read_text(encoding="utf-8"))
            parts.append(f"\n### `{s}.json`\n\n" + table(["value", ""], generic(d)))
    if machines:
        parts.append("\nMachines: " + "; ".join(
            ", ".join(f"{k} {v}" for k, v in json.loads(m).items()) for m in sorted(machines)) + ".\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/benchmarks.md is not the generated page")
    args = ap.parse_args(argv)
    page = build()
    if args.check:
        same = PAGE.exists() and PAGE.read_text(encoding="utf-8") == page
        print("docs/benchmarks.md is up to date" if same else
              "docs/benchmarks.md differs from benchmarks/results/*.json: run python benchmarks/make_tables.py")
        return 0 if same else 1
    PAGE.write_text(page, encoding="utf-8")
    print(f"→ {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
