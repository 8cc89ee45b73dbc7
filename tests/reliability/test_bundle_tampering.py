"""Trust nothing that was not checked: tampered model descriptions, weights files and ONNX exports.

Every case below is a tampering attempt; each must end in one clear error (``BundleError`` from
``Model.load``; exit 2 and no traceback from ``imbvision predict``) or, for the ONNX cache, a rebuilt
and re-checked export. ``TAMPERING`` lists the model.json cases; the weights-file and ONNX cases
follow. Count: ``len(TAMPERING)`` + 2 weights-file cases + 3 ONNX cases.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imbvision.bundle_schema import meta_digest
from imbvision.cli import app
from imbvision.errors import BundleError
from imbvision.model import Model

runner = CliRunner()


def _set(path: str, value):
    def f(meta):
        *head, last = path.split(".")
        d = meta
        for k in head:
            d = d[k]
        if value is _DELETE:
            del d[last]
        else:
            d[last] = value
    return f


_DELETE = object()

#: (case id, change to model.json, recompute meta_sha256 like a careful attacker?, expected words)
TAMPERING = [
    ("threshold-0", _set("postprocess.threshold.threshold", 0.0), True, "postprocess.threshold.threshold"),
    ("threshold-nan", _set("postprocess.threshold.threshold", math.nan), True, "postprocess.threshold.threshold"),
    ("threshold-negative", _set("postprocess.threshold.threshold", -1.0), True, "postprocess.threshold.threshold"),
    ("threshold-edited-no-rehash", _set("postprocess.threshold.threshold", 0.0), False, "meta_sha256"),
    ("threshold-string", _set("postprocess.threshold.threshold", "0.5"), True, "postprocess.threshold.threshold"),
    ("image-size-5000", _set("backbone.image_size", 5000), True, "backbone.image_size"),
    ("image-size-100000", _set("backbone.image_size", 100000), True, "backbone.image_size"),
    ("image-size-string", _set("backbone.image_size", "224"), True, "backbone.image_size"),
    ("tiles-fraction", _set("backbone.tiles", 2.5), True, "backbone.tiles"),
    ("tiles-1", _set("backbone.tiles", 1), True, "backbone.tiles"),
    ("tiles-1000", _set("backbone.tiles", 1000), True, "backbone.tiles"),
    ("features-need-tiles", _set("backbone.features", "both"), True, "tiles >= 2"),
    ("unknown-top-key", _set("evil", 1), True, "evil"),
    ("unknown-backbone-key", _set("backbone.evil", 1), True, "backbone.evil"),
    ("postprocess-missing", _set("postprocess", _DELETE), True, "postprocess"),
    ("calibration-unknown", _set("postprocess.calibration.method", "evil"), True, "postprocess.calibration.method"),
    ("isotonic-nan", _set("postprocess.calibration", {"method": "isotonic", "params": {"x": [0.0, math.nan],
                                                                                      "y": [0.0, 1.0]}}),
     True, "finite"),
    ("platt-inf", _set("postprocess.calibration", {"method": "platt", "params": {"a": math.inf, "b": 0.0}}),
     True, "postprocess.calibration"),
    ("train-prior-1.5", _set("postprocess.train_prior", 1.5), True, "postprocess.train_prior"),
    ("class-names-missing", _set("class_names", {"0": "ok"}), True, "class_names"),
    ("config-unknown-key", _set("config.evil", 1), True, "invalid config"),
    ("config-seed-negative", _set("config.seed", -1), True, "invalid config"),
    ("head-unknown", _set("head.config.head", "evil"), True, "head"),
    ("head-param-type", _set("head.config.params", {"C": "x", "max_iter": 1000}), True, "head"),
    ("mlp-hidden-1e8", _set("head.config", {"head": "mlp", "params": {"hidden": 100000000}, "num_classes": 2,
                                            "seed": 0}), True, "hidden"),
    ("mode-unknown", _set("mode", "evil"), True, "mode"),
    ("meta-sha-removed", _set("meta_sha256", _DELETE), False, "meta_sha256"),
    ("format-version-1", _set("format_version", 1), True, "format_version 1"),
    ("weights-sha-not-hex", _set("weights_sha256", "zz"), True, "weights_sha256"),
    ("strategies-not-list", _set("strategy.strategies", {"a": 1}), True, "strategy.strategies"),
    ("versions-int", _set("versions.torch", 2), True, "versions.torch"),
]


def _tamper(run: Path, change, rehash: bool) -> None:
    meta = json.loads((run / "model.json").read_text())
    change(meta)
    if rehash and "meta_sha256" in meta:
        meta["meta_sha256"] = meta_digest(meta)
    (run / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("case, change, rehash, needle", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampered_description_refused_in_one_line(run_copy, tiny_manifest, case, change, rehash, needle):
    _tamper(run_copy, change, rehash)
    with pytest.raises(BundleError) as e:
        Model.load(run_copy)
    assert needle in str(e.value) and "model.json" in str(e.value)
    img = str(sorted((tiny_manifest.parent / "images").glob("*.png"))[0])
    r = runner.invoke(app, ["predict", str(run_copy), img])
    assert r.exit_code == 2 and "Traceback" not in r.output and "error:" in r.output, r.output


@pytest.mark.parametrize("text", ["[" * 100_000, "null", '"a string"', "1e999"])
def test_pathological_json_refused(run_copy, text):
    (run_copy / "model.json").write_text(text)
    with pytest.raises(BundleError):
        Model.load(run_copy)


def test_untampered_bundle_still_predicts_the_same(run_copy, trained_run, tiny_manifest):
    img = str(sorted((tiny_manifest.parent / "images").glob("*.png"))[0])
    a = Model.load(trained_run).predict_proba([img])
    b = Model.load(run_copy).predict_proba([img])
    assert a == pytest.approx(b) and 0 <= a[0] <= 1


# -- backbone weights files: portable bundles ----------------------------------------------------------------

@pytest.fixture(scope="module")
def weights_run(tmp_path_factory, tiny_kwargs):
    """A run trained with a relative --weights path, from its own working folder."""
    import os

    import timm
    from safetensors.torch import save_file

    import imbvision

    home = tmp_path_factory.mktemp("wrun")
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    save_file(model.state_dict(), str(home / "w.safetensors"))
    old = os.getcwd()
    os.chdir(home)
    try:
        kw = dict(tiny_kwargs, weights="w.safetensors")
        imbvision.train(out="run", strategy="ce", progress=False, **kw)
    finally:
        os.chdir(old)
    return home


def test_relative_weights_found_from_any_folder(weights_run, tmp_path, tiny_manifest, monkeypatch):
    monkeypatch.chdir(tmp_path)
    img = str(sorted((tiny_manifest.parent / "images").glob("*.png"))[0])
    r = runner.invoke(app, ["predict", str(weights_run / "run"), img])
    assert r.exit_code == 0, r.output
    meta = json.loads((weights_run / "run" / "model.json").read_text())
    assert Path(meta["backbone"]["weights_path"]).is_absolute() and len(meta["backbone"]["weights_file_sha256"]) == 64


def test_moved_weights_named_then_found_with_weights_option(weights_run, tmp_path, tiny_manifest):
    run = shutil.copytree(weights_run / "run", tmp_path / "run")
    moved = tmp_path / "moved.safetensors"
    shutil.copy(weights_run / "w.safetensors", moved)
    meta = json.loads((run / "model.json").read_text())
    meta["backbone"]["weights_path"] = str(tmp_path / "gone" / "w.safetensors")  # as if the file had moved
    meta["meta_sha256"] = meta_digest(meta)
    (run / "model.json").write_text(json.dumps(meta))
    img = str(sorted((tiny_manifest.parent / "images").glob("*.png"))[0])
    r = runner.invoke(app, ["predict", str(run), img])
    assert r.exit_code == 2 and "not found" in r.output and "--weights" in r.output
    r = runner.invoke(app, ["predict", str(run), img, "--weights", str(moved)])
    assert r.exit_code == 0, r.output


def test_swapped_weights_file_refused(weights_run, tmp_path, tiny_manifest):
    """Tampering: another weights file under the recorded name (or given with --weights)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(1)
    other = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    for p in other.parameters():
        p.data.mul_(1.01)
    save_file(other.state_dict(), str(tmp_path / "other.safetensors"))
    img = str(sorted((tiny_manifest.parent / "images").glob("*.png"))[0])
    r = runner.invoke(app, ["predict", str(weights_run / "run"), img, "--weights", str(tmp_path / "other.safetensors")])
    assert r.exit_code == 2 and "not the one this model was trained with" in " ".join(r.output.split())


# -- the cached ONNX export ----------------------------------------------------------------------------------

def _onnx_setup(tmp_path):
    from imbvision.backbones import create_backbone
    from imbvision.backbones.engine import TorchEngine, make_engine

    bb = create_backbone("test_efficientnet", weights="none")
    eng = make_engine(bb, 64, kind="onnx", cache_dir=tmp_path)
    (path,) = sorted((tmp_path / "onnx").glob("*.onnx"))
    batch = np.random.default_rng(3).integers(0, 256, (3, 3, 64, 64), dtype=np.uint8)
    return bb, path, batch, TorchEngine(bb)(batch), eng, make_engine


def _sidecar_ok(path: Path) -> bool:
    from imbvision._fingerprint import content_digest
    return json.loads(path.with_suffix(".json").read_text())["sha256"] == content_digest(path)


def test_onnx_with_a_scaled_weight_is_rebuilt(tmp_path):
    import onnx
    from onnx import numpy_helper

    bb, path, batch, want, _, make_engine = _onnx_setup(tmp_path)
    m = onnx.load(str(path))
    init = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] *= 3.0  # one weight scaled
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(path))
    eng = make_engine(bb, 64, kind="onnx", cache_dir=tmp_path)
    assert np.abs(eng(batch) - want).max() <= 1e-3 and _sidecar_ok(path)


def test_truncated_onnx_is_rebuilt_not_bypassed(tmp_path):
    bb, path, batch, want, _, make_engine = _onnx_setup(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    eng = make_engine(bb, 64, kind="auto", cache_dir=tmp_path)
    assert eng.name == "onnx" and np.abs(eng(batch) - want).max() <= 1e-3 and _sidecar_ok(path)


def test_onnx_without_its_check_record_is_rebuilt(tmp_path):
    bb, path, batch, want, _, make_engine = _onnx_setup(tmp_path)
    path.with_suffix(".json").unlink()
    eng = make_engine(bb, 64, kind="onnx", cache_dir=tmp_path)
    assert np.abs(eng(batch) - want).max() <= 1e-3 and _sidecar_ok(path)
