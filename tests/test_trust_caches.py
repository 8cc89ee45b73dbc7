"""Issue 19 §1: every cached artefact is verified when read; a damaged entry is recomputed, never used.

Each attack edits a cache as a careless script or a failing disk would, then reruns: the result must
equal a clean run's, with one warning line saying what was recomputed.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from imbvision.backbones import create_backbone, embed_dataset
from imbvision.backbones.patches import patch_features
from imbvision.data.sources import load_source


@pytest.fixture(scope="module")
def bb():
    return create_backbone("test_efficientnet", weights="none")


@pytest.fixture(scope="module")
def records(tiny_manifest):
    return load_source(str(tiny_manifest)).records[:12]


def _patches(records, bb, cache):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        f = patch_features(records, backbone=bb, image_size=64, cache_dir=cache, engine="torch")
    arr = np.stack([f.image(i) for i in range(len(f))])
    return f, arr, [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]


def _rows_file(cache: Path) -> Path:
    return next(cache.rglob("rows.f16"))


def test_overwritten_patch_rows_are_recomputed(tmp_path, records, bb):
    cache = tmp_path / "c"
    f0, clean, _ = _patches(records, bb, cache)
    rows = _rows_file(cache)
    mm = np.memmap(rows, dtype=np.float16, mode="r+")
    n = mm.size
    idx = np.random.default_rng(0).choice(n, n // 50, replace=False)  # 2% of the values, as in the issue
    mm[idx] = np.float16(7.0)
    mm.flush()
    del mm
    from imbvision.backbones import patch_store as P
    P._VERIFIED.clear()  # a new process: nothing checked yet
    f1, again, msgs = _patches(records, bb, cache)
    np.testing.assert_array_equal(again, clean)
    assert f1.stats["computed"] == len(records)
    assert any("failed their SHA-256 check" in m and "rows.f16" in m for m in msgs), msgs
    P._VERIFIED.clear()
    f2, third, msgs = _patches(records, bb, cache)  # recomputed rows are whole: read from the cache now
    np.testing.assert_array_equal(third, clean)
    assert f2.stats["computed"] == 0 and not msgs


def test_torn_tail_is_cut_back_to_the_last_whole_row(tmp_path, records, bb):
    cache = tmp_path / "c"
    _, clean_a, _ = _patches(records[:5], bb, cache)
    rows = _rows_file(cache)
    size = rows.stat().st_size
    with open(rows, "ab") as fh:  # a torn append: half a row past the commit marker
        fh.write(b"\x01" * ((size // 5) // 2 + 7))
    f, arr, _ = _patches(records, bb, cache)  # appends the other 7 after the last whole row
    _, fresh, _ = _patches(records, bb, tmp_path / "clean")
    np.testing.assert_array_equal(arr, fresh)
    assert rows.stat().st_size == size // 5 * len(records)
    np.testing.assert_array_equal(arr[:5], clean_a)


def test_cut_rows_file_is_recomputed(tmp_path, records, bb):
    cache = tmp_path / "c"
    _, clean, _ = _patches(records, bb, cache)
    rows = _rows_file(cache)
    size = rows.stat().st_size
    os.truncate(rows, size - size // len(records) // 2)  # the last row cut mid-way
    f, arr, _ = _patches(records, bb, cache)
    np.testing.assert_array_equal(arr[:-1], clean[:-1])  # the whole rows are kept as they were
    # the cut row is recomputed alone (a batch of one): equal up to float16 rounding, never the torn bytes
    np.testing.assert_allclose(arr[-1], clean[-1], rtol=0, atol=1e-4)
    assert f.stats["computed"] == 1


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` behave as a read-only mount (EROFS on any write), also when the tests run as root."""
    import builtins
    import errno

    from imbvision import _io
    from imbvision.backbones import patch_store as P

    real_open, real_mkstemp = builtins.open, _io.tempfile.mkstemp

    def ro_open(file, mode="r", *a, **k):
        if Path(file).resolve().is_relative_to(folder.resolve()) and any(c in mode for c in "wa+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *a, **k)

    def ro_mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(P, "open", ro_open, raising=False)
    monkeypatch.setattr(_io.tempfile, "mkstemp", ro_mkstemp)


@pytest.mark.parametrize("filled", [6, 12])
def test_read_only_cache_goes_on_in_memory(tmp_path, records, bb, monkeypatch, filled):
    cache = tmp_path / "c"
    _patches(records[:filled], bb, cache)
    _, clean, _ = _patches(records, bb, tmp_path / "clean")
    before = {p.name: p.read_bytes() for p in _rows_file(cache).parent.iterdir()}
    _read_only(monkeypatch, cache)
    f, arr, msgs = _patches(records, bb, cache)
    np.testing.assert_array_equal(arr, clean)
    assert f.stats["computed"] == 12 - filled and f.stats["from_cache"] == filled
    assert len([m for m in msgs if "cannot be written" in m]) == (1 if filled < 12 else 0)
    assert {p.name: p.read_bytes() for p in _rows_file(cache).parent.iterdir()} == before  # nothing rewritten


def test_full_disk_while_appending_leaves_no_partial_row(tmp_path, records, bb, monkeypatch):
    import errno

    from imbvision.backbones import patch_store as P

    cache = tmp_path / "c"
    _patches(records[:4], bb, cache)
    rows = _rows_file(cache)
    size = rows.stat().st_size
    real_fsync = os.fsync

    def full(fd):  # the disk fills while the new rows are being written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(P.os, "fsync", full)
    f, arr, msgs = _patches(records, bb, cache)  # goes on in memory, one line
    monkeypatch.setattr(P.os, "fsync", real_fsync)
    assert rows.stat().st_size == size  # nothing torn left behind
    assert any("No space left" in m for m in msgs)
    _, fresh, _ = _patches(records, bb, tmp_path / "clean")
    np.testing.assert_array_equal(arr, fresh)
    f2, again, _ = _patches(records, bb, cache)  # space is back: appended after the last whole row
    np.testing.assert_array_equal(again, fresh)
    assert f2.stats["computed"] == len(records) - 4
