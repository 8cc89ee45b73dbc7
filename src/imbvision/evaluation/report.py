"""A self-contained HTML report: one file, inline CSS, images as data URIs.

Build a page block by block with :class:`Report` and :meth:`Report.save` it;
:func:`build_run_report` assembles the standard page of a training run from
label and score arrays. Every piece of user text (titles, captions, table
cells, class names, file paths, configuration values) is HTML-escaped, the page
loads nothing from outside, needs no JavaScript, and carries a
Content-Security-Policy that forbids scripts and remote resources.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .._version import __version__
from .._io import _default, atomic_write, write_text
from ..errors import BadFileError, ConfigError, DataError
from .calibration import brier, expected_calibration_error
from .metrics import check_binary_scores, evaluate_scores, threshold_metrics
from .plots import (
    figure_to_png,
    plot_image_grid,
    plot_pr_curve,
    plot_reliability,
    plot_roc_curve,
    plot_score_histograms,
)
from .threshold import DEFAULT_THRESHOLD_GRID, ThresholdChoice, threshold_table, tune_threshold

__all__ = ["Report", "build_run_report", "format_value"]

_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root { --fg:#1d2330; --muted:#5b6577; --line:#d9dee7; --bg:#ffffff; --soft:#f4f6fa;
        --accent:#1f5fbf; --warn-bg:#fff6e0; --warn:#9a6700; --note-bg:#eaf2ff; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin:0; background:var(--bg); color:var(--fg);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
             "Liberation Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 1.9em; margin: 0 0 4px; line-height: 1.2; overflow-wrap: anywhere; }
h2 { font-size: 1.4em; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line);
     overflow-wrap: anywhere; }
h3 { font-size: 1.12em; margin: 22px 0 8px; overflow-wrap: anywhere; }
p { margin: 8px 0; overflow-wrap: anywhere; }
.subtitle { color: var(--muted); margin: 0 0 18px; overflow-wrap: anywhere; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 8px;
          padding: 10px 16px; margin: 16px 0 8px; font-size: 0.93em; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 16px; white-space: nowrap;
            display: inline-block; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
       font-size: 0.9em; background: var(--soft); padding: 1px 4px; border-radius: 3px; }
pre code { background: none; padding: 0; font-size: inherit; border-radius: 0; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
      overflow: auto; max-height: 640px; white-space: pre-wrap; overflow-wrap: anywhere;
      font: 12.5px/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; }
.table-wrap { overflow-x: auto; margin: 10px 0 14px; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.92em; min-width: 40%; }
caption { caption-side: top; text-align: left; color: var(--muted); padding: 0 0 6px;
          font-size: 0.95em; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; max-width: 520px; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfd; }
tr.hl td { background: #fff3c4 !important; font-weight: 600; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
             background: #fff; display: block; }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 6px; overflow-wrap: anywhere; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.row > figure { flex: 1 1 420px; min-width: 0; margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px;
         margin: 12px 0 16px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.card .label { color: var(--muted); font-size: 0.85em; overflow-wrap: anywhere; }
.card .value { font-size: 1.55em; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 0.82em; overflow-wrap: anywhere; }
.callout { border-left: 4px solid var(--accent); background: var(--note-bg); padding: 8px 14px;
           border-radius: 4px; margin: 10px 0; overflow-wrap: anywhere; }
.callout.warning { border-left-color: #d29922; background: var(--warn-bg); }
ul { margin: 6px 0 8px 0; padding-left: 22px; }
footer { margin-top: 40px; color: var(--muted); font-size: 0.85em; border-top: 1px solid var(--line);
         padding-top: 10px; }
@media print { nav.toc { display: none; } pre { max-height: none; } }
"""


def _e(text: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape(str(text), quote=True)


def format_value(v: Any, digits: int = 3) -> str:
    """Plain-text form of a table cell: floats with ``digits`` decimals, None as a dash."""
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if abs(int(v)) >= 10_000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f != f:
            return "—"
        if f in (float("inf"), float("-inf")):
            return "∞" if f > 0 else "−∞"
        if f == 0 or abs(f) >= 10 ** (-digits):
            return f"{f:,.{digits}f}" if abs(f) >= 10_000 else f"{f:.{digits}f}"
        return f"{f:.2e}"
    if isinstance(v, (list, tuple)):
        return ", ".join(format_value(x, digits) for x in v)
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    out = _e(text)
    out = _INLINE_CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", out)


def _sniff_image(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ConfigError(
        "report images must be PNG, JPEG, GIF or WebP bytes, a file of those, or a matplotlib "
        f"Figure; got bytes starting {data[:8]!r}"
    )


class Report:
    """A single-page HTML report built block by block.

    Examples
    --------
    >>> r = Report("Crack detection")
    >>> _ = r.add_heading("Summary").add_text("AP is **0.81** on `test`.")
    >>> _ = r.add_table([{"metric": "AP", "value": 0.81, "n": 120}], caption="test split")
    >>> '<td class="num">0.810</td>' in r.to_html()
    True
    """

    def __init__(self, title: str, *, subtitle: str | None = None, toc: bool = True) -> None:
        self.title = str(title)
        self.subtitle = subtitle
        self.toc = toc
        self._blocks: list[str] = []
        self._toc: list[tuple[str, str]] = []
        self._ids: set[str] = set()

    # -- blocks ---------------------------------------------------------------------------
    def add_heading(self, text: str, level: int = 2) -> "Report":
        """Section heading (level 2 entries make the table of contents)."""
        if level not in (2, 3, 4):
            raise ConfigError(f"heading level must be 2, 3 or 4; got {level!r}")
        slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"
        anchor, k = slug, 2
        while anchor in self._ids:
            anchor, k = f"{slug}-{k}", k + 1
        self._ids.add(anchor)
        if level == 2:
            self._toc.append((anchor, str(text)))
        self._blocks.append(f'<h{level} id="{_e(anchor)}">{_e(text)}</h{level}>')
        return self

    def add_text(self, text: str) -> "Report":
        """Paragraphs separated by blank lines; ``- item`` lines make a list;
        inline ```code``` and ``**bold**`` are honoured, everything else is escaped."""
        for para in re.split(r"\n\s*\n", str(text).strip()):
            lines = [ln.strip() for ln in para.splitlines() if ln.strip()]
            if not lines:
                continue
            if all(ln.startswith(("- ", "* ")) for ln in lines):
                items = "".join(f"<li>{_inline(ln[2:])}</li>" for ln in lines)
                self._blocks.append(f"<ul>{items}</ul>")
            else:
                self._blocks.append(f"<p>{_inline(' '.join(lines))}</p>")
        return self

    def add_callout(self, text: str, kind: str = "note") -> "Report":
        """A highlighted box; ``kind`` is ``"note"`` or ``"warning"``."""
        if kind not in ("note", "warning"):
            raise ConfigError(f"callout kind must be 'note' or 'warning'; got {kind!r}")
        self._blocks.append(f'<div class="callout {kind}">{_inline(text)}</div>')
        return self

    def add_cards(self, cards: Sequence[tuple[str, Any] | tuple[str, Any, str]]) -> "Report":
        """Headline numbers: ``(label, value[, detail])`` each."""
        parts = []
        for c in cards:
            if not isinstance(c, (tuple, list)) or len(c) not in (2, 3):
                raise ConfigError(f"a card is (label, value) or (label, value, detail); got {c!r}")
            label, value = c[0], c[1]
            detail = f'<div class="detail">{_e(c[2])}</div>' if len(c) == 3 and c[2] else ""
            parts.append(
                f'<div class="card"><div class="label">{_e(label)}</div>'
                f'<div class="value">{_e(format_value(value))}</div>{detail}</div>'
            )
        self._blocks.append(f'<div class="cards">{"".join(parts)}</div>')
        return self

    def add_table(
        self,
        rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
        header: Sequence[str] | None = None,
        *,
        caption: str | None = None,
        digits: int = 3,
        highlight_rows: Iterable[int] = (),
    ) -> "Report":
        """A table from a list of dicts (columns = keys in first-seen order, or
        ``header`` to choose them) or from ``header`` plus a list of row sequences.

        Numbers are right-aligned with ``digits`` decimals; ``highlight_rows``
        (indices) are shaded.
        """
        rows = list(rows)
        if rows and all(isinstance(r, Mapping) for r in rows):
            cols = list(header) if header is not None else list(
                dict.fromkeys(k for r in rows for k in r)  # type: ignore[union-attr]
            )
            body = [[r.get(c) for c in cols] for r in rows]  # type: ignore[union-attr]
        else:
            for k, r in enumerate(rows):
                if isinstance(r, (str, bytes)) or not isinstance(r, Sequence):
                    raise ConfigError(
                        f"table row {k} must be a dict or a list of cells; got {type(r).__name__}"
                    )
            cols = list(header) if header is not None else []
            body = [list(r) for r in rows]
            if cols and any(len(r) != len(cols) for r in body):
                bad = next(k for k, r in enumerate(body) if len(r) != len(cols))
                raise ConfigError(
                    f"table row {bad} has {len(body[bad])} cells but the header has {len(cols)}"
                )
        hl = set(highlight_rows)
        out = ['<div class="table-wrap"><table>']
        if caption:
            out.append(f"<caption>{_e(caption)}</caption>")
        if cols:
            out.append("<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead>")
        out.append("<tbody>")
        for k, r in enumerate(body):
            cls = ' class="hl"' if k in hl else ""
            cells = "".join(
                f'<td class="num">{_e(format_value(v, digits))}</td>' if _is_num(v) or v is None
                else f"<td>{_e(format_value(v, digits))}</td>"
                for v in r
            )
            out.append(f"<tr{cls}>{cells}</tr>")
        if not body:
            out.append(f'<tr><td colspan="{max(len(cols), 1)}">(no rows)</td></tr>')
        out.append("</tbody></table></div>")
        self._blocks.append("".join(out))
        return self

    @staticmethod
    def _image_uri(image: str | os.PathLike[str] | bytes | Figure) -> str:
        if isinstance(image, Figure):
            data = figure_to_png(image)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
        elif isinstance(image, (str, os.PathLike)):
            p = Path(image)
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise BadFileError(p, f"cannot read image for the report ({exc.strerror or exc})") from None
        else:
            raise ConfigError(
                "report image must be a file path, PNG/JPEG bytes or a matplotlib Figure; "
                f"got {type(image).__name__}"
            )
        mime = _sniff_image(data)
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def _figure_html(self, image: Any, caption: str, alt: str | None) -> str:
        uri = self._image_uri(image)
        alt_text = alt if alt is not None else (caption or "figure")
        cap = f"<figcaption>{_inline(caption)}</figcaption>" if caption else ""
        return f'<figure><img src="{uri}" alt="{_e(alt_text)}">{cap}</figure>'

    def add_image(
        self,
        image: str | os.PathLike[str] | bytes | Figure,
        caption: str = "",
        *,
        alt: str | None = None,
    ) -> "Report":
        """Embed a PNG/JPEG (path, bytes or Figure) as a data URI, with a caption."""
        self._blocks.append(self._figure_html(image, caption, alt))
        return self

    def add_images(self, items: Sequence[tuple[Any, str]]) -> "Report":
        """Several images side by side (they wrap on narrow screens)."""
        figs = "".join(self._figure_html(img, cap, None) for img, cap in items)
        self._blocks.append(f'<div class="row">{figs}</div>')
        return self

    def add_code(self, code: Any, *, caption: str | None = None) -> "Report":
        """Preformatted text; dicts and lists are shown as indented JSON."""
        if not isinstance(code, str):
            code = json.dumps(code, indent=2, default=_default_json, ensure_ascii=False)
        cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
        self._blocks.append(f"<figure>{cap}<pre><code>{_e(code)}</code></pre></figure>")
        return self

    # -- output ---------------------------------------------------------------------------
    def to_html(self) -> str:
        """The whole page as a string."""
        now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        head = (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        )
        parts = [head, f"<h1>{_e(self.title)}</h1>"]
        if self.subtitle:
            parts.append(f'<p class="subtitle">{_e(self.subtitle)}</p>')
        if self.toc and len(self._toc) > 1:
            links = "".join(f'<a href="#{_e(a)}">{_e(t)}</a>' for a, t in self._toc)
            parts.append(f'<nav class="toc">{links}</nav>')
        parts.extend(self._blocks)
        parts.append(
            f"<footer>Generated by imbvision {_e(__version__)} on {_e(now)}. "
            "Self-contained page: no scripts, no external resources.</footer>"
        )
        parts.append("\n</main>\n</body>\n</html>\n")
        return "\n".join(parts)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page atomically (UTF-8); return the path."""
        path = Path(path)
        write_text(path, self.to_html())
        return path


def _default_json(obj: Any) -> Any:
    try:
        return _default(obj)
    except TypeError:
        return repr(obj)


# ================================================================================ run page
def _split(results: Mapping[str, Any], name: str, required: bool) -> dict[str, Any] | None:
    part = results.get(name)
    if part is None:
        if required:
            raise ConfigError(
                f"results needs a '{name}' entry {{'y': labels, 'score': scores}}; "
                f"got keys {sorted(results)}"
            )
        return None
    if not isinstance(part, Mapping) or "y" not in part or "score" not in part:
        raise ConfigError(
            f"results['{name}'] must be a dict with 'y' and 'score' arrays; got "
            f"{sorted(part) if isinstance(part, Mapping) else type(part).__name__}"
        )
    y, s = check_binary_scores(part["y"], part["score"], what=f"{name} scores")
    out = dict(part)
    out["y"], out["score"] = y, s
    for key in ("score_uncalibrated",):
        if out.get(key) is not None:
            _, out[key] = check_binary_scores(y, out[key], what=f"{name} {key}")
    paths = out.get("paths")
    if paths is not None:
        paths = [str(p) for p in paths]
        if len(paths) != len(y):
            raise DataError(
                f"results['{name}']['paths'] has {len(paths)} entries for {len(y)} samples; "
                "give one path per sample"
            )
        out["paths"] = paths
    return out


def _threshold_choice(results: Mapping[str, Any], val: dict | None) -> tuple[ThresholdChoice, str]:
    t = results.get("threshold")
    if isinstance(t, ThresholdChoice):
        return t, ""
    if isinstance(t, Mapping):
        return ThresholdChoice.from_dict(dict(t)), ""
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return ThresholdChoice.from_dict({"threshold": float(t)}), ""
    if t is not None:
        raise ConfigError(
            "results['threshold'] must be a ThresholdChoice, its to_dict() or a number; "
            f"got {type(t).__name__}"
        )
    if val is not None:
        return tune_threshold(val["y"], val["score"], "max-f1"), (
            "No threshold was given; it was tuned here with max-f1 on the validation scores."
        )
    return ThresholdChoice.from_dict({"threshold": 0.5}), (
        "No threshold and no validation scores were given; 0.5 was used."
    )


def _ci(m: Mapping[str, Any], key: str) -> str:
    ci = m.get(f"{key}_ci")
    if not ci:
        return ""
    return f"{round(100 * m['ci_level'])}% CI {ci[0]:.3f} – {ci[1]:.3f}"


_MAX_DIRECT_BYTES = 3 * 1024 * 1024


def _embeddable(image: Any) -> bytes | None:
    """Bytes of a small PNG/JPEG/GIF/WebP file to embed as is, else None."""
    if not isinstance(image, (str, os.PathLike)):
        return None
    try:
        p = Path(image)
        if not p.is_file() or p.stat().st_size > _MAX_DIRECT_BYTES:
            return None
        data = p.read_bytes()
        _sniff_image(data)
    except (OSError, ConfigError):
        return None
    return data


def _worst(y: np.ndarray, s: np.ndarray, t: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` lowest-scored positives below ``t`` and highest-scored negatives at or above."""
    fn = np.flatnonzero((y == 1) & (s < t))
    fp = np.flatnonzero((y == 0) & (s >= t))
    return fn[np.argsort(s[fn], kind="stable")][:k], fp[np.argsort(-s[fp], kind="stable")][:k]


def build_run_report(
    run_dir: str | os.PathLike[str],
    results: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    images: Mapping[str, Sequence[tuple[Any, str]]] | None = None,
    title: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    n_worst: int = 12,
) -> Path:
    """Write ``run_dir/report.html`` (and ``run_dir/plots/*.png``) for one run.

    Everything is computed here from labels and scores; callers pass arrays.

    Parameters
    ----------
    run_dir
        The run folder; created if needed.
    results
        A dict with these keys (arrays may be lists or numpy arrays)::

            "test": {                     # required: the held-out split
                "y": (n,) 0/1 labels,     # 1 = rare positive
                "score": (n,) final probabilities (after any prior correction /
                         calibration) — the values the threshold applies to,
                "score_uncalibrated": (n,) optional, before calibration —
                         enables the before/after reliability diagram,
                "paths": n image paths, optional — enables the worst false
                         negative / false positive thumbnails,
            },
            "val": {...same keys...},     # optional: where the threshold was tuned
            "threshold": ThresholdChoice | ThresholdChoice.to_dict() | float,
                                          # optional: tuned here with max-f1 on
                                          # "val" if absent (0.5 without "val")
            "calibration": {              # optional, shown as given
                "method": "none" | "platt" | "isotonic",
                "prior_correction": {"train_prior": 0.5, "true_prior": 0.02} | None,
                ... any other JSON-able details (e.g. Calibrator.to_dict()),
            },
            "name": "focal+balanced-sampler",   # optional: run / strategy label
            "notes": ["...", ...],               # optional: shown as callouts on top

    config
        The resolved configuration, shown verbatim as JSON.
    images
        Optional ``{section title: [(image path or array, caption), ...]}``,
        e.g. strategy examples (augmented / synthesised minority images). A
        section is drawn as a thumbnail grid; a section holding a single image
        file (a ready-made figure up to 3 MB) is embedded full size instead.
    title
        Page title; default ``"imbvision run — <name or folder>"``.
    n_boot, seed
        Bootstrap replicates and seed for the confidence intervals.
    n_worst
        How many worst false negatives / false positives to show.

    Returns
    -------
    pathlib.Path
        The written ``report.html``.
    """
    if not isinstance(results, Mapping):
        raise ConfigError(f"results must be a dict; got {type(results).__name__}")
    run_dir = Path(run_dir)
    plots_dir = run_dir / "plots"
    test = _split(results, "test", required=True)
    val = _split(results, "val", required=False)
    assert test is not None
    choice, auto_note = _threshold_choice(results, val)
    t = float(choice.threshold)
    y, s = test["y"], test["score"]
    m = evaluate_scores(y, s, t, n_boot=n_boot, seed=seed)
    name = str(results.get("name") or run_dir.name)

    def png(fig: Figure, stem: str) -> bytes:
        data = figure_to_png(fig)
        with atomic_write(plots_dir / f"{stem}.png", "wb") as fh:
            fh.write(data)
        return data

    rep = Report(
        title or f"imbvision run — {name}",
        subtitle=(
            f"Run folder {run_dir} · test split: {m['n']:,} images, {m['n_pos']:,} positive "
            f"({100 * m['positive_rate']:.2f}%)"
        ),
    )
    notes = results.get("notes") or []
    for note in [notes] if isinstance(notes, str) else notes:
        rep.add_callout(str(note), "note")
    if auto_note:
        rep.add_callout(auto_note, "warning")
    if m["n_pos"] < 30:
        rep.add_callout(
            f"Only {m['n_pos']} positives in the test split: every number below is uncertain — "
            "read the confidence intervals, not the point estimates.",
            "warning",
        )

    # ---- summary
    rep.add_heading("Summary")
    rep.add_cards(
        [
            ("Average precision", m["ap"],
             " · ".join(filter(None, [_ci(m, "ap"), f"chance {m['positive_rate']:.3f}"]))),
            ("ROC-AUC", m["roc_auc"], " · ".join(filter(None, [_ci(m, "roc_auc"), "chance 0.500"]))),
            ("Precision", m["precision"], f"at threshold {t:.3g}"),
            ("Recall", m["recall"], f"at threshold {t:.3g}"),
            ("F1", m["f1"], f"at threshold {t:.3g}"),
            ("MCC", m["mcc"], "−1 … 1, 0 = chance"),
        ]
    )
    rep.add_text(
        f"At threshold **{t:.4g}** the model flags {m['tp'] + m['fp']:,} of {m['n']:,} test images "
        f"({100 * m['flagged_rate']:.2f}%), finding {m['tp']:,} of {m['n_pos']:,} positives. "
        f"Accuracy is {m['accuracy']:.3f}, but answering negative for every image would already "
        f"score {m['always_negative_accuracy']:.3f} — judge the model by AP, recall and precision."
    )
    rep.add_table(
        [
            ["average precision", m["ap"], m["positive_rate"], "random ranking = positive rate"],
            ["ROC-AUC", m["roc_auc"], 0.5, "random ranking"],
            ["accuracy", m["accuracy"], m["always_negative_accuracy"], "misleading under imbalance"],
            ["balanced accuracy", m["balanced_accuracy"], 0.5, "mean of recall and specificity"],
            ["precision", m["precision"], None, "flags that are right"],
            ["recall (sensitivity)", m["recall"], 0.0, "positives found"],
            ["specificity", m["specificity"], 1.0, "negatives left alone"],
            ["F1", m["f1"], 0.0, ""],
            ["MCC", m["mcc"], 0.0, ""],
            ["G-mean", m["g_mean"], 0.0, "√(recall · specificity)"],
            [f"recall at precision ≥ {m['at_precision']:g}", m["recall_at_precision"], 0.0, "best threshold"],
            [f"precision at recall ≥ {m['at_recall']:g}", m["precision_at_recall"], m["positive_rate"], "best threshold"],
        ],
        header=["metric (test)", "model", "always negative / chance", "meaning"],
        caption=f"Test metrics at threshold {t:.4g}, next to a model that never flags anything",
    )
    rep.add_heading("Confusion matrix", level=3)
    rep.add_table(
        [
            ["actually positive", m["tp"], m["fn"], m["n_pos"]],
            ["actually negative", m["fp"], m["tn"], m["n"] - m["n_pos"]],
            ["total", m["tp"] + m["fp"], m["tn"] + m["fn"], m["n"]],
        ],
        header=["test", "flagged positive", "not flagged", "total"],
        caption="Rows: truth; columns: decision at the threshold",
    )

    # ---- curves
    rep.add_heading("Curves")
    pr = png(plot_pr_curve(y, s, label=name, threshold=t), "pr_curve")
    roc = png(plot_roc_curve(y, s, label=name, threshold=t), "roc_curve")
    rep.add_images(
        [
            (pr, "Precision–recall on test. The dashed line is the positive rate (a random "
                 "ranking); the dot is the operating threshold."),
            (roc, "ROC on test. ROC looks flattering under imbalance; prefer the PR curve."),
        ]
    )
    hist = png(plot_score_histograms(y, s, t, title="Test scores by true class"), "score_histograms")
    rep.add_image(hist, "Test score distributions (log-scale counts) with the threshold.")

    # ---- threshold
    rep.add_heading("Threshold")
    rep.add_table(
        [
            ["rule", str(choice.rule)],
            ["threshold", f"{t:.6g}"],
            ["constraint met on validation", choice.feasible],
            ["note", choice.note or "—"],
        ],
        header=["setting", "value"],
        digits=4,
    )
    if not choice.feasible:
        rep.add_callout(
            f"The threshold rule `{choice.rule}` could not be met on validation. {choice.note}",
            "warning",
        )
    compare = []
    keys = ("precision", "recall", "f1", "flagged_rate", "tp", "fp", "fn")
    if val is not None:
        mv = threshold_metrics(val["y"], val["score"], t)
        compare.append({"split": "validation (threshold chosen here)", **{k: mv[k] for k in keys}})
    elif choice.achieved:
        compare.append({"split": "validation (as recorded)",
                        **{k: choice.achieved.get(k) for k in keys}})
    compare.append({"split": "test", **{k: m[k] for k in keys}})
    rep.add_table(compare, caption="The chosen threshold on validation and on test")
    table = threshold_table(y, s, [*DEFAULT_THRESHOLD_GRID, t])
    hl = [k for k, r in enumerate(table) if r["threshold"] == t]
    rep.add_table(
        table,
        caption="Test operating points (the chosen threshold highlighted). For information "
        "only: pick thresholds on validation, never from this table.",
        digits=3,
        highlight_rows=hl,
    )

    # ---- calibration
    rep.add_heading("Calibration")
    cal = results.get("calibration") or {}
    raw = test.get("score_uncalibrated")
    if raw is not None:
        rel = png(plot_reliability(y, raw, s), "reliability")
        rep.add_table(
            [
                ["Brier score (lower is better)", brier(y, raw), brier(y, s)],
                ["expected calibration error", expected_calibration_error(y, raw),
                 expected_calibration_error(y, s)],
            ],
            header=["test", "before calibration", "after calibration"],
            digits=4,
        )
    else:
        rel = png(plot_reliability(y, s, labels=("model", "")), "reliability")
        rep.add_table(
            [["Brier score (lower is better)", brier(y, s)],
             ["expected calibration error", expected_calibration_error(y, s)]],
            header=["test", "model"],
            digits=4,
        )
    rep.add_image(rel, "Reliability on test: observed positive rate per bin of predicted "
                       "probability; the lower panel counts predictions per bin.")
    if cal:
        rep.add_code(dict(cal), caption="Calibration settings")

    # ---- errors
    rep.add_heading("Errors")
    paths = test.get("paths")
    if paths is None:
        rep.add_text("Give `results['test']['paths']` to see the worst false negatives and false "
                     "positives here.")
    else:
        fn_idx, fp_idx = _worst(y, s, t, n_worst)
        for label, idx, stem, empty in (
            ("Worst false negatives (positives with the lowest scores)", fn_idx,
             "false_negatives", "No false negatives at this threshold."),
            ("Worst false positives (negatives with the highest scores)", fp_idx,
             "false_positives", "No false positives at this threshold."),
        ):
            rep.add_heading(label, level=3)
            if len(idx) == 0:
                rep.add_text(empty)
                continue
            items = [(paths[i], f"score {s[i]:.3f} · {Path(paths[i]).name}") for i in idx]
            rep.add_image(png(plot_image_grid(items, ncols=6), stem), label)
            rep.add_table([{"score": float(s[i]), "file": paths[i]} for i in idx], digits=3)

    # ---- examples
    if images:
        rep.add_heading("Examples")
        for k, (section, items) in enumerate(images.items()):
            rep.add_heading(str(section), level=3)
            items = list(items)
            if not items:
                rep.add_text("(no images)")
                continue
            direct = _embeddable(items[0][0]) if len(items) == 1 else None
            if direct is not None:  # one ready-made figure (e.g. a saved grid): show it full size
                rep.add_image(direct, str(items[0][1]))
                continue
            stem = "examples_" + (re.sub(r"[^a-z0-9]+", "_", str(section).lower()).strip("_")[:40]
                                  or str(k))
            rep.add_image(png(plot_image_grid(items, ncols=6), f"{stem}_{k}"), str(section))

    # ---- configuration
    rep.add_heading("Configuration")
    rep.add_code(dict(config) if isinstance(config, Mapping) else config,
                 caption="Resolved configuration of this run")
    return rep.save(run_dir / "report.html")
