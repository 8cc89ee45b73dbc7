"""Every code block of the README and of docs/*.md is tested, so the documentation cannot drift from the code.

(``docs/_drafts/`` holds engineers' drafts that are folded into the pages; they are not tested here.)

Each fenced block is preceded by a marker comment that says how it is checked:

- ``<!-- readme-test: run -->``: bash lines are run as ``imbvision`` commands, python
  blocks are executed as written (in a temporary folder);
- ``<!-- readme-test: help (why) -->``: needs real data, GPUs or a cluster: each
  ``imbvision SUB ...`` line's ``SUB --help`` must work and list every ``--option`` used;
- ``<!-- readme-test: parse (why) -->``: python that needs real data is compiled;
- ``<!-- readme-test: make -->``: each ``make TARGET`` names a Makefile target;
- ``<!-- readme-test: skip (why) -->``: not code (a diagram).

A block without a marker fails the test.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imbvision.cli import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200  # a landing page; the reference lives in docs/
_BLOCK = re.compile(r"(?:<!--\s*readme-test:\s*(?P<mode>\w+)[^>]*-->\s*\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def _blocks() -> list[tuple[str, str | None, str, str]]:
    """``(where, mode, lang, code)`` of every fenced block; ``where`` is ``FILE:LINE``."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in _BLOCK.finditer(text):
            line = text[: m.start("code")].count("\n") + 1
            out.append((f"{page.relative_to(REPO)}:{line}", m.group("mode"), m.group("lang"), m.group("code")))
    return out


BLOCKS = _blocks()


def _commands(code: str) -> list[list[str]]:
    """``imbvision ...`` command lines of a bash block (comments dropped, ``\\`` continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    cmds = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#") or not line:
            continue
        words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))
        if "imbvision.cli" in words:  # torchrun ... -m imbvision.cli SUB ...
            words = ["imbvision", *words[words.index("imbvision.cli") + 1:]]
        if words and words[0] == "imbvision":
            cmds.append(words[1:])
    return cmds


def test_every_block_has_a_marker():
    assert len(BLOCKS) >= 6
    assert {w.split(":")[0] for w, *_ in BLOCKS} > {"README.md"}, "docs/ pages hold code blocks too"
    unmarked = [where for where, mode, _, _ in BLOCKS if mode is None]
    assert unmarked == [], f"code blocks without a readme-test marker at {unmarked}"
    assert {mode for _, mode, _, _ in BLOCKS} <= {"run", "help", "parse", "make", "skip"}


def test_readme_is_a_landing_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"
    text = "\n".join(lines)
    assert text.index("make demo") < text.index("## "), "the two commands come first"
    for step in ("imbvision audit", "imbvision compare", "imbvision train --from", "--heatmaps"):
        assert step in text, f"the recipe for one's own images lacks {step!r}"


def _anchors(page: Path) -> set[str]:
    """GitHub-style heading anchors and explicit ``<a id>`` anchors of a Markdown page."""
    text = page.read_text(encoding="utf-8")
    heads = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
             for h in re.findall(r"^#+\s+(.*)$", text, re.M)}
    return heads | set(re.findall(r'<a id="([^"]+)"', text))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_point_to_files_and_anchors_that_exist(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for m in _LINK.finditer(text):
        target = m.group("target")
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.relative_to(REPO)}: link to {target} — no such file"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.relative_to(REPO)}: link to {target} — no such anchor"


@pytest.mark.parametrize("line, code", [(ln, c) for ln, mode, lang, c in BLOCKS if mode == "help"])
def test_help_blocks_name_real_commands_and_options(line: str, code: str):
    cmds = _commands(code)
    assert cmds, f"{line}: a help block without imbvision commands"
    runner = CliRunner()
    for words in cmds:
        sub = words[0]
        res = runner.invoke(app, [sub, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, f"{line}: `imbvision {sub} --help` failed: {res.output}"
        for opt in (w.split("=")[0] for w in words[1:] if w.startswith("--")):
            assert opt in res.output, f"{line}: `imbvision {sub}` has no option {opt}"


@pytest.mark.parametrize("line, code", [(ln, c) for ln, mode, lang, c in BLOCKS if mode == "parse"])
def test_parse_blocks_compile(line: str, code: str):
    compile(code, line, "exec")


@pytest.mark.parametrize("line, code", [(ln, c) for ln, mode, lang, c in BLOCKS if mode == "make"])
def test_make_blocks_name_makefile_targets(line: str, code: str):
    makefile = (REPO / "Makefile").read_text()
    targets = re.findall(r"^make\s+(\S+)", code, re.M)
    assert targets
    for t in targets:
        assert re.search(rf"^{re.escape(t)}:", makefile, re.M), f"{line}: no Makefile target {t!r}"


@pytest.mark.parametrize("line, code", [(ln, c) for ln, mode, lang, c in BLOCKS if mode == "run" and lang == "bash"])
def test_run_bash_blocks(line: str, code: str):
    runner = CliRunner()
    cmds = _commands(code)
    assert cmds
    for words in cmds:
        res = runner.invoke(app, words, env={"COLUMNS": "200"})
        assert res.exit_code == 0, f"{line}: `imbvision {' '.join(words)}` failed:\n{res.output}"
        assert res.output.strip(), f"{line}: `imbvision {' '.join(words)}` printed nothing"


@pytest.mark.slow
@pytest.mark.parametrize("line, code", [(ln, c) for ln, mode, lang, c in BLOCKS if mode == "run" and lang == "python"])
def test_run_python_blocks(line: str, code: str, tmp_path: Path):
    script = tmp_path / "snippet.py"
    script.write_text(code + "\nprint('README-SNIPPET-OK')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, f"{line} fails as written:\n{res.stderr[-3000:]}"
    assert "README-SNIPPET-OK" in res.stdout
