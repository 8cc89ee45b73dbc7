"""The command line: sub-commands run, bad input gives one clear line and exit 2."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from imbvision.cli import app

runner = CliRunner()


def _opts(kw: dict) -> list[str]:
    return ["--data", kw["data"], "--backbone", kw["backbone"], "--weights", kw["weights"],
            "--image-size", str(kw["image_size"]), "--cache-dir", kw["cache_dir"]]


def test_strategies_lists_every_family():
    res = runner.invoke(app, ["strategies"], env={"COLUMNS": "300"})
    assert res.exit_code == 0
    for name in ("focal", "smote-tomek", "copy-paste", "object-cutmix", "balanced-sampler", "logreg"):
        assert name in res.output


@pytest.mark.parametrize("strategy, fragment", [
    ("focall", "unknown strategy 'focall'"),
    ("focal:gamma=-1", "gamma"),
    ("focal+weighted-ce", "at most one loss"),
])
def test_bad_strategy_is_one_clear_line(strategy, fragment, tmp_path, tiny_kwargs):
    res = runner.invoke(app, ["train", *_opts(tiny_kwargs), "--out", str(tmp_path / "r"), "--strategy", strategy])
    assert res.exit_code == 2
    assert fragment in res.output and "Traceback" not in res.output


def test_train_then_predict_lists_unreadable_files(tmp_path, tiny_kwargs):
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", *_opts(tiny_kwargs), "--out", str(run), "--strategy", "weighted-ce"],
                        env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "always-negative" in res.output and (run / "report.html").is_file()
    good = tiny_kwargs["data"].replace("manifest.csv", "images/img_00001.png")
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    out = tmp_path / "preds.csv"
    res = runner.invoke(app, ["predict", str(run), good, str(bad), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out)))
    assert rows[0]["path"] == good and 0 <= float(rows[0]["probability"]) <= 1 and rows[0]["decision"] in ("0", "1")
    assert rows[1]["path"] == str(bad) and "not a readable image" in rows[1]["error"]
    res = runner.invoke(app, ["evaluate", str(run)], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "test metrics" in res.output


def test_predict_on_a_folder_that_is_not_a_run(tmp_path):
    res = runner.invoke(app, ["predict", str(tmp_path), "x.png"])
    assert res.exit_code == 2 and "not a model folder" in res.output


def test_compare_via_cli(tmp_path, tiny_kwargs):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *_opts(tiny_kwargs), "--out", str(out), "--strategies", "ce,weighted-ce",
                              "--seeds", "2"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "weighted-ce" in res.output and (out / "leaderboard.csv").is_file()
    res = runner.invoke(app, ["compare", *_opts(tiny_kwargs), "--out", str(out), "--strategies", "ce", "--seeds", "2",
                              "--mode", "finetune"])
    assert res.exit_code == 2 and "head mode" in res.output


def test_compare_primary_via_cli_is_declared_in_the_page_and_the_json(tmp_path, tiny_kwargs):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *_opts(tiny_kwargs), "--out", str(out), "--strategies", "ce,weighted-ce,random-over",
                              "--seeds", "2", "--primary", "weighted-ce", "--json"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    by = {r["strategy"]: r for r in payload["leaderboard"]}
    assert by["weighted-ce"]["gate"] == "primary" and by["random-over"]["gate"] == "after primary"
    assert "Declared primary comparison: weighted-ce vs ce" in payload["recommendation"]
    res = runner.invoke(app, ["compare", *_opts(tiny_kwargs), "--out", str(tmp_path / "c2"), "--strategies",
                              "ce,weighted-ce", "--seeds", "2", "--primary", "ce"])
    assert res.exit_code == 2 and "--primary 'ce' is the baseline" in res.output and "name a remedy: weighted-ce" in res.output
    assert "4/4" not in res.output  # refused before any cell ran


def test_audit_then_review_writes_a_new_manifest(tmp_path, tiny_kwargs):
    out = tmp_path / "audit"
    opts = ["--data", tiny_kwargs["data"], "--backbone", tiny_kwargs["backbone"], "--weights", tiny_kwargs["weights"],
            "--cache-dir", tiny_kwargs["cache_dir"]]
    res = runner.invoke(app, ["audit", *opts, "--out", str(out)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "nothing was deleted" in res.output
    # the counts on the terminal, and the very review command the page shows
    summary = json.loads((out / "audit.json").read_text())
    assert f"{summary['counts']['images']} images (" in res.output and "label suspect" in res.output
    cmd = f"imbvision audit --data {tiny_kwargs['data']} --review {out / 'suspects.csv'}"
    assert cmd in res.output and cmd in (out / "audit.html").read_text()
    rows = list(csv.DictReader(open(out / "suspects.csv")))
    assert rows, "the audit ranks at least one suspect on a noisy tiny set"
    rows[0]["decision"] = "drop"
    review = tmp_path / "review.csv"
    with open(review, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    before = open(tiny_kwargs["data"]).read()
    res = runner.invoke(app, ["audit", "--data", tiny_kwargs["data"], "--review", str(review),
                              "--manifest-out", str(tmp_path / "new.csv")])
    assert res.exit_code == 0, res.output
    assert "kept 119, relabelled 0, dropped 1" in res.output and "{'" not in res.output  # not a raw dict
    new = list(csv.DictReader(open(tmp_path / "new.csv")))
    assert len(new) == 119 and rows[0]["path"] not in {r["path"] for r in new}
    assert open(tiny_kwargs["data"]).read() == before  # the source manifest is untouched


# --------------------------------------------------------------------------- issue 13: the command line
def test_strategy_references_cite_papers_by_name():
    from imbvision.strategies import list_strategies

    refs = {r.name: r.reference for r in list_strategies()}
    assert not [n for n, ref in refs.items() if "seed" in ref.lower()], "references must cite papers, not the seed"
    for name, words in {"focal": ("Lin", "2017"), "smote": ("Chawla", "2002"), "mixup": ("Zhang", "2018"),
                        "cutmix": ("Yun", "2019"), "copy-paste": ("Ghiasi", "2021"),
                        "weighted-ce": ("King", "2001")}.items():
        assert all(w in refs[name] for w in words), (name, refs[name])


def _py(code: str, env: dict) -> str:
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_listing_and_typos_do_not_import_torch(tmp_path):
    env = {"IMBVISION_CACHE": str(tmp_path / "cache")}
    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom imbvision.cli import app\n"
             "r = CliRunner().invoke(app, {args!r}, env={{'COLUMNS': '200'}})\n"
             "print(r.exit_code, 'torch' in sys.modules, repr(r.output))\n")
    first = _py(probe.format(args=["strategies"]), env)  # builds the catalog (imports torch once)
    assert first.startswith("0 ")
    for args, code in ((["strategies", "--family", "loss"], "0"),
                       (["train", "--data", "demo", "--out", str(tmp_path / "r"), "--strategy", "focall"], "2"),
                       (["train", "--data", "demo", "--out", str(tmp_path / "r"), "--strategy", "focal:gama=2"], "2"),
                       (["compare", "--data", "demo", "--out", str(tmp_path / "c"), "--strategies", "ce,smote-tomk"], "2")):
        out = _py(probe.format(args=args), env)
        exit_code, torch_loaded, text = out.split(" ", 2)
        assert exit_code == code, out
        assert torch_loaded == "False", f"{args} imported torch: {out}"
    # refusals that need no model: an occupied --out, a predict with no images (checked before torch)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    for args, fragment in ((["train", "--data", "demo", "--out", str(run)], "already holds a run"),
                           (["predict", str(run)], "no images given")):
        exit_code, torch_loaded, text = _py(probe.format(args=args), env).split(" ", 2)
        assert exit_code == "2" and fragment in text, text
        assert torch_loaded == "False", f"{args} imported torch before refusing: {text}"
    assert "Did you mean 'focal'" in _py(probe.format(args=["train", "--data", "demo", "--out", "x", "--strategy",
                                                               "focall"]), env)
    assert "no parameter 'gama'" in _py(probe.format(args=["train", "--data", "demo", "--out", "x", "--strategy",
                                                          "focal:gama=2"]), env)


def test_piped_output_is_not_squeezed_to_80_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    res = runner.invoke(app, ["strategies"])
    assert res.exit_code == 0
    assert max(len(line) for line in res.output.splitlines()) > 120
    assert "strate…" not in res.output and "…" not in res.output.split("\n", 3)[2]


def test_help_texts():
    res = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "200"})
    assert "required" in res.output.split("--data", 1)[1].split("--out", 1)[0].lower()
    assert "positive (rare) class" in res.output
    res = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"})
    assert "[IMAGE]..." in res.output and "images..." not in res.output  # (typer adds its own <type> label)
    assert "positive (rare) class" in res.output
    res = runner.invoke(app, ["audit", "--out", "x"], env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "--data" in res.output


def test_train_json_warnings_once_predict_columns(tmp_path, tiny_kwargs):
    import json

    run = tmp_path / "run"
    res = runner.invoke(app, ["train", *_opts(tiny_kwargs), "--out", str(run), "--strategy",
                              "weighted-ce+balanced-sampler", "--json"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    # one rich line, once, without Python's "file:line: Category:" and source line
    assert res.output.count("warning (double correction)") == 1, res.output
    assert "DoubleCorrectionWarning:" not in res.output and "warnings.warn" not in res.output
    payload = json.loads(res.stdout[res.stdout.index("{"):])
    assert payload["strategy"] == "weighted-ce+balanced-sampler" and 0 <= payload["metrics"]["ap"] <= 1
    assert "each shift the class prior" in (run / "report.html").read_text()  # the warning is in the report too
    res = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["metrics"]["ap"] == payload["metrics"]["ap"]
    out = tmp_path / "preds.csv"
    res = runner.invoke(app, ["predict", str(run), "--data", tiny_kwargs["data"], "--out", str(out)],
                        env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["path", "label", "split", "probability", "decision", "error"]
    splits = {r["path"]: r["split"] for r in csv.DictReader(open(run / "split.csv"))}
    assert all(r["split"] == splits[r["path"]] and r["label"] in ("0", "1") for r in rows)
    n_train = sum(r["split"] == "train" for r in rows)
    assert n_train > 0 and f"{n_train} of these images trained the model" in res.output


def test_train_from_compare_trains_the_recommended_strategy(tmp_path, tiny_kwargs):
    import json

    cmp_dir = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *_opts(tiny_kwargs), "--out", str(cmp_dir), "--strategies",
                              "ce,weighted-ce", "--seeds", "2", "--json"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    board = json.loads(res.stdout[res.stdout.index("{"):])
    assert {r["strategy"] for r in board["leaderboard"]} == {"ce", "weighted-ce"}
    res = runner.invoke(app, ["train", "--from", str(cmp_dir), "--out", str(tmp_path / "best"), "--json",
                              "--cache-dir", tiny_kwargs["cache_dir"]], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    best = json.loads(res.stdout[res.stdout.index("{"):])
    assert best["strategy"] in ("ce", "weighted-ce") and "baseline" in best["chosen_because"]
    cfg = json.loads((tmp_path / "best" / "config.json").read_text())
    assert (cfg["backbone"], cfg["image_size"], cfg["data"]) == ("test_efficientnet", 64, tiny_kwargs["data"])
    assert cfg["extra"]["chosen_because"] == best["chosen_because"]
    res = runner.invoke(app, ["train", "--from", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no finished comparison" in res.output


def test_sources_lists_every_registered_source_without_importing_torch():
    import subprocess
    import sys

    from typer.testing import CliRunner

    from imbvision.cli import app
    from imbvision.data.sources import SOURCES

    r = CliRunner().invoke(app, ["sources"])
    assert r.exit_code == 0
    for spec in SOURCES:
        assert spec.syntax in r.output
    code = "import sys, imbvision.data.sources; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
