"""Issue 19 §1: compare cells, synthetic features and embedding shards are verified when read.

Each attack edits one cached artefact (valid file, key intact) and reruns: the leaderboard must equal a
clean run's, with one warning naming what was recomputed.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from imbvision.workflows.compare import run_compare

STRATS = "ce,augment-oversample"


def _kw(tiny_kwargs, cache):
    kw = {k: v for k, v in tiny_kwargs.items() if k not in ("max_synthetic", "n_boot")}
    return {**kw, "cache_dir": str(cache), "max_synthetic": 20}


def _run(out, tiny_kwargs, cache):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = run_compare(strategies=STRATS, seeds=1, out=out, n_boot=50, progress=False, **_kw(tiny_kwargs, cache))
    board = [{k: r[k] for k in ("strategy", "ap_mean", "roc_auc", "f1", "brier")} for r in res.leaderboard]
    return res, board, [str(x.message) for x in w]


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_kwargs):
    root = tmp_path_factory.mktemp("trustcmp")
    res, board, _ = _run(root / "clean", tiny_kwargs, root / "cache")
    return root, res, board


def _copy(clean, name):
    root, res, _ = clean
    dst = root / name
    shutil.copytree(res.out, dst)
    return dst


def test_cell_with_edited_scores_is_recomputed(clean, tiny_kwargs):
    root, _, board = clean
    out = _copy(clean, "edited")
    cell_path = next(p for p in (out / "cells").glob("ce-*.json"))
    cell = json.loads(cell_path.read_text())
    cell["test_score"][:3] = [-v for v in cell["test_score"][:3]]  # valid JSON, key intact
    cell_path.write_text(json.dumps(cell))
    res, again, msgs = _run(out, tiny_kwargs, root / "cache")
    assert again == board
    assert res.cells_reused == 1  # only the untouched cell was reused
    assert any("fails its SHA-256 check" in m and cell_path.name in m for m in msgs), msgs


def test_damaged_synthetic_features_are_recomputed(clean, tiny_kwargs):
    root, _, board = clean
    out = _copy(clean, "synth")
    syn = next((out / "synthetic").glob("*.safetensors"))
    raw = bytearray(syn.read_bytes())
    raw[-40:-20] = bytes(20)  # tensor bytes, header intact
    syn.write_bytes(bytes(raw))
    next((out / "cells").glob("augment-oversample-*.json")).unlink()  # so the cell reads the store again
    _, again, msgs = _run(out, tiny_kwargs, root / "cache")
    assert again == board
    assert any("synthetic-feature cache" in m and "recomputing" in m for m in msgs), msgs


def test_flipped_bytes_in_an_embedding_shard_are_recomputed(clean, tiny_kwargs):
    root, _, board = clean
    cache = root / "cache2"
    shutil.copytree(root / "cache", cache)
    shard = next(cache.rglob("embeddings/*/shard-*.safetensors"))
    raw = bytearray(shard.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    for i in range(8 + header + 64, len(raw), 997):  # flip tensor bytes; the header stays valid
        raw[i] ^= 0x5A
    shard.write_bytes(bytes(raw))
    _, again, msgs = _run(root / "fresh", tiny_kwargs, cache)
    assert again == board
    assert any("failed their SHA-256 check" in m and "embedding cache" in m for m in msgs), msgs
