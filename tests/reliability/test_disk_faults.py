"""Disk faults: unwritable output folders fail early and clearly; failed atomic writes keep the old file.

The tests run as root in CI, where ``chmod 0o500`` does not stop writes. The
unwritable folders used here fail for root too:

* a path *under a regular file* (``file/out``): ``mkdir`` gets ENOTDIR;
* an existing path that *is* a file: refused before any ``mkdir``;
* an existing procfs folder (``/proc/self/fdinfo``): the kernel refuses to
  create files there whatever the user (Linux only; skipped elsewhere);
* a full disk: ``os.write`` of the probe is made to fail with ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import imbvision._io as io_mod
from imbvision._io import atomic_write, ensure_output_dir, read_json, write_json, write_text
from imbvision.cli import app
from imbvision.data.checks import CheckReport
from imbvision.data.records import Dataset, ImageRecord
from imbvision.data.splits import Split
from imbvision.errors import ConfigError

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".write-probe"))


def test_output_dir_under_a_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "a_file"
    f.write_text("x")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        ensure_output_dir(f / "run" / "out")
    assert time.perf_counter() - t0 < 1
    msg = str(e.value)
    assert f"cannot create output folder {f / 'run' / 'out'}" in msg and "Not a directory" in msg and "--out" in msg


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("precious")
    with pytest.raises(ConfigError, match="is an existing file, not a folder"):
        ensure_output_dir(f)
    assert f.read_text() == "precious"


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="needs Linux procfs")
def test_existing_folder_root_cannot_write() -> None:
    with pytest.raises(ConfigError) as e:
        ensure_output_dir("/proc/self/fdinfo")
    assert "cannot write to output folder /proc/self/fdinfo (creating a file there failed" in str(e.value)


def test_full_disk_found_by_the_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if data == b"x" * 4096:  # the probe
            raise ENOSPC
        return real_write(fd, data)

    monkeypatch.setattr(io_mod.os, "write", write)
    with pytest.raises(ConfigError) as e:
        ensure_output_dir(tmp_path / "out")
    assert "No space left on device" in str(e.value) and "free space" in str(e.value)
    assert _leftovers(tmp_path / "out") == []  # the probe file is removed


def test_cli_fails_before_any_work_on_unwritable_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "file"
    f.write_text("x")
    r = CliRunner().invoke(app, ["embed", "--data", "demo:20:0.2:0", "--out", str(f / "out")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "cannot create output folder" in r.output
    assert not (tmp_path / "cache" / "demo").exists(), "work started before the output folder was checked"


def test_failed_rename_keeps_previous_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "result.json"
    write_json(p, {"version": 1})

    def replace(src, dst):
        raise ENOSPC

    monkeypatch.setattr(io_mod.os, "replace", replace)
    with pytest.raises(OSError) as e:
        write_json(p, {"version": 2, "big": list(range(10_000))})
    assert e.value.errno == errno.ENOSPC
    assert read_json(p) == {"version": 1}
    assert _leftovers(tmp_path) == [] and sorted(x.name for x in tmp_path.iterdir()) == ["result.json"]


def test_failed_fsync_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "report.html"
    write_text(p, "<p>old</p>")

    def fsync(fd: int) -> None:
        raise ENOSPC

    monkeypatch.setattr(io_mod.os, "fsync", fsync)
    with pytest.raises(OSError):
        write_text(p, "<p>new</p>" * 1000)
    assert p.read_text() == "<p>old</p>" and _leftovers(tmp_path) == []


def test_write_failing_midway_keeps_previous_file(tmp_path: Path) -> None:
    p = tmp_path / "data.csv"
    write_text(p, "a,b\n1,2\n")
    with pytest.raises(OSError):
        with atomic_write(p, "w", encoding="utf-8") as fh:
            fh.write("a,b\n" + "9,9\n" * 5000)  # half of the new content written...
            raise ENOSPC  # ...then the disk fills up
    assert p.read_text() == "a,b\n1,2\n" and _leftovers(tmp_path) == []


def test_project_writers_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bad_files.csv and split.csv go through the same atomic path."""
    ds = Dataset([ImageRecord(Path(f"/d/{i}.png"), i % 2) for i in range(6)])
    bad_csv, split_csv = tmp_path / "bad_files.csv", tmp_path / "split.csv"
    rep = CheckReport(ds, [("/d/x.png", "corrupt")])
    split = Split(np.array([0, 1]), np.array([2, 3]), np.array([4, 5]))
    rep.write_bad_files(bad_csv)
    split.write_csv(split_csv, ds)
    before = {p: p.read_bytes() for p in (bad_csv, split_csv)}
    monkeypatch.setattr(io_mod.os, "replace", lambda s, d: (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(OSError):
        CheckReport(ds, [("/d/y.png", "other")]).write_bad_files(bad_csv)
    with pytest.raises(OSError):
        Split(np.array([5, 4]), np.array([3, 2]), np.array([1, 0])).write_csv(split_csv, ds)
    assert {p: p.read_bytes() for p in (bad_csv, split_csv)} == before
    assert _leftovers(tmp_path) == []


def test_new_files_get_normal_permissions(tmp_path: Path) -> None:
    # Regression: files were left with the 0600 mode of their temporary file.
    old = os.umask(0o022)
    try:
        io_mod._UMASK = io_mod._read_umask()
        write_json(tmp_path / "a.json", {})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "a.json", 0o640)
        write_json(tmp_path / "a.json", {"x": 1})  # a replaced file keeps its mode
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
        io_mod._UMASK = io_mod._read_umask()


_WRITER = """
import sys, time
from imbvision._io import atomic_write
with atomic_write(sys.argv[1], "w", encoding="utf-8") as fh:
    fh.write("new-partial-")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
    fh.write("never")
"""


def test_kill_during_atomic_write_keeps_previous_file(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    write_json(p, {"epoch": 3})
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(p)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads(p.read_text()) == {"epoch": 3}
    # SIGKILL leaves the hidden temporary file (nothing can remove it); it never replaces the real one.
    left = _leftovers(tmp_path)
    assert all(x.startswith(".state.json.") for x in left)
