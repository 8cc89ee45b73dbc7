"""Security: no unsafe deserialisation in src/, tampered bundles refused, no file content leaked, no stray writes."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imbvision.cli import app
from imbvision.data.checks import check_dataset
from imbvision.data.decode import load_image
from imbvision.data.sources import read_csv
from imbvision.errors import BadFileError, BundleError
from imbvision.bundle_schema import meta_digest
from imbvision.model import Model, save_bundle

SRC = Path(__file__).resolve().parents[2] / "src"

# -- static scan ---------------------------------------------------------------------------------------


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """Calls that can unpickle attacker-controlled data, found on the syntax tree (multi-line calls included)."""
    found = []
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # from pickle import load as x -> x: pickle.load
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "cPickle", "dill", "joblib", "torch", "numpy"):
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        name = aliases.get(name, (aliases.get(head, head) + ("." + rest if rest else "")) if head else name)
        where = f"{filename}:{node.lineno}: {name}("
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "dill.load", "dill.loads",
                    "joblib.load", "pandas.read_pickle", "shelve.open"):
            found.append(where + ")")
        elif name == "torch.load":
            w = _kw(node, "weights_only")
            if not (isinstance(w, ast.Constant) and w.value is True):
                found.append(where + "without weights_only=True)")
        elif name in ("np.load", "numpy.load"):
            a = _kw(node, "allow_pickle")
            if a is not None and not (isinstance(a, ast.Constant) and a.value is False):
                found.append(where + "allow_pickle)")
    return found


def test_scanner_catches_what_it_should() -> None:
    bad = """
import pickle, torch
import numpy as np
from pickle import loads as ld
pickle.load(open("f", "rb"))
ld(b"")
torch.load("w.pt")
torch.load(
    "w.pt",
    map_location="cpu",
)
torch.load("w.pt", weights_only=False)
np.load("x.npy", allow_pickle=True)
"""
    good = """
import torch, numpy as np
torch.load("w.pt", map_location="cpu",
           weights_only=True)
np.load("x.npy")
np.load("x.npy", allow_pickle=False)
"""
    assert len(unsafe_calls(bad)) == 6
    assert unsafe_calls(good) == []


def test_no_unsafe_deserialisation_in_src() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems = [p for f in files for p in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(SRC)))]
    assert problems == [], "unsafe deserialisation:\n" + "\n".join(problems)
    # The plain-text rule too: nothing in src/ even mentions pickle.load or allow_pickle=True.
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    assert "pickle.load" not in text and "allow_pickle=True" not in text


# -- tampered model bundle ----------------------------------------------------------------------------------

@pytest.fixture
def bundle(tmp_path: Path, bundle_parts) -> Path:
    run = tmp_path / "run"
    arrays, meta = bundle_parts
    save_bundle(run, arrays, meta)
    m = Model.load(run)
    for k, v in arrays.items():
        np.testing.assert_array_equal(m.arrays[k], v)
    return run


def test_flipped_byte_in_weights_is_refused(bundle: Path) -> None:
    w = bundle / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01  # inside the tensor data: the file still parses as safetensors
    w.write_bytes(bytes(data))
    with pytest.raises(BundleError) as e:
        Model.load(bundle)
    assert "does not match the hash" in str(e.value) and str(w) in str(e.value)


def test_truncated_weights_are_refused(bundle: Path) -> None:
    w = bundle / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-5])
    with pytest.raises(BundleError, match="changed or truncated"):
        Model.load(bundle)


def test_weights_replaced_and_hash_updated_still_must_parse(bundle: Path) -> None:
    w = bundle / "model.safetensors"
    w.write_bytes(b"\x80\x04garbage-not-safetensors")
    meta = json.loads((bundle / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
    meta["meta_sha256"] = meta_digest(meta)  # a careful attacker updates both checksums
    (bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="cannot be read as safetensors"):
        Model.load(bundle)


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "model.json").unlink(), "is not a model folder"),
    (lambda d: (d / "model.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "model.json").write_text('["a list"]'), "not an imbvision model description"),
    (lambda d: (d / "model.json").write_text(json.dumps({**json.loads((d / "model.json").read_text()),
                                                          "format_version": 99})), "format_version 99"),
    (lambda d: (d / "model.json").write_bytes(b"\xff\xfe\x00bad"), "not valid JSON"),
])
def test_damaged_description_is_refused(bundle: Path, damage, needle: str) -> None:
    damage(bundle)
    with pytest.raises(BundleError, match=needle):
        Model.load(bundle)


# -- no file content in messages ------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="needs /etc/passwd")
def test_passwd_as_an_image_is_a_decode_error_without_its_content(tmp_path: Path, monkeypatch) -> None:
    secret = Path("/etc/passwd").read_text(errors="replace")
    assert "root:" in secret
    with pytest.raises(BadFileError) as e:
        load_image("/etc/passwd")
    assert "/etc/passwd" in str(e.value) and "not a readable image" in str(e.value)
    assert "root:" not in str(e.value)

    for i in range(4):
        Image.fromarray(np.full((5, 5), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    m = tmp_path / "m.csv"
    m.write_text("path,label\n/etc/passwd,1\n0.png,1\n1.png,0\n2.png,1\n3.png,0\n", encoding="utf-8")
    with pytest.raises(BadFileError) as e:
        check_dataset(read_csv(m))
    assert "root:" not in str(e.value) and e.value.path == "/etc/passwd"
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(app, ["embed", "--data", str(m), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "/etc/passwd" in r.output and "root:" not in r.output
    rep = check_dataset(read_csv(m), skip_bad=True)
    rep.write_bad_files(tmp_path / "out" / "bad_files.csv")
    text = (tmp_path / "out" / "bad_files.csv").read_text()
    assert "/etc/passwd" in text and "root:" not in text


# -- writes stay in the output folder ---------------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_traversal_and_absolute_paths_never_make_it_write_elsewhere(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "world"
    data = root / "a" / "b" / "dataset"
    data.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((6, 6, 3), 30 * i + 5, np.uint8)).save(data / f"{i}.png")
    (root / "x.png").write_text("a text file two levels up")  # ../../../x.png from the manifest
    outside = root / "elsewhere"
    outside.mkdir()
    Image.fromarray(np.full((6, 6, 3), 200, np.uint8)).save(outside / "abs.png")
    manifest = data / "m.csv"
    manifest.write_text(
        "path,label,mask\n"
        "0.png,1,\n1.png,0,\n2.png,1,\n3.png,0,\n"
        "../../../x.png,1,\n"
        f"{outside / 'abs.png'},0,../../../../mask_target.png\n"
        "../../../nothing/../../escape.png,1,\n",
        encoding="utf-8",
    )
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    rep = check_dataset(read_csv(manifest), skip_bad=True)
    assert {Path(p).name for p, _ in rep.bad} == {"x.png", "mask_target.png", "escape.png"}
    written = rep.write_bad_files(out / "bad_files.csv")
    assert written == out / "bad_files.csv"
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "an existing file changed"
    assert sorted(set(after) - set(before)) == ["out/bad_files.csv"]
    rows = list(csv.DictReader(open(written, encoding="utf-8")))
    assert len(rows) == 3

    # The same through the CLI: new files only under --out and the cache folder.
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(app, ["embed", "--data", str(manifest), "--out", str(tmp_path / "out2"), "--skip-bad",
                                 "--backbone", "test_efficientnet", "--weights", "none", "--image-size", "32",
                                 "--engine", "torch", "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    final = _snapshot(tmp_path)
    new = sorted(set(final) - set(after))
    assert new and all(k.startswith(("out2/", "cache/")) for k in new), new
    assert {k: v for k, v in final.items() if k in after} == after
    assert {"out2/bad_files.csv", "out2/features.safetensors", "out2/paths.csv", "out2/embed.json"} <= set(new)
