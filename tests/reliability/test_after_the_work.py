"""Crashes after the work is done: odd names, read-only caches, damaged derived files, bad --out, Ctrl-C."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imbvision.cli import app
from imbvision.data.records import ImageRecord
from imbvision.errors import BadFileError

runner = CliRunner()


def _one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    text = " ".join(r.output.split())
    for n in needles:
        assert n in text, (n, r.output)


def _bb(tiny_kwargs) -> list[str]:
    return ["--backbone", "test_efficientnet", "--weights", "none", "--image-size", "64",
            "--cache-dir", tiny_kwargs["cache_dir"]]


def _tiny_images(tiny_manifest: Path, n: int) -> list[Path]:
    return sorted((tiny_manifest.parent / "images").glob("*.png"))[:n]


# -- file names that are not UTF-8 ------------------------------------------------------------------------

@pytest.fixture
def non_utf8_folder(tmp_path, tiny_manifest) -> Path:
    root = tmp_path / "data"
    imgs = _tiny_images(tiny_manifest, 24)
    for cls, part in (("ok", imgs[:16]), ("defect", imgs[16:])):
        (root / cls).mkdir(parents=True)
        for p in part:
            shutil.copy(p, root / cls / p.name)
    # A name with the byte 0xff: valid on Linux, not UTF-8.
    shutil.copy(imgs[0], os.path.join(os.fsencode(root / "defect"), b"bad\xffname.png"))
    return root


@pytest.mark.parametrize("command", ["embed", "train"])
def test_non_utf8_name_refused_up_front(non_utf8_folder, tmp_path, tiny_kwargs, command):
    out = tmp_path / "out"
    r = runner.invoke(app, [command, "--data", str(non_utf8_folder), "--positive", "defect", "--out", str(out),
                            *_bb(tiny_kwargs)])
    _one_line_error(r, "bad\\xffname.png", "not valid UTF-8")
    assert not (out / "features.safetensors").exists() and not (out / "model.json").exists()


def test_non_utf8_name_skipped_and_listed(non_utf8_folder, tmp_path, tiny_kwargs):
    out = tmp_path / "out"
    r = runner.invoke(app, ["embed", "--data", str(non_utf8_folder), "--positive", "defect", "--out", str(out),
                            "--skip-bad", *_bb(tiny_kwargs)])
    assert r.exit_code == 0, r.output
    bad = (out / "bad_files.csv").read_text(encoding="utf-8")
    assert "bad\\xffname.png" in bad and "not valid UTF-8" in bad
    assert len((out / "paths.csv").read_text(encoding="utf-8").splitlines()) == 1 + 24


# -- read-only cache ---------------------------------------------------------------------------------------

def _records(tiny_manifest, n=12):
    return [ImageRecord(p, i % 2) for i, p in enumerate(_tiny_images(tiny_manifest, n))]


def test_fully_cached_read_only_cache_is_only_read(tmp_path, tiny_manifest, monkeypatch):
    import imbvision.backbones.embed as emb_mod
    from imbvision.backbones import embed_dataset

    recs = _records(tiny_manifest)
    kw = dict(backbone="test_efficientnet", weights="none", image_size=64, cache_dir=tmp_path / "cache",
              progress=False, engine="torch")
    first = embed_dataset(recs, **kw)

    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(emb_mod, "atomic_write", refuse)
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: refuse())
    again = embed_dataset(recs, **kw)
    assert again.stats["from_cache"] == len(recs)
    np.testing.assert_array_equal(first.global_, again.global_)


def test_partly_cached_read_only_cache_warns_and_goes_on(tmp_path, tiny_manifest, monkeypatch):
    import imbvision.backbones.embed as emb_mod
    from imbvision.backbones import embed_dataset

    recs = _records(tiny_manifest)
    kw = dict(backbone="test_efficientnet", weights="none", image_size=64, cache_dir=tmp_path / "cache",
              progress=False, engine="torch")
    embed_dataset(recs[:6], **kw)

    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(emb_mod, "atomic_write", refuse)
    with pytest.warns(RuntimeWarning, match="cannot be written .*kept in memory"):
        res = embed_dataset(recs, **kw)
    assert res.stats["computed"] == 6 and res.global_.shape[0] == 12


# -- damaged between check and embed -----------------------------------------------------------------------

def test_file_damaged_after_the_check_same_error_for_any_worker_count(tmp_path, tiny_manifest):
    from imbvision.backbones import embed_dataset

    folder = tmp_path / "imgs"
    folder.mkdir()
    recs = []
    for i, p in enumerate(_tiny_images(tiny_manifest, 8)):
        shutil.copy(p, folder / p.name)
        recs.append(ImageRecord(folder / p.name, i % 2))
    victim = recs[5].path
    victim.write_bytes(victim.read_bytes()[:60])  # truncated after the (skipped) check
    msgs = []
    for workers in (0, 2):
        with pytest.raises(BadFileError) as e:
            embed_dataset(recs, backbone="test_efficientnet", weights="none", image_size=64, cache_dir=None,
                          workers=workers, batch_size=4, progress=False, engine="torch")
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and str(victim) in msgs[0] and "\n" not in msgs[0]


# -- damaged derived files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "raw_scores.json").unlink(), "raw_scores.json is missing"),
    (lambda d: (d / "raw_scores.json").write_text('{"val": [0.1], "te'), "raw_scores.json is damaged"),
    (lambda d: (d / "raw_scores.json").write_text('{"val": [], "test": []}'), "raw_scores.json is damaged"),
    (lambda d: (d / "split.csv").unlink(), "split.csv is missing"),
    (lambda d: (d / "split.csv").write_text("index,path\n1,x\n"), "split.csv is damaged"),
    (lambda d: (d / "split.csv").write_bytes(b""), "split.csv is damaged"),
])
def test_evaluate_names_a_missing_or_damaged_file(run_copy, damage, needle):
    damage(run_copy)
    r = runner.invoke(app, ["evaluate", str(run_copy)])
    _one_line_error(r, needle, "--overwrite")


def test_evaluate_rewrites_a_garbled_results_json(run_copy):
    before = json.loads((run_copy / "results.json").read_text())
    (run_copy / "results.json").write_text("{garbled")
    r = runner.invoke(app, ["evaluate", str(run_copy)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    after = json.loads((run_copy / "results.json").read_text())
    assert after["test"]["ap"] == before["test"]["ap"]


# -- predict --out -----------------------------------------------------------------------------------------

def test_predict_out_onto_a_folder_or_the_bundle_is_refused(run_copy, tiny_manifest, tmp_path):
    img = str(_tiny_images(tiny_manifest, 1)[0])
    before = (run_copy / "model.json").read_bytes()
    for target, needle in ((tmp_path, "is a folder"), (run_copy / "model.json", "would overwrite a file of the run"),
                           (run_copy / "model.safetensors", "would overwrite a file of the run")):
        r = runner.invoke(app, ["predict", str(run_copy), img, "--out", str(target)])
        _one_line_error(r, needle)
    assert (run_copy / "model.json").read_bytes() == before
    r = runner.invoke(app, ["predict", str(run_copy), img, "--out", str(run_copy / "preds.csv")])
    assert r.exit_code == 0 and (run_copy / "preds.csv").is_file()


# -- Ctrl-C ------------------------------------------------------------------------------------------------

def test_ctrl_c_messages_say_what_is_true(tmp_path, tiny_kwargs, monkeypatch):
    import imbvision.backbones as bb_mod
    import imbvision.workflows.compare as cmp_mod

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(bb_mod, "embed_dataset", stop)
    monkeypatch.setattr(cmp_mod, "run_compare", stop)
    data = ["--data", tiny_kwargs["data"], *_bb(tiny_kwargs)]
    for cmd in ("embed", "compare"):
        r = runner.invoke(app, [cmd, *data, "--out", str(tmp_path / cmd)])
        assert r.exit_code == 130
        assert "rerun the same command" in r.output and "--resume" not in r.output, r.output


# -- parameters that size memory ---------------------------------------------------------------------------

@pytest.mark.parametrize("extra, needle", [
    (["--strategy", "mlp:hidden=100000000"], "hidden='100000000' is invalid; valid: int in [1, 16384]"),
    (["--seed", "-1"], "--seed -1 invalid"),
    (["--image-size", "100000"], "--image-size 100000 invalid"),
    (["--batch-size", "100000000"], "--batch-size 100000000 invalid"),
    (["--tiles", "50"], "--tiles 50 invalid"),
    (["--threshold", "fixed:0"], "must be in (0, 1]"),
])
def test_memory_sizing_parameters_are_range_checked(tmp_path, tiny_kwargs, extra, needle):
    r = runner.invoke(app, ["train", "--data", tiny_kwargs["data"], "--out", str(tmp_path / "r"),
                            "--backbone", "test_efficientnet", "--weights", "none",
                            "--cache-dir", tiny_kwargs["cache_dir"], *extra])
    _one_line_error(r, needle)
    assert not (tmp_path / "r").exists()


class _Damaged:
    """A map-style dataset whose item 3 is a damaged file (as the fine-tune loaders read them)."""

    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 6

    def __getitem__(self, i):
        from imbvision.data.decode import load_image_array
        if i == 3:
            load_image_array(self.path)
        return i


def test_any_dataloader_worker_error_is_the_same_one_line_error(tmp_path):
    from torch.utils.data import DataLoader

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    msgs = []
    for workers in (0, 2):
        with pytest.raises(BadFileError) as e:
            list(DataLoader(_Damaged(bad), batch_size=2, num_workers=workers))
        msgs.append((str(e.value), e.value.path))
    assert msgs[0] == msgs[1] and msgs[0][1] == str(bad) and "\n" not in msgs[0][0]


@pytest.mark.parametrize("args, needle", [
    (["audit", "--seed", "-1"], "--seed -1 invalid"),
    (["embed", "--batch-size", "100000000"], "--batch-size 100000000 invalid"),
    (["embed", "--image-size", "100000"], "--image-size 100000 invalid"),
    (["embed", "--workers", "1000"], "--workers 1000 invalid"),
])
def test_other_commands_range_check_before_any_work(tmp_path, tiny_kwargs, monkeypatch, args, needle):
    import imbvision.data.checks as checks

    def no_work(*a, **k):
        raise AssertionError("images were checked before the options")

    monkeypatch.setattr(checks, "check_dataset", no_work)
    r = runner.invoke(app, [*args, "--data", tiny_kwargs["data"], "--out", str(tmp_path / "o"),
                            "--backbone", "test_efficientnet", "--weights", "none"])
    _one_line_error(r, needle)


def test_demo_size_is_bounded(tmp_path):
    r = runner.invoke(app, ["demo", "--n", "100000000", "--out", str(tmp_path / "d")])
    _one_line_error(r, "n=100000000 invalid")
