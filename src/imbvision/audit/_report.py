"""The self-contained ``audit.html`` page: thumbnails embedded as base64, all
user text (paths, class names, groups, reasons) passed through ``html.escape``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .._text import plural
from ..data.records import Dataset
from ..htmlreport import Report, data_uri, thumbnail_jpeg

__all__ = ["render_html", "thumbnail_uri"]

MAX_ROWS = 60
THUMB = 120

# audit-only styles on top of the shared page style (htmlreport)
_CSS = """
.card b{display:block;font-size:1.45em} .card span{color:#5b6673;font-size:.85em}
.sub{color:#5b6673} td,th{overflow-wrap:break-word}
.bar{background:#e3e7ec;width:90px;height:8px;border-radius:4px;display:inline-block;vertical-align:middle}
.bar i{display:block;height:8px;border-radius:4px;background:#d92d20}
img.t{width:%dpx;height:%dpx;object-fit:contain;background:#111;border-radius:4px}
.act-relabel{color:#b42318;font-weight:600} .act-review{color:#b54708;font-weight:600} .act-keep{color:#067647}
""" % (THUMB, THUMB)


def thumbnail_uri(path: str | Path, mask: str | Path | None = None, size: int = THUMB) -> str | None:
    """A ``data:`` URI of a small JPEG of the image, mask outline in red; ``None`` if unreadable."""
    jpeg = thumbnail_jpeg(path, mask=mask, max_side=size)
    return None if jpeg is None else data_uri(jpeg)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _img(path: str, mask: Path | None) -> str:
    uri = thumbnail_uri(path, mask)
    if uri is None:
        return "<i>unreadable</i>"
    return f'<img class="t" src="{uri}" alt="{_e(Path(path).name)}" title="{_e(path)}">'


def _count(n: int, one: str, many: str) -> str:
    """``1 is`` / ``3 are``: the verb agrees with the number."""
    return f"{n} {one if n == 1 else many}"


def review_command(data: str, suspects_csv: str | Path) -> str:
    """The command that applies the decisions in ``suspects_csv``: one text for the page and the terminal."""
    import shlex

    return f"imbvision audit --data {shlex.quote(str(data))} --review {shlex.quote(str(suspects_csv))}"


def counts_line(summary: dict[str, Any]) -> str:
    """The audit's counts in one line, for the terminal (the same numbers as the page's cards)."""
    c, d = summary["counts"], summary.get("duplicates", {})
    acts = summary.get("suggested_actions", {})
    how = ", ".join(f"{acts[a]} {a}" for a in ("relabel", "review", "keep") if acts.get(a))
    sets = int(d.get("exact_sets", 0)) + int(d.get("near_sets", 0))
    return (f"{plural(c['images'], 'image')} ({c['positive']} positive, {c['negative']} negative, "
            f"imbalance {c.get('imbalance_ratio_text', '?')}); {plural(sets, 'duplicate set')}; "
            f"{plural(summary['suspects'], 'label suspect')} to review" + (f" ({how})" if how else ""))


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None or x == "":
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def render_html(summary: dict[str, Any], suspects: list[dict[str, Any]], duplicates: list[dict[str, Any]],
                dataset: Dataset) -> str:
    """Render the audit page (a complete HTML document as a string)."""
    c = summary["counts"]
    h = summary["hardness"]
    nz = summary["label_noise"]
    d = summary["duplicates"]
    mask_of = {str(r.path): r.mask for r in dataset}
    from ..data.names import display_names, source_root
    # names keep their folder (test/crack/003.png): a bare 003.png is ambiguous where numbering restarts
    name_of = dict(zip((str(r.path) for r in dataset),
                       display_names([r.path for r in dataset.records], source_root(dataset.source))))
    out: list[str] = []
    w = out.append
    w(f"<p class='sub'>Source: <span class='path'>{_e(summary['source'] or '(in memory)')}</span> · "
      f"{c['images']} images · features of {summary['settings']['feature_dims']} dimensions</p>")

    # ---- key figures
    w("<h2>1. Imbalance</h2><div class='cards'>")
    w(_card(str(c["positive"]), f"positive ({c['positive_name']})"))
    w(_card(str(c["negative"]), f"negative ({c['negative_name']})"))
    w(_card(c["imbalance_ratio_text"], "imbalance ratio (majority : minority)"))
    w(_card(f"{100 * c['always_negative_accuracy']:.1f}%", "accuracy of always saying 'negative'"))
    if "cv_average_precision" in h:
        w(_card(f"{h['cv_average_precision']:.3f}", f"cross-validated AP, mean of {plural(h.get('cv_repeats', 1), 'repeat')} "
                f"(chance {h['cv_ap_chance_level']:.3f})"))
        w(_card(f"{100 * h['minority_mostly_majority_share']:.0f}%", "minority with mostly-majority neighbours"))
        w(_card(str(h["tomek_links"]), "Tomek links"))
    w(_card(str(summary["suspects"]), "label suspects to review"))
    w("</div>")
    w(f"<div class='note'>{_e(c['always_negative_note'])}.</div>")
    m = c.get("masks", {})
    if m.get("with_mask"):
        conflict = m["negative_with_object"] + m["positive_with_empty_mask"]
        cls = "bad" if conflict else "ok"
        w(f"<p>Masks: {m['with_mask']} images have one ({m['object']} outline an object, {m['empty']} empty"
          f"{', ' + str(m['unreadable']) + ' unreadable' if m['unreadable'] else ''}). "
          f"<span class='{cls}'>{m['negative_with_object']} negatives with an outlined object, "
          f"{m['positive_with_empty_mask']} positives with an empty mask</span> (listed as suspects).</p>")
    w("<table><tr><th>class name</th><th>images</th></tr>")
    for name, cnt in c["per_class_name"].items():
        w(f"<tr><td>{_e(name)}</td><td class='num'>{cnt}</td></tr>")
    w("</table>")
    if "groups" in c:
        g = c["groups"]
        w(f"<p>{g['groups']} groups; images per group: min {g['images_per_group']['min']}, median "
          f"{g['images_per_group']['median']:g}, max {g['images_per_group']['max']}; "
          f"{g['groups_with_positive']} with a positive, {g['groups_mixed']} mixed.</p>")
        w("<table><tr><th>largest groups</th><th>images</th><th>positive</th></tr>")
        for r in g["largest"]:
            w(f"<tr><td>{_e(r['group'])}</td><td class='num'>{r['images']}</td><td class='num'>{r['positive']}</td></tr>")
        w("</table>")

    for section, why in summary["skipped"].items():
        w(f"<div class='skip'><b>{_e(section.replace('_', ' ').capitalize())} skipped:</b> {_e(why)}</div>")
    for note in summary["notes"]:
        w(f"<div class='note'>{_e(note)}</div>")

    # ---- hardness
    w("<h2>2. Hardness: information, not numbers</h2>")
    if "skipped" in h:
        w(f"<div class='skip'>{_e(h['skipped'])}</div>")
    else:
        w(f"<p>{_e(h['note'][:1].upper() + h['note'][1:])}</p>")
        t = h["minority_neighbour_types"]
        w(f"<table><tr><th>minority type (k={h['k']})</th><th>images</th></tr>")
        for key in ("safe", "borderline", "rare", "outlier"):
            w(f"<tr><td>{key}</td><td class='num'>{t[key]}</td></tr>")
        w("</table>")
        w(f"<p class='sub'>{_e(h['neighbour_types_rule'])}. Cross-validation: {_e(h['cv_splitter'])}, "
          f"{h['cv_folds']} folds × {h['cv_repeats']}; head: {_e(h['cv_head'])}. "
          f"{_e(h.get('cv_ap_note', ''))}</p>")

    # ---- suspects
    w("<h2>3. Label suspects</h2>")
    if "skipped" in nz:
        w(f"<div class='skip'>{_e(nz['skipped'])}</div>")
    else:
        by = nz["confident_learning_by_direction"]
        w(f"<p>{_e(nz['method'][:1].upper() + nz['method'][1:])}. Confident-learning flags: {by['labelled_positive_looks_negative']} "
          f"labelled positive that look negative, {by['labelled_negative_looks_positive']} labelled negative "
          f"that look positive (a missed object). {nz['minority_surrounded_by_majority']} minority "
          f"{'image is' if nz['minority_surrounded_by_majority'] == 1 else 'images are'} "
          f"surrounded by the majority; {_count(nz['minority_isolated'], 'is', 'are')} isolated "
          f"({nz['minority_clusters']['clusters']} minority clusters).</p>")
        w(f"<p class='sub'>Score: {_e(nz['score'])}.</p>")
    w("<div class='note'><b>Nothing has been deleted or relabelled.</b> Removing minority images makes the "
      "imbalance worse, and an isolated positive is as often a rare genuine variant as a label error. Fill the "
      "<code>decision</code> column of <code>suspects.csv</code> (keep | relabel | drop; blank = keep) and run "
      f"<code>{_e(summary.get('review_command') or review_command(summary['source'] or 'SOURCE', 'suspects.csv'))}"
      "</code>: it writes a "
      "<i>new</i> manifest and leaves the source untouched.</div>")
    if suspects:
        shown = suspects[:MAX_ROWS]
        w(f"<p>Showing {len(shown)} of {len(suspects)} suspects (all are in suspects.csv). "
          "Red outline: the mask, where one exists.</p>")
        w("<table><tr><th>#</th><th>image</th><th>label</th><th>score</th><th>P(pos) out-of-fold</th>"
          "<th>neighbours in majority</th><th>reasons</th><th>suggested</th></tr>")
        for s in shown:
            score = s["score"]
            bar = (f"<span class='bar'><i style='width:{int(90 * float(score))}px'></i></span> {float(score):.2f}"
                   if score != "" else "–")
            w(f"<tr><td class='num'>{s['rank']}</td><td>{_img(s['path'], mask_of.get(s['path']))}"
              f"<div class='path'>{_e(name_of.get(s['path'], s['path']))}</div></td>"
              f"<td>{_e('positive' if s['label'] == 1 else 'negative')}<div class='path'>{_e(s['class_name'])}</div></td>"
              f"<td>{bar}</td><td class='num'>{_fmt(s['p_oof'], 2)}</td>"
              f"<td class='num'>{_fmt(s['knn_majority_share'], 2)}</td><td>{_e(s['reasons'])}</td>"
              f"<td class='act-{_e(s['suggested_action'])}'>{_e(s['suggested_action'])}</td></tr>")
        w("</table>")
    else:
        w("<p class='ok'>No suspects.</p>")

    # ---- duplicates
    w("<h2>4. Duplicates</h2>")
    w(f"<p>{d['exact_sets']} exact-duplicate sets ({d['exact_redundant_images']} redundant copies, "
      f"{d['exact_sets_label_conflict']} with conflicting labels); {d['near_pairs']} near-duplicate pairs "
      f"({d['near_pairs_label_conflict']} with conflicting labels). "
      f"Unique minority images: {d['minority_unique_images']}.</p>")
    if "split_note" in d:
        w(f"<div class='note'>{_e(d['split_note'])}.</div>")
    if "split_leak_pairs" in d:
        cls = "bad" if d["split_leak_pairs"] else "ok"
        w(f"<p class='{cls}'>{d['split_leak_pairs']} duplicate pairs cross train/val/test splits (leaks).</p>")
    if "cross_group_pairs" in d:
        w(f"<p>{d['cross_group_pairs']} duplicate pairs span two groups. {_e(d['cross_group_note'])}.</p>")
    w(f"<p class='sub'>Exact: {_e(d['criteria']['exact'])}. Near: {_e(d['criteria']['near'])}.</p>")
    if duplicates:
        ordered = sorted(duplicates, key=lambda r: (not r["label_conflict"], not r["split_leak"], r["kind"] != "exact"))
        w(f"<p>Showing {min(len(ordered), MAX_ROWS)} of {len(ordered)} pairs (conflicts and leaks first).</p>")
        w("<table><tr><th>kind</th><th>image A</th><th>image B</th><th>labels</th><th>pHash bits</th>"
          "<th>cosine</th><th>problem</th></tr>")
        for r in ordered[:MAX_ROWS]:
            prob = []
            if r["label_conflict"] and r.get("linked", True):
                prob.append("<span class='bad'>label conflict</span>")
            elif r["label_conflict"]:
                prob.append("look-alike of the other label (link cut: a chain, not one picture)")
            if r["split_leak"]:
                prob.append(f"<span class='bad'>split leak ({_e(r['split_a'])}/{_e(r['split_b'])})</span>")
            w(f"<tr><td>{_e(r['kind'])}</td>"
              f"<td>{_img(r['path_a'], mask_of.get(r['path_a']))}<div class='path'>{_e(name_of.get(r['path_a'], r['path_a']))}</div></td>"
              f"<td>{_img(r['path_b'], mask_of.get(r['path_b']))}<div class='path'>{_e(name_of.get(r['path_b'], r['path_b']))}</div></td>"
              f"<td>{r['label_a']} / {r['label_b']}</td><td class='num'>{_fmt(r['hamming'])}</td>"
              f"<td class='num'>{_fmt(r['cosine'], 4)}</td><td>{' '.join(prob) or ('redundant copy' if r['kind'] == 'exact' else 'near copy')}</td></tr>")
        w("</table>")
    else:
        w("<p class='ok'>No duplicates found.</p>")

    if summary["unreadable_images"]:
        w("<h2>Unreadable images</h2><table><tr><th>path</th><th>reason</th></tr>")
        for p in summary["unreadable_images"]:
            w(f"<tr><td class='path'>{_e(p['path'])}</td><td>{_e(p['reason'])}</td></tr>")
        w("</table>")
    w("<p class='sub'>Written by imbvision audit. All figures are also in audit.json.</p>")
    page = Report(f"Dataset audit — {summary['source'] or 'in-memory dataset'}", toc=False, extra_css=_CSS)
    return page.add_html("\n".join(out)).to_html()
