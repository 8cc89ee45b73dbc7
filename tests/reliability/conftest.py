"""A small but complete model bundle (real head, real postprocess), made without images."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def make_bundle_parts(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and description of a fitted logistic-regression head on 8-D features."""
    from imbvision.strategies.registry import compose
    from imbvision.training.config import TrainConfig
    from imbvision.training.head import fit_head, fit_postprocess

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 8)).astype(np.float32)
    y = (rng.random(80) < 0.25).astype(np.int64)
    y[:2] = [0, 1]
    X[y == 1] += 1.0
    recipe = compose("ce")
    fit = fit_head(X[:60], y[:60], recipe, seed=seed)
    post = fit_postprocess(fit.predict_proba(X[60:]), y[60:], train_prior=fit.effective_prior,
                           true_prior=float(y[60:].mean()))
    arrays = {f"head.{k}": np.asarray(v) for k, v in fit.head.to_arrays().items()}
    meta = {
        "mode": "head",
        "backbone": {"name": "test_efficientnet", "weights": "none", "weights_id": "timm-test_efficientnet-random-seed0",
                     "image_size": 64, "tiles": 0, "features": "global"},
        "head": {"name": fit.head_name, "params": fit.head_params, "config": fit.head.get_config()},
        "strategy": recipe.to_dict(), "postprocess": post.to_dict(),
        "class_names": {"0": "ok", "1": "defect"}, "config": TrainConfig(image_size=64).to_dict(),
    }
    return arrays, meta


@pytest.fixture
def bundle_parts():
    return make_bundle_parts()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_kwargs):
    """A finished head-mode run (read-only for tests: copy it before changing anything)."""
    import imbvision

    out = tmp_path_factory.mktemp("trained") / "run"
    imbvision.train(out=out, strategy="ce", progress=False, **tiny_kwargs)
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path):
    import shutil

    return shutil.copytree(trained_run, tmp_path / "run")


@pytest.fixture
def class_folders():
    """Make a class-folder tree ``root/ok`` (negatives) and ``root/defect`` (a white square) of 32 px PNGs."""
    def make(root, n_ok: int = 30, n_defect: int = 10):
        from PIL import Image

        rng = np.random.default_rng(0)
        for cls, n in (("ok", n_ok), ("defect", n_defect)):
            (root / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                if cls == "defect":
                    arr[8:20, 8:20] = 255
                Image.fromarray(arr).save(root / cls / f"{i}.png")
        return root
    return make
