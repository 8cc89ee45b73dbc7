"""`imbvision demo`: compare, train the winner, say how to do the same on one's own folder."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from typer.testing import CliRunner

from imbvision.cli import app
from imbvision.data.synthetic import DemoSpec
from imbvision.workflows.demo import DEMO_DATA, DEMO_PRIMARY, DEMO_SEEDS, DEMO_STRATEGIES, own_data_command, run_demo
from imbvision.workflows.promote import pick_strategy


def _options_of(command: str) -> list[str]:
    return [w for w in shlex.split(command) if w.startswith("--")]


def test_demo_compares_trains_the_winner_and_names_the_next_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    res = run_demo(tmp_path / "demo", spec=DemoSpec(n=60, positive_rate=0.25, seed=3, size=64), seeds=2,
                   progress=False, backbone="test_efficientnet", weights="none", image_size=64, n_boot=50)
    board = json.loads((tmp_path / "demo" / "leaderboard.json").read_text())
    assert {r["strategy"] for r in board["leaderboard"]} == set(DEMO_STRATEGIES.split(","))
    assert board["config"]["data"] == "demo:60:0.25:3:64" and board["config"]["seeds"] == 2
    # the winner is the one the comparison's rule picks, trained with the comparison's settings
    winner, why = pick_strategy(board["leaderboard"])
    assert res.best.recipe == winner and res.chosen_because == why
    cfg = json.loads((res.best.out / "config.json").read_text())
    assert cfg["backbone"] == "test_efficientnet" and cfg["image_size"] == 64 and cfg["data"] == "demo:60:0.25:3:64"
    assert res.best.report.exists() and res.compare.report.exists()
    assert res.heatmaps == (winner in ("patch", "normality", "fusion"))
    assert res.own_data == own_data_command(DEMO_STRATEGIES, 2, DEMO_PRIMARY) and "--primary patch" in res.own_data
    # the demo's question is declared before it runs: patch vs ce at the full level, the rest after it
    assert board["config"]["primary"] == DEMO_PRIMARY
    gates = {r["strategy"]: r.get("gate") for r in board["leaderboard"]}
    assert gates["patch"] == "primary" and gates["weighted-ce"] in ("after primary", "not tested")


def test_the_own_folder_line_is_a_compare_command_with_real_options() -> None:
    line = own_data_command(DEMO_STRATEGIES, DEMO_SEEDS, DEMO_PRIMARY)
    words = shlex.split(line)
    assert words[:2] == ["imbvision", "compare"] and "folder:PATH" in line and f"--seeds {DEMO_SEEDS}" in line
    help_text = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"}).output
    for opt in _options_of(line):
        assert opt in help_text, opt


def test_demo_cli_defaults_are_the_declared_demo_data() -> None:
    import typer.main

    params = {p.name: p for p in typer.main.get_command(app).commands["demo"].params}
    for opt, key in (("n", "n"), ("rate", "positive_rate"), ("size", "size"), ("seed", "seed")):
        assert params[opt].default == DEMO_DATA[key], opt
    assert params["seeds"].default == DEMO_SEEDS and "full" in params
    # the declared demo data is a valid demo set with enough positives for every split
    spec = DemoSpec(**DEMO_DATA)
    assert spec.n_positive >= 5 * DEMO_SEEDS // 2


def test_demo_refuses_bad_demo_data_in_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--size", "8"])
    assert res.exit_code == 2 and "size=8" in res.output and "Traceback" not in res.output
