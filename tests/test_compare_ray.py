"""``compare --executor ray``: same cells and leaderboard as the local executor, same resumable store."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from imbvision.errors import ConfigError  # noqa: E402
from imbvision.experiments import ray_executor  # noqa: E402
from imbvision.workflows.compare import CellSettings, run_compare  # noqa: E402

# A pixel-space strategy (copy-paste) makes the workers build the backbone and embed new images.
STRATS = "ce,weighted-ce,copy-paste"


def _kw(tiny_kwargs):
    kw = dict(tiny_kwargs)
    kw.pop("n_boot")
    return kw


def _board(out: Path) -> dict:
    d = json.loads((out / "leaderboard.json").read_text())
    d.pop("timing")
    for r in d["leaderboard"]:
        r.pop("fit_seconds")
    return d


def _cells(out: Path) -> dict:
    cells = {}
    for p in sorted((out / "cells").glob("*.json")):
        c = json.loads(p.read_text())
        c.pop("timing")
        c.pop("sha256", None)  # the cell's checksum covers its timing too
        cells[p.name] = c
    return cells


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                kids.setdefault(int(fields[1]), []).append(int(d.name))
    out, stack = set(), [pid]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.add(c)
            stack.append(c)
    return out


def _alive(pids: set[int]) -> set[int]:
    """The live Ray processes among ``pids`` (other children of the test process are not Ray's)."""
    left = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state != "Z" and "ray" in cmd:
            left.add(p)
    return left


def _assert_all_exit(pids: set[int], timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while _alive(pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(pids), f"Ray left processes behind: {sorted(_alive(pids))}"


def _one_class_split(data: str):
    """A split whose training part holds negatives only (fit_head refuses it with a ConfigError)."""
    from imbvision.data.sources import load_source
    from imbvision.data.splits import Split

    y = load_source(data).labels
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    sp = Split(train=neg[:40], val=np.concatenate([neg[40:60], pos[:4]]), test=np.concatenate([neg[60:80], pos[4:8]]))
    return sp, y


class _Watch:
    """Collect, in a background thread, every process below this one while a block runs."""

    def __enter__(self) -> "_Watch":
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen |= _descendants(os.getpid())
            self._stop.wait(0.1)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def ray_cleanup():
    """Shut Ray down after the test whatever happens, and check that no Ray process outlives it."""
    yield
    started = _descendants(os.getpid())
    ray.shutdown()
    _assert_all_exit(started)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ray_equals_local_and_resumes(ray_cleanup, tmp_path, tiny_kwargs, monkeypatch):
    kw = _kw(tiny_kwargs)
    local = run_compare(strategies=STRATS, seeds=2, out=tmp_path / "local", n_boot=200, progress=False, **kw)

    # 1. In a Ray session the caller started (2 CPUs): used, and left running.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    res = run_compare(strategies=STRATS, seeds=2, out=tmp_path / "ray", n_boot=200, progress=False,
                      executor="ray", **kw)
    assert ray.is_initialized()
    assert len(_cells(res.out)) == 6
    assert _cells(res.out) == _cells(local.out)  # every cell, test scores included, apart from timing
    assert _board(res.out) == _board(local.out)
    # An error inside a task reaches the caller as itself (not Ray's wrapper); no cell is written for it.
    bad, y = _one_class_split(tiny_kwargs["data"])
    settings = CellSettings(backbone="test_efficientnet", weights="none", image_size=64, tiles=0, kind="global",
                            max_synthetic=20, threshold="max-f1", calibration="none", prior_correction=True)
    with pytest.raises(ConfigError, match="no positive") as err:
        ray_executor.run_cells_ray([("ce", 7, None, bad)], X=np.zeros((len(y), 4), np.float32), y=y,
                                   records=[], settings=settings, out=tmp_path / "bad")
    assert type(err.value) is ConfigError
    assert not list((tmp_path / "bad" / "cells").glob("*.json"))
    started = _descendants(os.getpid())
    ray.shutdown()
    _assert_all_exit(started)

    # 2. Resume with a private Ray (as the CLI runs it): only the deleted cells are recomputed, the rest are
    #    not touched, and the private Ray is stopped with all its processes.
    out = tmp_path / "resume"
    shutil.copytree(res.out, out)
    victims = sorted((out / "cells").glob("*.json"))[1::3]
    assert len(victims) == 2
    for v in victims:
        v.unlink()
    others = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    calls = []
    real_init = ray.init
    monkeypatch.setattr(ray, "init", lambda *a, **k: calls.append(k) or real_init(*a, **k))
    with _Watch() as watch:
        run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, executor="ray", jobs=2, **kw)
    assert calls and calls[0]["num_cpus"] == 2 and calls[0]["address"] == "local"
    assert not ray.is_initialized()
    assert watch.seen, "expected Ray processes below the driver while it ran"
    _assert_all_exit(watch.seen)
    assert all(v.exists() for v in victims)
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())
    assert _cells(out) == _cells(local.out)
    assert _board(out) == _board(local.out)


def test_worker_without_out_folder_gives_the_same_cell(tmp_path, tiny_kwargs):
    """A worker on a machine that does not see OUT computes the cell without the synthetic cache."""
    from imbvision.data.sources import load_source
    from imbvision.experiments.cell import cached_backbone as _cached_backbone, compute_cell as _compute_cell
    from imbvision.experiments.split_plan import plan_splits as _splits

    ds = load_source(tiny_kwargs["data"])
    y = ds.labels
    dim = _cached_backbone("test_efficientnet", "none").num_features
    X = (np.random.default_rng(0).normal(size=(len(y), dim)) + y[:, None]).astype(np.float32)
    (s, f, sp), = _splits(ds, 1, None, 0.2, 0.2, None)
    settings = CellSettings(backbone="test_efficientnet", weights="none", image_size=64, tiles=0, kind="global",
                            max_synthetic=20, threshold="max-f1", calibration="none", prior_correction=True)
    here = _compute_cell("copy-paste", s, f, sp, X, y, ds.records, settings, tmp_path / "out" / "synthetic")
    assert list((tmp_path / "out" / "synthetic").glob("*.safetensors"))
    elsewhere = ray_executor._ray_cell("copy-paste", s, f, sp, X, y, ds.records, settings,
                                       str(tmp_path / "not-here" / "synthetic"))
    assert not (tmp_path / "not-here").exists()
    assert elsewhere["synthetic_rows"] > 0
    here.pop("timing"), elsewhere.pop("timing")
    assert elsewhere == here


def test_ray_missing_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ConfigError, match=r"pip install imbvision\[ray\]"):
        ray_executor.require_ray()


def test_ray_missing_fails_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install imbvision\[ray\]"):
        run_compare("/nonexistent/data", strategies="ce", seeds=1, out=tmp_path / "o", executor="ray", progress=False)


def test_unreachable_address_is_a_quick_config_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    expected = rf"cannot reach the Ray cluster at --ray-address '127.0.0.1:{port}'.*ray start"
    with pytest.raises(ConfigError, match=expected):
        ray_executor.run_cells_ray([("ce", 0, None, None)], X=None, y=None, records=[], settings=None, out=tmp_path,
                                   address=f"127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 15
    assert not ray.is_initialized()


@pytest.mark.parametrize("address, expected", [
    ("head:6379", ("head", 6379)),
    ("ray://10.0.0.5:10001", ("10.0.0.5", 10001)),
    ("[::1]:6379", ("::1", 6379)),
    ("auto", None),
    ("local", None),
    ("head", None),
])
def test_address_parsing(address, expected):
    assert ray_executor._host_port(address) == expected


def test_ray_runs_patch_level_heads_like_local(ray_cleanup, tmp_path, tiny_kwargs):
    """Patch features (a memory-mapped store) travel to Ray workers; every cell equals the local one."""
    kw = _kw(tiny_kwargs)
    strats = "ce,normality,patch"
    local = run_compare(strategies=strats, seeds=2, out=tmp_path / "local", n_boot=200, progress=False, **kw)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    res = run_compare(strategies=strats, seeds=2, out=tmp_path / "ray", n_boot=200, progress=False,
                      executor="ray", **kw)
    assert len(_cells(res.out)) == 6
    assert _cells(res.out) == _cells(local.out)
    assert _board(res.out) == _board(local.out)
    started = _descendants(os.getpid())
    ray.shutdown()
    _assert_all_exit(started)
