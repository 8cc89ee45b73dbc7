"""Issue 19 §2 and §6: one writer per output folder (real concurrent processes); one cache root everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from imbvision._rundir import folder_lock
    out, gate = Path(sys.argv[1]), Path(sys.argv[2])
    with folder_lock(out):
        (gate / "held").touch()
        while not (gate / "release").exists():
            time.sleep(0.02)
""")


def _env(tmp_path: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "IMBVISION_CACHE": str(tmp_path / "cache"),
            **extra}


def _cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "imbvision.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600, **kw)


@pytest.fixture()
def held(tmp_path):
    """A second process holding the lock on ``tmp_path/out``."""
    out, gate = tmp_path / "out", tmp_path / "gate"
    gate.mkdir()
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(gate)], env=_env(tmp_path))
    t0 = time.time()
    while not (gate / "held").exists():
        assert p.poll() is None and time.time() - t0 < 120
        time.sleep(0.02)
    yield out, p.pid
    (gate / "release").touch()
    p.wait(timeout=60)


def _tiny(tiny_manifest):
    return ["--data", str(tiny_manifest), "--backbone", "test_efficientnet", "--weights", "none", "--image-size", "64"]


@pytest.mark.parametrize("command", ["train", "compare", "embed", "audit"])
def test_second_writer_is_refused_naming_the_holder(held, tmp_path, tiny_manifest, command):
    out, pid = held
    args = [command, *_tiny(tiny_manifest), "--out", str(out)]
    if command == "compare":
        args += ["--strategies", "ce", "--seeds", "1"]
    if command == "audit":
        args = [a for a in args if a not in ("--image-size", "64")]
    r = _cli(args, _env(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "in use by another imbvision process" in lines[0], r.stderr
    assert f"pid {pid}" in lines[0] and "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing written into the held folder


def test_two_trains_into_one_folder_leave_one_whole_run(tmp_path, tiny_manifest):
    out = tmp_path / "run"
    env = _env(tmp_path)
    args = [sys.executable, "-m", "imbvision.cli", "train", *_tiny(tiny_manifest), "--out", str(out)]
    procs = [subprocess.Popen(args + extra, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for extra in (["--strategy", "ce"], ["--strategy", "weighted-ce"])]
    res = [(p, *p.communicate(timeout=600)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in res)
    assert codes == [0, 2], [e for _, _, e in res]
    loser = next(e for p, _, e in res if p.returncode == 2)
    assert ("in use by another imbvision process" in loser or "already holds a run" in loser) and "Traceback" not in loser
    from imbvision.model import Model

    winner = next(o for p, o, _ in res if p.returncode == 0)
    Model.load(out)  # the folder holds one whole model
    assert (out / "report.html").is_file() and str(out / "report.html") in winner.replace("\n", "")


def test_predict_writes_nothing_under_home_with_a_cache_dir(tmp_path, tiny_manifest, cache_dir):
    """ONNX exports at prediction time, the report's heat maps and the image checks use --cache-dir."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in _env(tmp_path, HOME=str(home)).items() if k != "IMBVISION_CACHE"}
    run = tmp_path / "run"
    mine = tmp_path / "mycache"
    r = _cli(["train", *_tiny(tiny_manifest), "--strategy", "patch", "--out", str(run), "--cache-dir", str(mine)], env)
    assert r.returncode == 0, r.stderr
    imgs = sorted((Path(tiny_manifest).parent).rglob("*.png"))[:3]
    r = _cli(["predict", str(run), *map(str, imgs), "--heatmaps", str(tmp_path / "maps"), "--cache-dir", str(mine)], env)
    assert r.returncode == 0, r.stderr
    # (matplotlib keeps its font list under ~/.cache unless MPLCONFIGDIR is set; onnxruntime its telemetry
    # unless ORT_DISABLE_TELEMETRY is, which imbvision sets: tests/test_trust_cache_root.py checks HOME stays empty)
    assert not (home / ".cache" / "imbvision").exists(), sorted(map(str, (home / ".cache" / "imbvision").rglob("*")))
    assert any(mine.rglob("*.onnx"))  # the exports are there instead
