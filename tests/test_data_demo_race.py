"""Issue 14 §5: two processes creating the demo set at once both read a complete set; nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from imbvision.data.decode import load_image_array
    from imbvision.data.sources import load_source
    gate, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    (gate / me).touch()
    while not (gate / other).exists():  # start together: both find no set and race to make it
        time.sleep(0.01)
    ds = load_source("demo:120:0.1:5")
    (gate / ("done-" + me)).touch()
    while True:  # keep reading our set until the other process has its set too: ours must not vanish
        last = (gate / ("done-" + other)).exists()
        for r in ds.records:
            load_image_array(r.path)
        if last:
            break
    print(len(ds), int(ds.labels.sum()))
""")


def test_two_processes_creating_the_demo_set_at_once(tmp_path: Path) -> None:
    env = {**os.environ, "IMBVISION_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(gate), me, other], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for me, other in (("a", "b"), ("b", "a"))]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.split() == ["120", "12"]
    demo = tmp_path / "cache" / "demo"
    assert sorted(p.name for p in demo.iterdir() if not p.name.endswith(".lock")) == ["n120-r0.1-s5"]
    assert len(list((demo / "n120-r0.1-s5" / "images").iterdir())) == 120
