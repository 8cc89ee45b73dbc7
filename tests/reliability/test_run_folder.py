"""Run folders are written whole or not at all, never over another run or inside the data."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import imbvision
from imbvision._rundir import staging_dir
from imbvision.cli import app
from imbvision.errors import ConfigError

runner = CliRunner()


def _kw(tiny_kwargs):
    return dict(tiny_kwargs, progress=False)


def test_existing_run_refused_without_overwrite_or_resume(tmp_path, tiny_kwargs):
    out = tmp_path / "run"
    imbvision.train(out=out, strategy="copy-paste", **_kw(tiny_kwargs))
    assert (out / "examples" / "copy-paste.png").is_file()
    (out / "bad_files.csv").write_text("path,reason\nold.png,from an older run\n")
    before = (out / "model.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run; pass --overwrite"):
        imbvision.train(out=out, strategy="ce", **_kw(tiny_kwargs))
    assert (out / "model.json").read_bytes() == before
    res = imbvision.train(out=out, strategy="ce", overwrite=True, **_kw(tiny_kwargs))
    # Nothing of the older run survives: no copy-paste examples, no stale bad_files.csv.
    assert not (out / "examples").exists() and not (out / "bad_files.csv").exists()
    assert json.loads((out / "results.json").read_text())["strategy"] == "ce"
    report = (out / "report.html").read_text(encoding="utf-8")
    assert ".partial" not in report and str(out) in report  # the report names the final folder
    r = runner.invoke(app, ["evaluate", str(out)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "copy-paste" not in (out / "report.html").read_text(encoding="utf-8")
    assert res.out == out and not staging_dir(out).parent.exists()


def test_cli_refuses_existing_run_in_one_line(tmp_path, tiny_kwargs):
    out = tmp_path / "run"
    imbvision.train(out=out, strategy="ce", **_kw(tiny_kwargs))
    opts = ["--data", tiny_kwargs["data"], "--backbone", "test_efficientnet", "--weights", "none",
            "--image-size", "64", "--cache-dir", tiny_kwargs["cache_dir"], "--out", str(out)]
    r = runner.invoke(app, ["train", *opts])
    assert r.exit_code == 2 and "Traceback" not in r.output and "--overwrite" in r.output
    r = runner.invoke(app, ["train", *opts, "--overwrite"])
    assert r.exit_code == 0, r.output


def test_folder_with_other_files_is_never_replaced(tmp_path, tiny_kwargs):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not an imbvision run"):
        imbvision.train(out=out, strategy="ce", overwrite=True, **_kw(tiny_kwargs))
    assert (out / "thesis.tex").read_text() == "precious"


def test_failed_run_leaves_nothing(tmp_path, tiny_kwargs):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="at most one loss"):
        imbvision.train(out=out, strategy="focal+weighted-ce", **_kw(tiny_kwargs))
    assert not out.exists() and not staging_dir(out).parent.exists()


def test_killed_run_leaves_no_finished_looking_folder(tmp_path, tiny_kwargs, monkeypatch):
    import imbvision.workflows.train as run_mod

    out = tmp_path / "run"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "evaluate_run", boom)  # dies after the model was saved
    with pytest.raises(KeyboardInterrupt):
        imbvision.train(out=out, strategy="ce", **_kw(tiny_kwargs))
    assert not out.exists()


@pytest.mark.parametrize("where", ["defect/run", "run", "."])
def test_out_inside_the_data_is_refused(tmp_path, tiny_kwargs, where, class_folders):
    root = class_folders(tmp_path / "data")
    kw = dict(_kw(tiny_kwargs), data=str(root), positive="defect")
    out = root / where
    with pytest.raises(ConfigError, match="inside the data folder"):
        imbvision.train(out=out, strategy="ce", **kw)
    assert sorted(p.name for p in root.iterdir()) == ["defect", "ok"]
    assert len(list((root / "defect").iterdir())) == 10


def test_out_holding_the_data_is_refused(tmp_path, tiny_kwargs, class_folders):
    root = class_folders(tmp_path / "proj" / "data")
    kw = dict(_kw(tiny_kwargs), data=f"folder:{root}", positive="defect")
    with pytest.raises(ConfigError, match="holds the data folder"):
        imbvision.train(out=tmp_path / "proj", strategy="ce", **kw)


def test_resume_refuses_changed_data(tmp_path, tiny_manifest, tiny_kwargs):
    import csv

    rows = list(csv.DictReader(open(tiny_manifest, newline="", encoding="utf-8")))
    for r in rows:
        r["path"] = str((tiny_manifest.parent / r["path"]).resolve())
        r["mask"] = str((tiny_manifest.parent / r["mask"]).resolve()) if r.get("mask") else ""
    m = tmp_path / "m.csv"

    def write(rs):
        with open(m, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rs[0]))
            w.writeheader()
            w.writerows(rs)

    write(rows)
    kw = dict(_kw(tiny_kwargs), data=str(m))
    out = tmp_path / "run"
    imbvision.train(out=out, strategy="ce", **kw)
    rows[0]["label"] = "1" if rows[0]["label"] == "0" else "0"
    write(rows)
    with pytest.raises(ConfigError, match="the data changed since this run began"):
        imbvision.train(out=out, strategy="ce", resume=True, **kw)
    imbvision.train(out=out, strategy="ce", overwrite=True, **kw)


def test_compare_out_inside_the_data_is_refused(tmp_path, tiny_kwargs, class_folders):
    from imbvision.workflows.compare import run_compare

    root = class_folders(tmp_path / "data")
    kw = {k: v for k, v in tiny_kwargs.items() if k not in ("data", "n_boot", "max_synthetic")}
    with pytest.raises(ConfigError, match="inside the data folder"):
        run_compare(str(root), out=root / "ok" / "cmp", positive="defect", progress=False, **kw)
    assert not (root / "ok" / "cmp").exists()


def test_out_holding_a_manifest_is_refused_beside_it_is_fine(tmp_path, tiny_manifest, tiny_kwargs):
    from imbvision._rundir import refuse_out_in_data

    with pytest.raises(ConfigError, match="holds the data folder"):
        refuse_out_in_data(tiny_manifest.parent, f"csv:{tiny_manifest}")
    refuse_out_in_data(tiny_manifest.parent / "runs" / "x", f"csv:{tiny_manifest}")  # listed files only: fine


def test_interrupted_fine_tune_checkpoint_is_not_thrown_away(tmp_path, tiny_kwargs):
    out = tmp_path / "run"
    ckpt = staging_dir(out) / "checkpoints" / "last.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"stands for a checkpoint")
    with pytest.raises(ConfigError, match="interrupted fine-tune run with a checkpoint.*--resume"):
        imbvision.train(out=out, strategy="ce", **_kw(tiny_kwargs))
    assert ckpt.is_file()
    imbvision.train(out=out, strategy="ce", overwrite=True, **_kw(tiny_kwargs))
    assert (out / "model.json").is_file() and not staging_dir(out).parent.exists()


def test_resume_reads_an_older_run_folder_through_the_migration(tmp_path, tiny_kwargs):
    """A config.json written before --resize, --patch-layers, --split and --split-file existed is resumed."""
    kw = _kw(tiny_kwargs)
    out = tmp_path / "run"
    imbvision.train(out=out, strategy="ce", resize="stretch", patch_layers="s8+s16", **kw)
    cfg = json.loads((out / "config.json").read_text())
    for k in ("resize", "patch_layers", "split", "split_file"):
        cfg.pop(k)
    (out / "config.json").write_text(json.dumps(cfg))
    imbvision.train(out=out, strategy="ce", resume=True, resize="stretch", patch_layers="s8+s16", **kw)
    with pytest.raises(ConfigError, match=rf"different configuration \(patch_layers\) than {out / 'config.json'}"):
        imbvision.train(out=out, strategy="ce", resume=True, resize="stretch", **kw)  # s16+s32 now
