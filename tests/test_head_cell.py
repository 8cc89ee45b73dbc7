"""The one head-cell path: train and compare share it, and a new head family plugs in as one module.

A head that consumes other features than one global vector (the patch, normality and fusion heads)
declares ``representation`` on its strategy record and registers how to make those features; the
cell then hands it exactly those. Run in a fresh interpreter so the toy head does not join the
registry of the other tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from imbvision.data.splits import Split
from imbvision.strategies import compose
from imbvision.training.cell import fit_and_score

TOY = textwrap.dedent('''
    import json, numpy as np
    from imbvision.strategies.registry import StrategyRecord, register_strategy
    from imbvision.strategies.heads import LogRegHead
    from imbvision.training.cell import Representation, fit_and_score, register_representation

    class MeanPatchHead(LogRegHead):
        """Averages a (N, P, D) patch grid, then logistic regression."""
        name = "mean-patch"
        seen = []
        def fit(self, X, y, **kw):
            MeanPatchHead.seen.append(np.shape(X))
            return super().fit(np.asarray(X).mean(1), y, **kw)
        def decision_function(self, X):
            return super().decision_function(np.asarray(X).mean(1))

    register_representation(Representation("toy-patches", lambda *a: (None, {}), lambda *a: None))
    register_strategy(StrategyRecord(
        name="mean-patch", family="head", description="toy patch head", reference="test",
        params={}, build=lambda ctx: MeanPatchHead(), modes=("head",), any_loss=False, takes_sampler=False,
        representation="toy-patches", load=MeanPatchHead.from_arrays))

    from imbvision.data.splits import Split
    from imbvision.strategies import compose
    rng = np.random.default_rng(0)
    y = (np.arange(60) % 4 == 0).astype(int)
    patches = rng.normal(size=(60, 5, 3)) + y[:, None, None]
    split = Split(np.arange(0, 36), np.arange(36, 48), np.arange(48, 60))
    cf = fit_and_score(compose("mean-patch"), {"global": np.zeros((60, 2)), "toy-patches": patches}, y, split, seed=0)
    print(json.dumps({"seen": MeanPatchHead.seen, "head": cf.fit.head_name, "n_test": len(cf.p_test)}))
''')


def test_a_new_head_family_is_one_module_plus_registration():
    out = subprocess.run([sys.executable, "-c", TOY], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import json
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {"seen": [[36, 5, 3]], "head": "mean-patch", "n_test": 12}


def test_train_and_compare_cells_agree(tmp_path, tiny_kwargs):
    """``train`` in head mode gives the raw scores a compare cell of the same split computes."""
    import json

    import imbvision
    from imbvision.data.splits import read_split_csv
    from imbvision.experiments.cell import CellSettings, compute_cell
    from imbvision.data.sources import load_source

    kw = {k: v for k, v in tiny_kwargs.items() if k != "n_boot"}
    run = imbvision.train(out=tmp_path / "run", strategy="weighted-ce", progress=False, n_boot=0, **kw)
    split = read_split_csv(run.out / "split.csv")
    ds = load_source(tiny_kwargs["data"])
    from imbvision.backbones import create_backbone, embed_dataset
    X = embed_dataset(ds, backbone=create_backbone("test_efficientnet", weights="none"), image_size=64,
                      cache_dir=tiny_kwargs["cache_dir"]).features("global")
    from imbvision.training.config import PipelineOptions
    settings = CellSettings("test_efficientnet", "none", 64, 0, "global", 40, "max-f1", PipelineOptions().calibration,
                            True)  # the post-processing train uses by default
    cell = compute_cell("weighted-ce", 0, None, split, X, ds.labels, ds.records, settings, None)
    results = json.loads((run.out / "results.json").read_text())
    assert cell["ap"] == results["test"]["ap"]
    assert cell["threshold"] == results["threshold"]["threshold"]


def test_fit_and_score_takes_one_array_as_the_global_representation():
    rng = np.random.default_rng(1)
    y = (np.arange(80) % 5 == 0).astype(int)
    X = rng.normal(size=(80, 4)) + y[:, None]
    split = Split(np.arange(0, 48), np.arange(48, 64), np.arange(64, 80))
    a = fit_and_score(compose("ce"), X, y, split, seed=0)
    b = fit_and_score(compose("ce"), {"global": X}, y, split, seed=0)
    np.testing.assert_array_equal(a.p_test, b.p_test)
    assert a.post.train_prior == b.post.train_prior == a.fit.effective_prior
