"""Issue 11 §6: the audit's signals are separate checks behind one small base class; run_audit orchestrates."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from PIL import Image

from imbvision.audit import run_audit
from imbvision.audit.checks import CHECKS, AuditContext, AuditSettings, Check
from imbvision.audit.checks.duplicates import DuplicatesCheck
from imbvision.data.records import Dataset, ImageRecord

AUDIT = Path(__file__).resolve().parents[1] / "src" / "imbvision" / "audit"


def test_every_check_is_a_check_with_its_own_module() -> None:
    modules = {type(c).__module__ for c in CHECKS}
    assert all(isinstance(c, Check) for c in CHECKS)
    assert len(modules) >= 5  # counts, duplicates, masks, hardness, label noise
    names = [c.name for c in CHECKS if c.name]
    assert names == ["counts", "duplicates", "hardness", "label_noise"]


def test_run_audit_only_orchestrates() -> None:
    """core.py computes no signal itself: no sklearn, no neighbour search, no hashing there."""
    tree = ast.parse((AUDIT / "core.py").read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {"phash", "sha256_file", "find_duplicates", "NearestNeighbors"} & imported
    assert not any(m.startswith("sklearn") for m in modules)


def test_one_check_runs_alone_on_a_context(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    recs = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(p)
        recs.append(ImageRecord(p, int(i < 2)))
    (tmp_path / "copy.png").write_bytes((tmp_path / "0.png").read_bytes())
    recs.append(ImageRecord(tmp_path / "copy.png", 0))  # same bytes as a positive, labelled negative
    ctx = AuditContext(Dataset(recs), rng.normal(size=(7, 4)), None, AuditSettings())
    summary = DuplicatesCheck().run(ctx)
    assert summary["exact_sets"] == 1 and summary["exact_sets_label_conflict"] == 1
    assert ctx.flags.tolist() == [True, False, False, False, False, False, True]
    assert ctx.strength[0] == 2 and "exact duplicate of copy.png labelled negative" in ctx.reasons[0][0]
    res = run_audit(Dataset(recs), ctx.X, tmp_path / "out", progress=False)
    assert res.summary["duplicates"] == summary
