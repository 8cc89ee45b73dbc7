"""Shared fixtures: a tiny generated dataset and a per-session cache (no network, no real data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# beside the repository (the main checkout) or at the workplace's shared folder (a worktree)
SHARED_MT = next((p for p in (REPO.parent / "shared" / "data" / "magnetic-tile", Path("/work/shared/data/magnetic-tile"))
                  if p.is_dir()), REPO.parent / "shared" / "data" / "magnetic-tile")

# Keep CPU tests predictable on 2 cores (pytest-xdist runs two workers).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> Path:
    """120 procedural images (15% with an object) at 64 px, with masks."""
    from imbvision.data.synthetic import DemoSpec, generate_demo_dataset

    return generate_demo_dataset(tmp_path_factory.mktemp("tiny") / "data", DemoSpec(n=120, positive_rate=0.15, seed=3, size=64))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_kwargs(tiny_manifest, cache_dir) -> dict:
    """Fast training options: the tiny random timm model at 64 px."""
    return dict(data=str(tiny_manifest), backbone="test_efficientnet", weights="none", image_size=64,
                n_boot=100, cache_dir=str(cache_dir), max_synthetic=40)


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"real data not found at {SHARED_MT}")
    for item in items:
        if "realdata" in item.keywords and not SHARED_MT.is_dir():
            item.add_marker(skip)
