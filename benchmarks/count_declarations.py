"""How many places write each pipeline setting: before and after the run specification (issue 20 §1).

Two counts per setting, read from the git tree of each revision (``git grep``, ``ast``):

* **option definitions**: ``typer.Option`` parameters of that name in ``imbvision train`` and
  ``imbvision compare`` (before: written out in each command; after: generated from the field);
* **literal values**: source lines under ``src/`` holding the setting's literal values (its choices or
  bounds, e.g. ``"s16+s32"``, ``"keep-aspect"``, ``2..6``), comments and messages included, and the
  files they are in. The owner (where the value is declared) counts too: one line is the floor.

Writes ``benchmarks/results/count_declarations.json``. Takes a second; needs the git history.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, save  # noqa: E402

BEFORE = "3432590"  # main before the run specification
AFTER = "HEAD"

#: setting → fixed strings whose lines are counted.
LITERALS = {
    "patch_layers": ['"s16+s32"', '"s8+s16"'],
    "resize": ['"keep-aspect"'],
    "tiles": ["2..6", "(0, 2, 3, 4, 5, 6)", "MAX_TILES"],
    "image_size": ["(32, 1024)", "MAX_IMAGE_SIZE", "MIN_IMAGE_SIZE", "32..1024", "64..1024"],
    "calibration": ['"isotonic"'],
    "split": ['"official"'],
    "features": ['("auto", "global", "tiles", "both")', '"global", "tiles", "both"'],
}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def _literal_lines(rev: str, needles: list[str]) -> tuple[int, list[str]]:
    cmd = ["grep", "-n", "-F"]
    for n in needles:
        cmd += ["-e", n]
    try:
        out = _git(*cmd, rev, "--", "src")
    except subprocess.CalledProcessError:  # no match
        return 0, []
    lines = [ln for ln in out.splitlines() if ln.strip()]
    files = sorted({ln.split(":")[1] for ln in lines})
    return len(lines), files


def _option_definitions(rev: str) -> dict[str, int]:
    """``{parameter name: number of typer.Option definitions}`` over the train and compare commands."""
    tree = ast.parse(_git("show", f"{rev}:src/imbvision/cli.py"))
    counts: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in ("train", "compare"):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
            defaults += node.args.kw_defaults
            for a, d in zip(args, defaults):
                if isinstance(d, ast.Call) and ast.unparse(d.func).endswith("Option"):
                    counts[a.arg] = counts.get(a.arg, 0) + 1
    return counts


def _spec_fields(rev: str) -> set[str]:
    try:
        files = [f for f in _git("ls-tree", "-r", "--name-only", rev, "src/imbvision/spec").split() if f.endswith(".py")]
    except subprocess.CalledProcessError:
        return set()
    names: set[str] = set()
    for f in files:
        for node in ast.walk(ast.parse(_git("show", f"{rev}:{f}"))):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(node.value, ast.Call) \
                    and ast.unparse(node.value.func) == "_field":
                names.add(node.target.id)
    return names


def main() -> int:
    t0, c0 = time.perf_counter(), time.process_time()
    rows = {}
    opts = {rev: _option_definitions(rev) for rev in (BEFORE, AFTER)}
    fields = _spec_fields(AFTER)
    for setting, needles in LITERALS.items():
        row = {"literals": needles}
        for label, rev in (("before", BEFORE), ("after", AFTER)):
            n, files = _literal_lines(rev, needles)
            row[label] = {"literal_lines": n, "files": files, "option_definitions": opts[rev].get(setting, 0)}
        row["declared_in_spec"] = setting in fields
        rows[setting] = row
    shared = sorted(f for f in fields if opts[BEFORE].get(f))
    payload = {
        "before": BEFORE, "after": _git("rev-parse", "--short", AFTER).strip(), "settings": rows,
        "cli_option_definitions": {"before": sum(opts[BEFORE].values()), "after": sum(opts[AFTER].values())},
        "spec_fields": len(fields), "fields_that_were_cli_options": shared,
        "note": "Literal lines include comments, help texts and messages; the owner's own line counts. Option "
                "definitions: typer.Option parameters written in the train and compare functions (after: only "
                "the commands' own arguments, the rest generated from the spec's fields).",
        "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
    }
    save("count_declarations", payload)
    for s, r in rows.items():
        print(f"{s:14s} literal lines {r['before']['literal_lines']:3d} → {r['after']['literal_lines']:3d}   files "
              f"{len(r['before']['files']):2d} → {len(r['after']['files']):2d}   options "
              f"{r['before']['option_definitions']} → {r['after']['option_definitions']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
