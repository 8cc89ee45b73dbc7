"""Results that silently belong to other data: every resumable artefact is keyed by the data itself.

The source string of a manifest stays the same when its rows change; the
compare cells, synthetic caches and run folders must not.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from imbvision.workflows.compare import run_compare

STRATS = "ce,weighted-ce"


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    base = manifest.parent
    for r in rows:  # absolute paths, so the copy can live anywhere
        r["path"] = str((base / r["path"]).resolve())
        if r.get("mask"):
            r["mask"] = str((base / r["mask"]).resolve())
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _kw(tiny_kwargs) -> dict:
    kw = {k: v for k, v in tiny_kwargs.items() if k not in ("max_synthetic", "n_boot", "data")}
    return dict(strategies=STRATS, seeds=2, n_boot=100, progress=False, **kw)


def _aps(res) -> dict[str, float]:
    return {r["strategy"]: r["ap_mean"] for r in res.leaderboard}


def _deltas(res) -> dict[str, float]:
    return {r["strategy"]: r.get("delta_ap") for r in res.leaderboard}


def test_relabelled_rows_recompute_every_cell(tmp_path, tiny_manifest, tiny_kwargs):
    rows = _rows(tiny_manifest)
    manifest = _write(tmp_path / "data" / "m.csv", rows)
    out = tmp_path / "cmp"
    first = run_compare(str(manifest), out=out, **_kw(tiny_kwargs))
    # Relabel three negatives as positives: same source string, other data.
    flipped = 0
    for r in rows:
        if r["label"] == "0" and flipped < 3:
            r["label"], flipped = "1", flipped + 1
    _write(manifest, rows)
    again = run_compare(str(manifest), out=out, **_kw(tiny_kwargs))
    fresh = run_compare(str(manifest), out=tmp_path / "fresh", **_kw(tiny_kwargs))
    assert _aps(again) == _aps(fresh) and _deltas(again) == _deltas(fresh)
    assert _aps(again) != _aps(first)  # the old cells were not reused


def test_dropped_rows_recompute_without_index_error(tmp_path, tiny_manifest, tiny_kwargs):
    rows = _rows(tiny_manifest)
    manifest = _write(tmp_path / "data" / "m.csv", rows)
    out = tmp_path / "cmp"
    run_compare(str(manifest), out=out, **_kw(tiny_kwargs))
    neg = [i for i, r in enumerate(rows) if r["label"] == "0"][:10]
    _write(manifest, [r for i, r in enumerate(rows) if i not in neg])
    again = run_compare(str(manifest), out=out, **_kw(tiny_kwargs))
    fresh = run_compare(str(manifest), out=tmp_path / "fresh", **_kw(tiny_kwargs))
    assert _aps(again) == _aps(fresh)
    for p in (out / "cells").glob("*.json"):
        assert max(json.loads(p.read_text())["test_index"]) < len(rows) - 10


def test_zero_byte_and_garbled_cells_are_recomputed(tmp_path, tiny_manifest, tiny_kwargs):
    out = tmp_path / "cmp"
    first = run_compare(str(tiny_manifest), out=out, **_kw(tiny_kwargs))
    cells = sorted((out / "cells").glob("*.json"))
    cells[0].write_bytes(b"")
    cells[1].write_text('{"ap": 0.5, "test_ind', encoding="utf-8")
    again = run_compare(str(tiny_manifest), out=out, **_kw(tiny_kwargs))
    assert _aps(again) == _aps(first)
    for p in cells[:2]:
        assert json.loads(p.read_text())["key"]


def test_damaged_synthetic_cache_is_recomputed(tmp_path, tiny_manifest, tiny_kwargs):
    kw = dict(_kw(tiny_kwargs), strategies="ce,augment-oversample", seeds=1, max_synthetic=20)
    out = tmp_path / "cmp"
    first = run_compare(str(tiny_manifest), out=out, **kw)
    caches = sorted((out / "synthetic").glob("*.safetensors"))
    assert caches
    caches[0].write_bytes(caches[0].read_bytes()[:100])  # truncated
    for cell in (out / "cells").glob("augment-oversample*.json"):
        cell.unlink()  # so the cell needs the damaged cache again
    again = run_compare(str(tiny_manifest), out=out, **kw)
    assert _aps(again) == _aps(first)
    from safetensors import safe_open
    with safe_open(str(caches[0]), framework="numpy") as fh:
        assert fh.metadata()["key"] and fh.get_tensor("X").shape[0] > 0


def test_failed_compare_leaves_nothing_that_blocks_the_fix(tmp_path, tiny_kwargs, class_folders):
    """Forgetting --positive on a class-folder source, then the corrected command into the same --out."""
    root = class_folders(tmp_path / "folders", 40, 12)
    out = tmp_path / "cmp"
    kw = dict(_kw(tiny_kwargs), seeds=1)
    with pytest.raises(ValueError, match="--positive"):
        run_compare(str(root), out=out, **kw)
    assert not (out / "config.json").exists()
    res = run_compare(str(root), out=out, positive="defect", **kw)
    assert {r["strategy"] for r in res.leaderboard} == {"ce", "weighted-ce"}
