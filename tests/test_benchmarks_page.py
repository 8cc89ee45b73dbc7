"""docs/benchmarks.md is generated from benchmarks/results/*.json: the committed page must be what they give."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make_tables():
    spec = importlib.util.spec_from_file_location("make_tables", REPO / "benchmarks" / "make_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_benchmarks_page_equals_the_generated_one():
    mt = _make_tables()
    page = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert page == mt.build(), "docs/benchmarks.md is stale: run `python benchmarks/make_tables.py`"


def test_every_results_file_is_on_the_page_and_numbers_come_from_the_json(tmp_path: Path):
    mt = _make_tables()
    for p in (REPO / "benchmarks" / "results").glob("*.json"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    page = mt.build(tmp_path)
    for p in tmp_path.glob("*.json"):
        assert f"`{p.stem}.json`" in page or f"results/{p.stem}.json" in page, p.name
    # change one figure in a results file: the page changes with it
    d = json.loads((tmp_path / "bench_check_cache.json").read_text())
    d["cold_s"] = 123.45
    (tmp_path / "bench_check_cache.json").write_text(json.dumps(d))
    assert "**123.5 s** cold" in mt.build(tmp_path) and "**123.5 s** cold" not in page
    # a results file without a section of its own still appears, with its values
    (tmp_path / "bench_new_thing.json").write_text(json.dumps({"speed_img_per_s": 41.5, "machine": {"cpus": 2}}))
    new = mt.build(tmp_path)
    assert "`bench_new_thing.json`" in new and "| speed_img_per_s | 41.500 |" in new


def test_no_table_is_keyed_by_an_issue_number():
    page = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    headings = [line for line in page.splitlines() if line.startswith("#")]
    assert not [h for h in headings if "issue" in h.lower()], headings
