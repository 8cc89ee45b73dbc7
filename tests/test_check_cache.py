"""The image check is remembered per (path, size, modification time); a changed file is checked again."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from imbvision.data import check_cache
from imbvision.data.checks import check_dataset
from imbvision.data.records import Dataset, ImageRecord
from imbvision.errors import BadFileError


@pytest.fixture()
def calls(tmp_path, monkeypatch):
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("IMBVISION_CHECK_CACHE", raising=False)
    seen: list[str] = []
    real = check_cache.cached_check

    def counting(rec, check):
        def wrapped(r):
            seen.append(os.path.basename(str(r.path)))
            return check(r)
        return real(rec, wrapped)

    monkeypatch.setattr("imbvision.data.checks.cached_check", counting)
    return seen


def _dataset(tmp_path, n=6):
    recs = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(p)
        recs.append(ImageRecord(p, int(i < 2)))
    return Dataset(recs, "test")


def test_second_check_decodes_nothing_and_a_changed_file_is_checked_again(tmp_path, calls):
    ds = _dataset(tmp_path)
    assert len(check_dataset(ds).dataset) == 6 and len(calls) == 6
    calls.clear()
    assert len(check_dataset(ds).dataset) == 6 and calls == []
    (tmp_path / "3.png").write_bytes(b"now corrupt")  # new size and time
    with pytest.raises(BadFileError, match="3.png"):
        check_dataset(ds)
    assert calls == ["3.png"]
    calls.clear()
    with pytest.raises(BadFileError, match="3.png"):  # the failure is remembered too, same message
        check_dataset(ds)
    assert calls == []
    rep = check_dataset(ds, skip_bad=True)
    assert [os.path.basename(p) for p, _ in rep.bad] == ["3.png"]


def test_cache_can_be_turned_off(tmp_path, calls, monkeypatch):
    ds = _dataset(tmp_path, 4)
    check_dataset(ds)
    monkeypatch.setenv("IMBVISION_CHECK_CACHE", "0")
    calls.clear()
    check_dataset(ds)
    assert len(calls) == 4
