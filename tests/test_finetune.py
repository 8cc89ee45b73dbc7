"""Fine-tune mode: the Fabric loop, strategies in pixel space, checkpoints, resume, DDP.

Every run uses timm's tiny random ``test_efficientnet`` at 48 px on 60 generated
images, so each takes seconds on a CPU.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import imbvision
from imbvision.errors import ConfigError
from imbvision.model import Model
from imbvision.strategies.registry import StrategyContext, compose
from imbvision.training import finetune as ft
from imbvision.training import network
from imbvision.training.finetune import checkpoint, data as ftdata, loop
from imbvision.training.config import TrainConfig
from imbvision.training.prepare import prepare_data

FAST = dict(mode="finetune", backbone="test_efficientnet", weights="none", image_size=48, epochs=2,
            batch_size=8, n_boot=0, workers=0)


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory) -> Path:
    from imbvision.data.synthetic import DemoSpec, generate_demo_dataset

    return generate_demo_dataset(tmp_path_factory.mktemp("ft") / "d", DemoSpec(n=60, positive_rate=0.2, size=48))


@pytest.fixture(scope="module")
def base(small_manifest, tmp_path_factory) -> dict:
    return dict(FAST, data=str(small_manifest), cache_dir=str(tmp_path_factory.mktemp("ftcache")))


def _direct(base: dict, out: Path, resume: bool = False, **over):
    """run_finetune without the report: faster for loop-level checks."""
    cfg = TrainConfig(**{**base, **over})
    prep = prepare_data(cfg.data, seed=cfg.seed, val=cfg.val, test=cfg.test)
    return ft.run_finetune(cfg, prep, compose(cfg.strategy), out, progress=False, resume=resume), prep


@pytest.fixture(scope="module")
def ce_run(base, tmp_path_factory):
    return imbvision.train(out=tmp_path_factory.mktemp("ftrun") / "ce", strategy="ce", progress=False, **base)


def test_run_writes_bundle_and_report(ce_run):
    out = ce_run.out
    for name in ("model.json", "model.safetensors", "report.html", "results.json", "scores_test.csv",
                 "checkpoints/last.safetensors", "checkpoints/last.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "model.json").read_text())
    assert meta["mode"] == "finetune" and meta["head"]["name"] == "finetune"
    assert meta["backbone"]["name"] == "test_efficientnet" and meta["backbone"]["image_size"] == 48
    train = json.loads((out / "results.json").read_text())["train"]
    assert train["epochs_run"] == 2 and len(train["history"]) == 2
    for row in train["history"]:
        assert {"epoch", "train_loss", "val_ap", "seconds", "samples_per_s"} <= set(row)
    last = json.loads((out / "checkpoints" / "last.json").read_text())
    assert last["epoch"] == 2 and last["best_epoch"] in (1, 2) and last["config_hash"]


def test_saved_model_reproduces_run_scores(ce_run):
    out = ce_run.out
    with open(out / "scores_test.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = [r["path"] for r in rows]
    model = Model.load(out)
    got = model.predict_proba(paths)
    np.testing.assert_allclose(got, [float(r["probability"]) for r in rows], atol=1e-5)
    raw = json.loads((out / "raw_scores.json").read_text())["test"]
    from imbvision.data.decode import load_image_array
    np.testing.assert_allclose(model.raw_scores([load_image_array(p) for p in paths]), raw, atol=1e-5)


def test_linear_probe_leaves_backbone_unchanged(base, tmp_path):
    from imbvision.backbones import create_backbone

    res, _ = _direct(base, tmp_path / "probe", unfreeze="0")
    torch.manual_seed(ftdata.derive_seed(0, "init"))  # the run's initialisation
    ref = create_backbone("test_efficientnet", weights="none").model.state_dict()
    arrays = res.arrays
    assert {k[len("net.backbone."):] for k in arrays if k.startswith("net.backbone.")} == set(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(arrays[f"net.backbone.{k}"], v.numpy(), err_msg=k)  # BN stats too
    assert res.info["trainable_params"] == 257  # 256 features + bias
    assert res.info["total_params"] > 10 * res.info["trainable_params"]


def test_unfreeze_last_blocks_and_errors(base):
    from imbvision.backbones import create_backbone

    net = ft.build_network(create_backbone("test_efficientnet", weights="none"))
    counts = ft.apply_unfreeze(net, "1")
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.blocks.4.") for n in trainable)
    assert not any(n.startswith(("backbone.blocks.3.", "backbone.conv_stem")) for n in trainable)
    assert {"backbone.conv_head.weight", "backbone.bn2.weight", "head.weight"} <= trainable
    assert 0 < counts["trainable_params"] < counts["total_params"]
    network.set_train_mode(net)
    assert not net.backbone.bn1.training and net.backbone.bn2.training
    with pytest.raises(ConfigError, match="exceeds the 5 blocks"):
        ft.apply_unfreeze(net, "9", "test_efficientnet")


def test_resume_matches_uninterrupted_run(base, tmp_path, monkeypatch):
    opts = dict(epochs=3, patience=0)
    full, _ = _direct(base, tmp_path / "full", **opts)

    class Killed(Exception):
        pass

    real_save = checkpoint.save_checkpoint

    def save_then_die(folder, net, best, optimizer, trainer):
        real_save(folder, net, best, optimizer, trainer)
        if trainer["epoch"] == 2:
            raise Killed

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        _direct(base, tmp_path / "cut", **opts)
    monkeypatch.setattr(checkpoint, "save_checkpoint", real_save)
    assert json.loads((tmp_path / "cut" / "checkpoints" / "last.json").read_text())["epoch"] == 2
    resumed, _ = _direct(base, tmp_path / "cut", resume=True, **opts)
    assert resumed.info["resumed_from_epoch"] == 2 and resumed.info["epochs_run"] == 3
    for a, b in zip(full.info["history"], resumed.info["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-7)
        assert a["val_ap"] == b["val_ap"]
    np.testing.assert_allclose(full.p_test, resumed.p_test, atol=1e-7)
    assert full.info["best_epoch"] == resumed.info["best_epoch"]


@pytest.mark.slow
def test_resume_after_sigkill(base, tmp_path):
    """A subprocess run killed with SIGKILL once a checkpoint exists resumes to the same numbers."""
    kw = dict(base, epochs=3, patience=0)
    out = tmp_path / "killed"
    code = (f"import imbvision; imbvision.train(out={str(out)!r}, progress=False, strategy='ce', **{kw!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoints" / "last.json").exists(), proc.stderr.read().decode()[-2000:]
    resumed = imbvision.train(out=out, progress=False, resume=True, strategy="ce", **kw)
    full = imbvision.train(out=tmp_path / "full", progress=False, strategy="ce", **kw)
    a = json.loads((resumed.out / "results.json").read_text())
    b = json.loads((full.out / "results.json").read_text())
    assert a["test"]["ap"] == pytest.approx(b["test"]["ap"], abs=1e-9)
    assert [r["val_ap"] for r in a["train"]["history"]] == [r["val_ap"] for r in b["train"]["history"]]


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(base, tmp_path, monkeypatch):
    calls = {"n": 0}

    class NaNLater(torch.nn.Module):
        def forward(self, logits, target):
            calls["n"] += 1
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            return loss * float("nan") if calls["n"] > 6 else loss  # epoch 1 has 5 steps

    monkeypatch.setattr(loop, "build_loss", lambda recipe, ctx: NaNLater())
    out = tmp_path / "nan"
    with pytest.raises(ft.NonFiniteLossError, match=r"loss became NaN at epoch 2 step 2; lower --lr") as err:
        _direct(base, out, epochs=3)
    assert "last good checkpoint (epoch 1) is kept at" in str(err.value)
    trainer, parts, _ = ft.read_checkpoint(out / "checkpoints")
    assert trainer["epoch"] == 1 and parts["model"] and parts["optim"]
    assert all(torch.isfinite(v.float()).all() for v in parts["model"].values())
    assert json.loads((out / "checkpoints" / "last.json").read_text())["epoch"] == 1


def test_strategies_compose_and_train(base, tmp_path):
    with pytest.warns(UserWarning):  # focal + balanced sampler correct the prior twice
        res = imbvision.train(out=tmp_path / "combo", strategy="focal+balanced-sampler+copy-paste+mixup",
                              progress=False, **base)
    info = json.loads((res.out / "results.json").read_text())["train"]
    assert info["synthetic_per_epoch"]["copy-paste"] > 0
    assert info["counts_after_resampling"][1] > 7  # virtual positives counted
    assert all(np.isfinite(r["train_loss"]) for r in info["history"])
    assert (res.out / "examples" / "copy-paste.png").is_file() and (res.out / "examples" / "mixup.png").is_file()


def test_generating_resampler_is_refused(base, tmp_path):
    with pytest.raises(ConfigError, match="head mode only"):
        _direct(base, tmp_path / "smote", strategy="smote")


def test_selection_resampler_chooses_training_images(base, tmp_path):
    res, prep = _direct(base, tmp_path / "under", strategy="random-under", epochs=1)
    n_pos = int(prep.dataset.labels[prep.split.train].sum())
    assert res.info["counts_after_resampling"] == [n_pos, n_pos]
    # tomek finds neighbours in the (cached) embeddings of the same backbone
    res, _ = _direct(base, tmp_path / "tomek", strategy="tomek", epochs=1)
    before, after = res.info["resampling"]["counts_before"], res.info["resampling"]["counts_after"]
    assert after[1] == before[1] and after[0] <= before[0]
    assert any((Path(base["cache_dir"]) / "embeddings").iterdir())


def test_ranks_draw_disjoint_samples():
    labels = np.array([0] * 37 + [1] * 8)
    recipe = compose("ce")
    ctx = StrategyContext(class_counts=(37, 8))
    for epoch in (1, 2):
        shards = []
        for rank in (0, 1):
            batches = ftdata.EpochBatches(ftdata.train_sampler(labels, recipe, ctx, 0, 2, rank), 8, rank, 2)
            batches.set_epoch(epoch)
            shards.append(batches.indices())
            keys = [k for b in batches for k in b]
            assert all(k[0] == epoch for k in keys) and len({k[2] for k in keys}) == len(keys)
        assert len(shards[0]) == len(shards[1]) == 22
        assert not set(shards[0]) & set(shards[1])
    # The weighted draw is one global draw per epoch: positions partition it.
    rec = compose("balanced-sampler")
    a = ftdata.train_sampler(labels, rec, ctx, 0, 2, 0)
    b = ftdata.train_sampler(labels, rec, ctx, 0, 2, 1)
    a.set_epoch(3), b.set_epoch(3)
    assert sorted(list(a) + list(b)) == sorted(a.global_draw().tolist()[: len(a) + len(b)])


@pytest.mark.slow
def test_two_process_ddp_on_cpu(base, tmp_path):
    res, prep = _direct(base, tmp_path / "ddp", devices=2, accelerator="cpu")
    assert res.info["world_size"] == 2
    assert all(row["rank_overlap"] == 0 for row in res.info["history"])
    assert len(res.p_val) == len(prep.split.val) and np.isfinite(res.p_val).all()
    assert len(res.p_test) == len(prep.split.test)
    assert (tmp_path / "ddp" / "checkpoints" / "last.safetensors").is_file()


def test_mixed_image_sizes_and_tiny_masks(tmp_path):
    from PIL import Image

    from imbvision.data.records import ImageRecord

    recs = []
    for k, (w, h) in enumerate([(40, 60), (90, 50), (64, 64), (33, 120)]):
        arr = np.full((h, w, 3), 90 + 20 * k, np.uint8)
        Image.fromarray(arr).save(tmp_path / f"i{k}.png")
        mask = None
        if k < 2:  # positives: a one-pixel object survives the resize to 24 px
            m = np.zeros((h, w), np.uint8)
            m[h // 3, w // 2] = 255
            Image.fromarray(m).save(tmp_path / f"m{k}.png")
            mask = tmp_path / f"m{k}.png"
        recs.append(ImageRecord(tmp_path / f"i{k}.png", int(k < 2), mask))
    spec = compose("copy-paste:blend=hard").synthesis[0]
    data = ftdata.TrainData(recs, [ftdata.SynthStep.from_spec(spec, StrategyContext((2, 2)), 3)], size=24,
                            seed=0, masks=True)
    assert len(data) == 7 and data.labels().tolist() == [1, 1, 0, 0, 1, 1, 1]
    for i in range(len(data)):
        img, label, mask, *_ = data[(1, 0, i, i)]
        assert img.shape == (3, 24, 24) and img.dtype == torch.uint8
        if label == 1:
            assert mask is not None and mask.shape == (24, 24) and bool(mask.any())
    a, b = data[(1, 0, 5, 5)], data[(1, 0, 5, 5)]
    assert torch.equal(a[0], b[0])  # same key, same virtual positive
    assert not torch.equal(data[(1, 0, 5, 5)][0], data[(2, 0, 5, 5)][0])  # fresh each epoch
    assert ftdata.EvalData(recs, 24)[3][1].shape == (3, 24, 24)
