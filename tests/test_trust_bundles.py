"""Issue 19 §3: bundles validated to their meaning. Each case edits a saved bundle, recomputes its checksums
(as a script that edits and re-saves would), and loading must end in one BundleError naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from imbvision.bundle_schema import meta_digest
from imbvision.errors import BundleError
from imbvision.model import Model
from imbvision.workflows.train import train
from imbvision._digest import sha256_file


def _kw(tiny_kwargs):
    return {k: v for k, v in tiny_kwargs.items() if k not in ("n_boot",)}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_kwargs):
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for strat in ("normality", "patch", "fusion", "logreg", "mlp"):
        out[strat] = train(strategy=strat, out=root / strat, progress=False, **_kw(tiny_kwargs)).out
    return out


def _resave(src: Path, dst: Path, edit_arrays=None, edit_meta=None) -> Path:
    """Copy the bundle, edit it, and recompute both checksums."""
    dst.mkdir(parents=True)
    arrays = load_file(str(src / "model.safetensors"))
    meta = json.loads((src / "model.json").read_text())
    if edit_arrays:
        edit_arrays(arrays)
    if edit_meta:
        edit_meta(meta)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(dst / "model.safetensors"))
    meta["weights_sha256"] = sha256_file(dst / "model.safetensors")
    meta["meta_sha256"] = meta_digest(meta)
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


def _set(d, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def _arr(key, fn):
    def edit(arrays):
        arrays[key] = fn(arrays[key])
    return edit


CASES = [
    # (head, id, edit_arrays, edit_meta, words the error must contain)
    ("normality", "bank-other-width", _arr("head.bank", lambda b: np.concatenate([b, b[:, :5]], 1)), None, "head.arrays.bank"),
    ("normality", "bank-1d", _arr("head.bank", lambda b: b[0]), None, "head.arrays.bank"),
    ("normality", "bank-3d", _arr("head.bank", lambda b: b[None]), None, "head.arrays.bank"),
    ("normality", "bank-0-rows", _arr("head.bank", lambda b: b[:0]), None, "head.arrays.bank"),
    ("normality", "bank-nan", _arr("head.bank", lambda b: np.full_like(b, np.nan)), None, "head.arrays.bank"),
    ("normality", "bank-int", _arr("head.bank", lambda b: b.astype(np.int32)), None, "head.arrays.bank"),
    ("normality", "scale-0", None, lambda m: _set(m, "head.config.scale", 0.0), "head.config.scale"),
    ("normality", "scale-neg", None, lambda m: _set(m, "head.config.scale", -1.0), "head.config.scale"),
    ("normality", "loc-str", None, lambda m: _set(m, "head.config.loc", "x"), "head.config.loc"),
    ("normality", "ratio-2", None, lambda m: _set(m, "head.config.params.ratio", 2.0), "head.config.params"),
    ("normality", "search-bad", None, lambda m: _set(m, "head.config.params.search", "magic"), "head.config.params"),
    ("normality", "old-patch-version", None, lambda m: _set(m, "backbone.patch_version", "patch-avg3-v2"),
     "backbone.patch_version"),
    ("normality", "no-patch-version", None, lambda m: m["backbone"].pop("patch_version"), "backbone.patch_version"),
    ("normality", "width-recorded", None, lambda m: _set(m, "backbone.patch_dim", 7), "head.arrays.bank"),
    ("patch", "k-neg", None, lambda m: _set(m, "head.config.params.k", -3), "head.config.params"),
    ("patch", "k-huge", None, lambda m: _set(m, "head.config.params.k", 100000), "head.config.params"),
    ("patch", "k-over-grid", None, lambda m: _set(m, "head.config.params.k", 64), "head.config.params.k"),
    ("patch", "inner-coef-width", _arr("head.inner.coef", lambda c: c[:, :-1]), None, "head.arrays.inner.coef"),
    ("patch", "inner-scale-0", _arr("head.inner.scaler.scale", lambda s: s * 0), None, "head.arrays.inner.scaler.scale"),
    ("fusion", "coef-len-2", _arr("head.coef", lambda c: c[:2]), None, "head.arrays.coef"),
    ("fusion", "col-scale-neg", _arr("head.col_scale", lambda c: -c), None, "head.arrays.col_scale"),
    ("fusion", "intercept-inf", None, lambda m: _set(m, "head.config.intercept", 1e309), "intercept"),
    ("fusion", "bank-width", _arr("head.normality.bank", lambda b: b[:, :-1]), None, "head.arrays.normality.bank"),
    ("fusion", "global-coef-width", _arr("head.global.coef", lambda c: c[:, :-1]), None, "head.arrays.global.coef"),
    ("logreg", "coef-inf", _arr("head.coef", lambda c: c + np.inf), None, "head.arrays.coef"),
    ("logreg", "feature-dim", None, lambda m: _set(m, "backbone.feature_dim", 3), "head.arrays"),
    ("logreg", "max-iter-0", None, lambda m: _set(m, "head.config.params.max_iter", 0), "head.config.params"),
    ("logreg", "preprocess-version", None, lambda m: _set(m, "backbone.preprocess_version", "resize-v1"),
     "backbone.preprocess_version"),
    ("mlp", "hidden-width", _arr("head.fc1.bias", lambda b: b[:-1]), None, "head.arrays.fc1.bias"),
]


@pytest.mark.parametrize("head,case,edit_arrays,edit_meta,field", CASES, ids=[c[1] for c in CASES])
def test_edited_bundle_is_refused_naming_the_field(bundles, tmp_path, head, case, edit_arrays, edit_meta, field):
    run = _resave(bundles[head], tmp_path / case, edit_arrays, edit_meta)
    with pytest.raises(BundleError) as err:
        Model.load(run)
    msg = str(err.value)
    assert field in msg and "\n" not in msg, msg
    assert str(run) in msg


@pytest.mark.parametrize("head", ["normality", "patch", "fusion", "logreg", "mlp"])
def test_resaved_unchanged_bundle_loads(bundles, tmp_path, head):
    run = _resave(bundles[head], tmp_path / head)  # the checks refuse edits, not the re-save itself
    Model.load(run)
