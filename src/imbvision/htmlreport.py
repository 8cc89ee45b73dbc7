"""One HTML page builder for every imbvision report (run, compare, audit).

A page is built block by block with :class:`Report` and written with
:meth:`Report.save`: one self-contained file, inline CSS, images as ``data:``
URIs, no JavaScript, and a Content-Security-Policy that forbids scripts and
remote resources. Every piece of user text (titles, captions, table cells,
class names, file paths, configuration values) is HTML-escaped; only
:meth:`Report.add_html` takes ready markup, and its callers escape what they
put in it.

:func:`thumbnail_jpeg` draws an image with its mask outline (and, later, a
heat-map overlay) for the click-to-enlarge :meth:`Report.add_gallery`.

Hand-written rather than a template engine (Jinja2): the pages are a few
dozen blocks, and one small module keeps escaping rules in one place.

Why one file: the page builder, its CSS and the thumbnail drawing must stay together so every
report (run, compare, audit) looks and behaves the same.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from ._version import __version__
from ._io import _default, write_text
from .errors import BadFileError, ConfigError

if TYPE_CHECKING:  # matplotlib is imported only when a Figure is embedded
    from matplotlib.figure import Figure

__all__ = ["Report", "GalleryItem", "format_value", "format_prob", "thumbnail_jpeg", "draw_outline", "image_array", "data_uri",
           "escape"]

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
th { background: var(--soft); font-weight: 600; overflow-wrap: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { overflow-wrap: normal; min-width: 8em; }
td.name .tok { white-space: nowrap; }
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
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 14px;
           margin: 10px 0 18px; }
.gallery figure { margin: 0; }
.gallery figure img { width: 100%; height: 220px; object-fit: contain; background: #111; cursor: zoom-in; }
.gallery figcaption { font-size: 0.85em; }
.zoom .close { display: none; }
.zoom:target { position: fixed; inset: 0; z-index: 10; margin: 0; background: rgba(10, 12, 16, 0.88);
               display: flex; flex-direction: column; align-items: center; justify-content: center; }
.zoom:target img { width: min(92vw, 84vh); height: min(92vw, 84vh); object-fit: contain; cursor: zoom-out; }
.zoom:target figcaption { color: #eee; font-size: 0.95em; }
.zoom:target .close { display: block; position: absolute; inset: 0; z-index: 2; }
.skip { background: var(--warn-bg); border-left: 4px solid #d29922; padding: 8px 12px; margin: 8px 0; }
.note { background: var(--note-bg); border-left: 4px solid var(--accent); padding: 8px 12px; margin: 8px 0; }
.bad { color: #b42318; font-weight: 600; } .ok { color: #067647; }
.path { font-family: ui-monospace, Menlo, monospace; font-size: .8em; color: var(--muted); word-break: break-all; }
@media print { nav.toc { display: none; } pre { max-height: none; } .zoom:target { position: static; background: none; } }
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


#: A number with its interval or note as text: "0.812 [0.780, 0.840]", "+0.012 (3/5)", "—".
_NUMERIC_TEXT = re.compile(r"^\s*(?:[−+\-]?[\d.,/]+%?|—)(?:\s*[\[(][^\])]*[\])])?\s*\*?\s*$")


def _is_numeric_text(v: Any) -> bool:
    """A text cell that reads as one number (maybe with an interval): kept on one line, right-aligned."""
    return isinstance(v, str) and bool(_NUMERIC_TEXT.match(v))


def _name_cell(text: str) -> str:
    """A one-word cell (a strategy such as ``focal:gamma=2+copy-paste``): it may wrap between the
    ``+``-joined parts, never inside one (a hyphen is not a place to cut a name)."""
    parts = str(text).split("+")
    return "+<wbr>".join(f'<span class="tok">{_e(p)}</span>' for p in parts)


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

    def __init__(self, title: str, *, subtitle: str | None = None, toc: bool = True,
                 extra_css: str = "") -> None:
        self.title = str(title)
        self.extra_css = str(extra_css)
        self.subtitle = subtitle
        self.toc = toc
        self._blocks: list[str] = []
        self._toc: list[tuple[str, str]] = []
        self._ids: set[str] = set()
        self._n_gallery = 0

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
                f'<td class="num">{_e(format_value(v, digits))}</td>' if _is_num(v) or v is None or _is_numeric_text(v)
                else f'<td class="name">{_name_cell(format_value(v, digits))}</td>'
                if isinstance(v, str) and " " not in v and "/" not in v and 0 < len(v) <= 60
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
    def _image_uri(image: "str | os.PathLike[str] | bytes | Figure") -> str:
        if type(image).__name__ == "Figure" and hasattr(image, "savefig"):
            import io

            buf = io.BytesIO()  # as evaluation.plots.figure_to_png (which sits above this module)
            image.savefig(buf, format="png", dpi=100)
            data = buf.getvalue()
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
        image: "str | os.PathLike[str] | bytes | Figure",
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

    def add_html(self, markup: str) -> "Report":
        """Ready HTML (trusted): the caller escapes every piece of user text in it."""
        self._blocks.append(str(markup))
        return self

    def add_gallery(self, items: Sequence["GalleryItem | tuple[bytes | None, str]"], *,
                    empty: str = "(no images)") -> "Report":
        """Thumbnails in a grid; a click shows the image large (CSS ``:target``, no script).

        ``items`` are :class:`GalleryItem` or ``(jpeg/png bytes or None, caption)``
        pairs; ``None`` (an unreadable file) shows as a caption with "cannot show".
        """
        figs = []
        for it in items:
            it = it if isinstance(it, GalleryItem) else GalleryItem(*it)
            self._n_gallery += 1
            anchor = f"img-{self._n_gallery}"
            cap = _inline(it.caption)
            if it.image is None:
                figs.append(f"<figure><div class=\"skip\">cannot show this image</div><figcaption>{cap}</figcaption></figure>")
                continue
            uri = self._image_uri(it.image)
            alt = _e(it.alt or it.caption or "image")
            # embedded once: :target turns the figure itself into the full-window view, and
            # the transparent "close" link over it takes the click that closes it
            figs.append(
                f'<figure class="zoom" id="{anchor}"><a href="#{anchor}"><img src="{uri}" alt="{alt}"></a>'
                f'<figcaption>{cap}</figcaption><a class="close" href="#_close" title="close"></a></figure>'
            )
        self._blocks.append(f'<div class="gallery">{"".join(figs)}</div>' if figs else f"<p>{_e(empty)}</p>")
        return self

    # -- output ---------------------------------------------------------------------------
    def to_html(self) -> str:
        """The whole page as a string."""
        now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        head = (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(self.title)}</title>\n<style>{_CSS}{self.extra_css}</style>\n</head>\n<body>\n<main>\n"
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




def escape(text: Any) -> str:
    """HTML-escape any value (quotes included) -- for markup given to :meth:`Report.add_html`."""
    return _e(text)


def data_uri(data: bytes) -> str:
    """A ``data:`` URI for PNG/JPEG/GIF/WebP bytes (the type is read from the bytes)."""
    return f"data:{_sniff_image(data)};base64,{base64.b64encode(data).decode('ascii')}"


def format_prob(p: Any) -> str:
    """One format for every probability on a page: 3 decimals, ``<0.001`` / ``>0.999`` at the ends.

    ``0.000`` beside ``1.03e-76`` reads as two different things; both are "below 0.001".
    """
    if p is None:
        return "—"
    f = float(p)
    if f != f:
        return "—"
    if 0 < f < 0.0005:
        return "<0.001"
    if 0.9995 <= f < 1:
        return ">0.999"
    return f"{f:.3f}"


@dataclass(frozen=True)
class GalleryItem:
    """One image of :meth:`Report.add_gallery`: encoded bytes (or None), caption, alt text."""

    image: bytes | None
    caption: str = ""
    alt: str | None = None


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels on the border of a boolean mask, grown to ``width`` pixels."""
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    edge = m & ~inner
    out = edge.copy()
    for dy in range(-width + 1, width):
        for dx in range(-width + 1, width):
            out |= np.roll(np.roll(edge, dy, 0), dx, 1)
    return out


def image_array(image: Any) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 array from an image file or an array (grey, RGB, RGBA; uint8 or float in [0, 1]).

    Raises
    ------
    imbvision.errors.BadFileError
        The file cannot be decoded (from :func:`imbvision.data.decode.load_image_array`).
    ValueError
        The array is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        from .data.decode import load_image_array

        return load_image_array(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.size == 0:
        raise ValueError(f"expected an (H, W, 3) array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def draw_outline(image: Any, mask: Any, *, width: int | None = None,
                 rgb: tuple[int, int, int] = (255, 40, 40)) -> np.ndarray:
    """A copy of an ``(H, W, 3)`` uint8 image with the border of ``mask`` drawn in ``rgb``.

    ``mask`` is an ``(H, W)`` bool array (None or all-false leaves the image as is);
    ``width`` defaults to about 1/150 of the longer side (at least 1 pixel).
    """
    arr = np.array(image, dtype=np.uint8, copy=True)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if mask is None:
        return arr
    m = np.asarray(mask, dtype=bool)
    if m.shape != arr.shape[:2]:
        raise ConfigError(f"mask shape {m.shape} does not match image shape {arr.shape[:2]}")
    if m.any():
        arr[_outline(m, width or max(1, max(m.shape) // 150))] = rgb
    return arr


def thumbnail_jpeg(
    image: Any,
    *,
    mask: Any = None,
    overlay: Any = None,
    max_side: int = 640,
    outline_rgb: tuple[int, int, int] | None = None,
    quality: int = 85,
) -> bytes | None:
    """A JPEG of an image for a report, with the mask outline and an optional heat map.

    Parameters
    ----------
    image
        Image file path, or an ``(H, W, 3)`` / ``(H, W)`` uint8 array.
    mask
        Mask file path or ``(H, W)`` bool array (same size as the image), or None.
        Its outline is drawn in ``outline_rgb``, about 1/200 of the image side thick (default: red on
        a plain image, green on a heat map, whose colour map is red where it is hot).
    overlay
        Hook for heat maps (e.g. from ``Model.explain``): an ``(h, w)`` float array
        in [0, 1] at any resolution (resized to the image and blended with the
        ``inferno`` colour map, 45% opacity), or an ``(H, W, 3)`` uint8 image
        shown instead of the photo. None draws nothing.
    max_side
        Longest side of the JPEG in pixels; smaller images keep their size (the
        browser enlarges them when clicked).

    Returns
    -------
    bytes or None
        JPEG bytes; ``None`` when the image cannot be decoded (never raises for a bad file).
    """
    from PIL import Image

    try:
        arr = image_array(image)
    except Exception:
        return None
    h, w = arr.shape[:2]
    if overlay is not None:
        ov = np.asarray(overlay)
        if ov.ndim == 3 and ov.shape[:2] == (h, w):
            arr = ov[..., :3].astype(np.uint8)
        elif ov.ndim == 2:
            from matplotlib import colormaps

            heat = np.asarray(Image.fromarray(np.clip(ov, 0, 1).astype(np.float32)).resize((w, h), Image.BILINEAR))
            rgb = colormaps["inferno"](heat)[..., :3] * 255.0
            arr = (0.55 * arr + 0.45 * rgb).astype(np.uint8)
    if mask is not None:
        try:
            if isinstance(mask, (str, os.PathLike)):
                from .data.decode import load_mask

                m = load_mask(mask, size=(w, h)).numpy()
            else:
                m = np.asarray(mask, dtype=bool)
            if m.shape == (h, w):
                width = max(1, int(round(max(h, w) / max(1, max_side) * 1.5)), max(h, w) // 200)
                rgb = outline_rgb or ((0, 255, 0) if overlay is not None else (255, 40, 40))
                arr = draw_outline(arr, m, width=width, rgb=rgb)
        except Exception:  # a bad mask must not hide the image; the audit reports bad masks
            pass
    im = Image.fromarray(arr)
    im.thumbnail((max_side, max_side), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, subsampling=0)  # 4:4:4 keeps a thin red outline red
    return buf.getvalue()
