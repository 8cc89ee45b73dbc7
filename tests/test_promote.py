"""From leaderboard to model: which strategy `train --from` picks, and why."""

from __future__ import annotations

import json

import pytest

from imbvision.errors import ConfigError
from imbvision.workflows.promote import pick_strategy, settings_from_compare


def _row(name, ap, delta=None, p=None):
    r = {"strategy": name, "ap_mean": ap, "cells": 6}
    if delta is not None:
        r.update(delta_ap=delta, delta_ci=[delta - 0.01, delta + 0.01], p_holm=p)
    return r


def test_largest_significant_gain_wins():
    rows = [_row("mixup", 0.9, 0.10, 0.2), _row("focal", 0.85, 0.05, 0.01), _row("smote", 0.84, 0.04, 0.001),
            _row("ce", 0.8)]
    name, why = pick_strategy(rows)
    assert name == "focal" and "+0.050" in why and "p = 0.01" in why and "2 such strategies" in why


def test_baseline_when_nothing_beats_it_beyond_noise():
    rows = [_row("mixup", 0.9, 0.10, 0.2), _row("ce", 0.8), _row("smote", 0.7, -0.1, 0.001)]
    name, why = pick_strategy(rows)
    assert name == "ce" and "no remedy beats" in why


def test_settings_come_from_the_comparison(tmp_path):
    cfg = {"data": "demo:100", "strategies": ["ce", "focal"], "seeds": 3, "backbone": "b", "image_size": 64,
           "tiles": 2, "features": "both", "threshold": "recall>=0.9", "calibration": "platt", "val": 0.25}
    (tmp_path / "leaderboard.json").write_text(json.dumps({"config": cfg, "leaderboard": [
        _row("focal", 0.9, 0.1, 0.01), _row("ce", 0.8)]}))
    settings, why = settings_from_compare(tmp_path)
    assert settings["strategy"] == "focal" and settings["mode"] == "head" and settings["seed"] == 0
    assert {k: settings[k] for k in ("data", "backbone", "image_size", "tiles", "features", "threshold",
                                     "calibration", "val")} == {k: cfg[k] for k in ("data", "backbone", "image_size",
                                                                                   "tiles", "features", "threshold",
                                                                                   "calibration", "val")}
    assert "strategies" not in settings and "seeds" not in settings
    with pytest.raises(ConfigError, match="no finished comparison"):
        settings_from_compare(tmp_path / "nothing")
    (tmp_path / "leaderboard.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a leaderboard"):
        settings_from_compare(tmp_path)


def test_options_given_on_the_command_line_override_the_comparison(tmp_path, monkeypatch):
    """`train --from CMP --strategy X --seed 2`: X and 2 win over what the comparison recommends (tester's bug)."""
    from typer.testing import CliRunner

    import imbvision.cli as cli

    cfg = {"data": "demo:100", "strategies": ["ce", "focal"], "seeds": 3, "backbone": "b", "image_size": 64,
           "tiles": 0, "features": "global", "threshold": "max-f1", "calibration": "none", "val": 0.25,
           "group_duplicates": False}
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "leaderboard.json").write_text(json.dumps({"config": cfg, "leaderboard": [
        _row("focal", 0.9, 0.1, 0.01), _row("ce", 0.8)]}))
    seen = {}

    def fake_train(settings, out, **kw):
        seen.update(settings)
        raise SystemExit(0)

    monkeypatch.setattr(cli, "_train", fake_train)
    res = CliRunner().invoke(cli.app, ["train", "--from", str(tmp_path / "cmp"), "--out", str(tmp_path / "r"),
                                       "--strategy", "copy-paste", "--seed", "2", "--threshold", "fixed:0.5"])
    assert res.exit_code == 0, res.output
    assert seen["strategy"] == "copy-paste" and seen["seed"] == 2 and seen["threshold"] == "fixed:0.5"
    assert seen["image_size"] == 64 and seen["val"] == 0.25 and seen["group_duplicates"] is False  # from compare


def test_train_from_takes_the_resolved_input_and_every_compared_setting(tmp_path):
    """A comparison run with --resize stretch on tall images is trained with stretch, not the policy's choice."""
    from imbvision.spec import RunSpec, TrainConfig
    from imbvision.workflows.promote import _anchored, _compared_settings

    cfg = {"data": "demo-tall:60", "image_size": 224, "tiles": 0, "features": "global", "threshold": "max-f1",
           "calibration": "intercept", "prior_correction": True, "val": 0.2, "test": 0.2, "positive": None,
           "backbone": "efficientnet_lite0", "weights": None, "train_positive_rate": None, "max_synthetic": 600,
           "group_duplicates": True, "n_boot": 2000, "seeds": 2, "strategies": ["ce"],
           "resolution": {"image_size": 224, "resize": "stretch", "source": {"resize": "given"}}}
    s = _compared_settings(cfg)
    assert s["resize"] == "stretch" and s["patch_layers"] == "s16+s32" and s["split"] == "random"
    assert s["split_file"] is None and s["n_boot"] == 2000 and "seeds" not in s
    keyed = {n for n, f in RunSpec.model_fields.items() if (f.json_schema_extra or {}).get("key") != "never"}
    assert keyed <= set(s)  # every setting of the comparison key travels
    TrainConfig(**s)  # and is a valid training config
    # relative paths are relative to the folder the comparison ran in
    (tmp_path / "mt.csv").write_text("path,label\n")
    assert _anchored("mt.csv", str(tmp_path)) == str(tmp_path / "mt.csv")
    assert _anchored("csv:mt.csv", str(tmp_path)) == f"csv:{tmp_path / 'mt.csv'}"
    assert _anchored("demo:60", str(tmp_path)) == "demo:60" and _anchored("/abs/x.csv", str(tmp_path)) == "/abs/x.csv"
