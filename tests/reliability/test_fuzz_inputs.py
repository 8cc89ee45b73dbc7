"""Fuzzed and hostile inputs: every case ends in an imbvision error (or a bad_files.csv row), never another exception.

Cases: random bytes (with and without real magic numbers), PNG/JPEG/TIFF/WebP
cut at random points, random byte flips, zero-byte files, decompression-bomb
headers, 1x1 images, masks of the wrong size or type, CSV manifests with
missing columns or bad encodings, missing files, labels outside the set.
"""

from __future__ import annotations

import csv
import io
import struct
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imbvision.backbones import create_backbone, embed_dataset
from imbvision.data.checks import check_dataset
from imbvision.data.decode import MAX_PIXELS, load_image, load_mask
from imbvision.data.records import Dataset, ImageRecord
from imbvision.data.sources import load_source, read_csv
from imbvision.errors import BadFileError, ConfigError, DataError, ImbvisionError

FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ALLOWED = (BadFileError, DataError, ConfigError)


def _encoded(fmt: str, **kw) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


VALID = {
    "png": _encoded("PNG"),
    "jpg": _encoded("JPEG", quality=90),
    "tif": _encoded("TIFF"),
    "tif-lzw": _encoded("TIFF", compression="tiff_lzw"),
    "tif-deflate": _encoded("TIFF", compression="tiff_adobe_deflate"),
    "webp": _encoded("WEBP"),
    "bmp": _encoded("BMP"),
}
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP"]


def _decode_outcome(path: Path) -> str:
    """'ok' for a valid (3, H, W) tensor in [0, 1]; 'bad' for a BadFileError naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's "Truncated File Read" and similar notes
        try:
            t = load_image(path)
        except BadFileError as exc:
            assert exc.path == str(path) and str(exc).startswith(str(path)) and exc.reason
            return "bad"
    assert t.ndim == 3 and t.shape[0] == 3 and t.dtype == torch.float32
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    return "ok"


@FUZZ
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=1500), suffix=st.sampled_from([".png", ".jpg", ".tif"]))
def test_random_bytes_are_bad_files(tmp_path: Path, magic: bytes, body: bytes, suffix: str) -> None:
    p = tmp_path / f"rand{suffix}"
    p.write_bytes(magic + body)
    _decode_outcome(p)  # any other exception type fails the test


@FUZZ
@given(kind=st.sampled_from(sorted(VALID)), frac=st.floats(0.0, 0.98))
def test_truncated_files_at_random_points(tmp_path: Path, kind: str, frac: float) -> None:
    data = VALID[kind]
    p = tmp_path / f"cut.{kind.split('-')[0]}"
    p.write_bytes(data[: int(len(data) * frac)])
    outcome = _decode_outcome(p)
    if kind in ("png", "jpg", "webp") or frac < 0.05:
        assert outcome == "bad", f"{kind} cut at {frac:.2f} decoded"


@FUZZ
@given(kind=st.sampled_from(sorted(VALID)), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                           min_size=1, max_size=8))
def test_byte_flips(tmp_path: Path, kind: str, flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID[kind])
    for pos, val in flips:
        data[pos % len(data)] = val
    p = tmp_path / f"flip.{kind.split('-')[0]}"
    p.write_bytes(bytes(data))
    _decode_outcome(p)


def test_zero_byte_image_and_mask(tmp_path: Path) -> None:
    z = tmp_path / "zero.png"
    z.write_bytes(b"")
    for fn in (load_image, load_mask):
        with pytest.raises(BadFileError) as e:
            fn(z)
        assert str(e.value) == f"{z}: empty file (0 bytes)"


def _png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR is patched to claim width x height (CRC recomputed)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _bmp_claiming(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "BMP")
    data = bytearray(buf.getvalue())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


@pytest.mark.parametrize("make, w, h", [(_png_claiming, 100_000, 100_000), (_png_claiming, 20_000, 20_000),
                                        (_bmp_claiming, 60_000, 60_000)])
def test_decompression_bomb_header_refused_fast_without_allocating(tmp_path: Path, make, w: int, h: int) -> None:
    assert w * h > MAX_PIXELS
    p = tmp_path / "bomb.png"
    p.write_bytes(make(w, h))
    assert p.stat().st_size < 200
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(BadFileError) as e:
            load_image(p)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "image too large" in str(e.value) and str(p) in str(e.value) and str(MAX_PIXELS) in str(e.value)
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert peak < 20 * 2**20, f"allocated {peak / 2**20:.1f} MiB"
    # Under --skip-bad it is one bad_files.csv row.
    good = [ImageRecord(_save(tmp_path / f"g{i}.png", _rand(i, 6, 6)), i % 2) for i in range(4)]
    rep = check_dataset(Dataset(good + [ImageRecord(p, 1)]), skip_bad=True)
    assert [b[0] for b in rep.bad] == [str(p)] and "too large" in rep.bad[0][1]


def _rand(seed: int, h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w, c) if c > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_one_pixel_images_decode_check_and_embed(tmp_path: Path, mode: str) -> None:
    recs = []
    for i in range(4):
        val = 40 + 50 * i
        im = Image.new(mode, (1, 1), val if mode in ("L", "I;16") else (val,) * len(mode))
        im.save(tmp_path / f"{i}.png")
        recs.append(ImageRecord(tmp_path / f"{i}.png", i % 2, mask=None))
    t = load_image(recs[1].path)
    assert t.shape == (3, 1, 1)
    rep = check_dataset(Dataset(recs))
    assert rep.bad == [] and len(rep.dataset) == 4
    bb = create_backbone("test_efficientnet", weights="none")
    for tiles in (0, 2):
        e = embed_dataset(recs, backbone=bb, image_size=32, tiles=tiles, cache_dir=None, engine="torch",
                          progress=False)
        assert e.global_.shape == (4, bb.num_features) and np.isfinite(e.global_).all()
        if tiles:
            assert e.tiles.shape == (4, bb.num_features) and np.isfinite(e.tiles).all()


MASK_KINDS = ["text", "zero", "folder", "smaller", "transposed", "truncated", "one_pixel", "rgba_other_size"]


def _make_bad_mask(tmp: Path, kind: str) -> Path:
    p = tmp / f"mask_{kind}.png"
    if kind == "text":
        p.write_text("0 0 1 1\n")
    elif kind == "zero":
        p.write_bytes(b"")
    elif kind == "folder":
        p.mkdir()
    elif kind == "smaller":
        _save(p, np.zeros((8, 10), np.uint8))
    elif kind == "transposed":
        _save(p, np.zeros((12, 10), np.uint8))  # image is 10 high, 12 wide
    elif kind == "truncated":
        _save(p, _rand(3, 10, 12, 1))
        p.write_bytes(p.read_bytes()[:40])
    elif kind == "one_pixel":
        _save(p, np.ones((1, 1), np.uint8))
    elif kind == "rgba_other_size":
        _save(p, np.zeros((11, 12, 4), np.uint8))
    return p


@FUZZ
@given(kinds=st.lists(st.sampled_from(MASK_KINDS), min_size=1, max_size=4, unique=True))
def test_masks_of_wrong_size_or_type(tmp_path: Path, kinds: list[str]) -> None:
    folder = tmp_path / "-".join(kinds)
    folder.mkdir()
    good = [ImageRecord(_save(folder / f"g{i}.png", _rand(i, 10, 12)), i % 2) for i in range(4)]
    bad = []
    for j, kind in enumerate(kinds):
        img = _save(folder / f"b{j}.png", _rand(100 + j, 10, 12))
        bad.append(ImageRecord(img, 1, mask=_make_bad_mask(folder, kind)))
    ds = Dataset(good + bad, source="fuzz")
    with pytest.raises(BadFileError) as e:
        check_dataset(ds)
    assert e.value.path == str(bad[0].mask) and f"mask of {bad[0].path}" in str(e.value)
    rep = check_dataset(ds, skip_bad=True)
    assert [b[0] for b in rep.bad] == [str(r.mask) for r in bad]
    assert all(f"(mask of {r.path})" in reason for r, (_, reason) in zip(bad, rep.bad))
    assert len(rep.dataset) == 4


# -- manifests ------------------------------------------------------------------------------------

def _manifest(tmp: Path, text: bytes, name: str = "m.csv") -> Path:
    p = tmp / name
    p.write_bytes(text)
    return p


@pytest.mark.parametrize("header, missing", [("file,label", "path"), ("path,class", "label"), ("image,y", "path, label"),
                                             ("", "path, label"), ("path", "label")])
def test_manifest_missing_columns(tmp_path: Path, header: str, missing: str) -> None:
    p = _manifest(tmp_path, f"{header}\na.png,1\n".encode() if header else b"")
    with pytest.raises(DataError) as e:
        load_source(str(p))
    msg = str(e.value)
    assert str(p) in msg and f"lacks column(s) {missing}" in msg and "required: path,label" in msg


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "utf-16-le", "cp1252"])
def test_manifest_bad_encodings(tmp_path: Path, encoding: str) -> None:
    text = "path,label\nimages/caf\u00e9_\u00e0.png,1\nimages/b.png,0\n"
    p = _manifest(tmp_path, text.encode(encoding))
    with pytest.raises(DataError) as e:
        read_csv(p)
    assert str(p) in str(e.value) and "not UTF-8" in str(e.value) and "save it as UTF-8" in str(e.value)


def test_manifest_header_only_and_nul_bytes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has a header but no rows"):
        read_csv(_manifest(tmp_path, b"path,label\n", "h.csv"))
    with pytest.raises(DataError):
        d = read_csv(_manifest(tmp_path, b"path,label\na\x00.png,1\nb.png,0\n", "n.csv"))
        check_dataset(d)


def test_manifest_paths_to_missing_files(tmp_path: Path) -> None:
    for i in range(4):
        _save(tmp_path / f"{i}.png", _rand(i, 5, 5))
    p = _manifest(tmp_path, b"path,label\n0.png,1\n1.png,0\n2.png,1\n3.png,0\ngone.png,1\nsub/gone2.png,0\n")
    ds = read_csv(p)
    with pytest.raises(BadFileError) as e:
        check_dataset(ds)
    assert str(e.value).startswith(str(tmp_path / "gone.png")) and "file not found" in str(e.value)
    rep = check_dataset(ds, skip_bad=True)
    assert rep.bad == [(str(tmp_path / "gone.png"), "file not found"), (str(tmp_path / "sub" / "gone2.png"), "file not found")]
    out = rep.write_bad_files(tmp_path / "out" / "bad_files.csv")
    rows = list(csv.reader(open(out, encoding="utf-8")))
    assert rows[0] == ["path", "reason"] and len(rows) == 3


@pytest.mark.parametrize("label", ["2", "-1", "yes please", "", "0.5", "NaN", "positive "])
def test_labels_outside_the_known_set(tmp_path: Path, label: str) -> None:
    p = _manifest(tmp_path, f"path,label\na.png,1\nb.png,{label}\n".encode())
    if label.strip().lower() in ("positive",):
        assert list(read_csv(p).labels) == [1, 1]  # surrounding spaces are forgiven
        return
    with pytest.raises(DataError) as e:
        read_csv(p)
    assert f"{p} line 3: unknown label {label!r}" in str(e.value) and "valid: 0/1" in str(e.value)


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=300),
    st.lists(st.lists(st.sampled_from(["path", "label", "mask", "group", "a.png", "1", "0", "x", "", '"', "\n",
                                       "missing.png", "../a.png", "/etc/hostname"]), max_size=5), max_size=6)
    .map(lambda rows: "\n".join(",".join(r) for r in rows).encode()),
), skip=st.booleans())
def test_any_manifest_ends_in_an_imbvision_error_or_a_dataset(tmp_path: Path, data: bytes, skip: bool) -> None:
    _save(tmp_path / "a.png", _rand(0, 6, 6))
    p = _manifest(tmp_path, data)
    try:
        ds = load_source(str(p))
        rep = check_dataset(ds, skip_bad=skip)
    except ALLOWED as exc:
        assert isinstance(exc, ImbvisionError) and str(exc)
        return
    assert len(rep.dataset) >= 2 and set(rep.dataset.labels.tolist()) == {0, 1}


@FUZZ
@given(kinds=st.lists(st.sampled_from(["good", "text", "zero", "truncated", "missing", "folder", "bomb"]),
                      min_size=2, max_size=10))
def test_skip_bad_lists_exactly_the_bad_files(tmp_path: Path, kinds: list[str]) -> None:
    folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    recs, bad_paths = [], []
    for i, kind in enumerate(kinds):
        p = folder / f"{i}_{kind}.png"
        if kind == "good":
            _save(p, _rand(i, 7, 9))
        elif kind == "text":
            p.write_text("text")
        elif kind == "zero":
            p.write_bytes(b"")
        elif kind == "truncated":
            _save(p, _rand(i, 40, 40))
            p.write_bytes(p.read_bytes()[:100])
        elif kind == "folder":
            p.mkdir()
        elif kind == "bomb":
            p.write_bytes(_png_claiming(50_000, 50_000))
        if kind != "good":
            bad_paths.append(str(p))
        recs.append(ImageRecord(p, i % 2))
    try:
        rep = check_dataset(Dataset(recs, source="fuzz"), skip_bad=True)
    except DataError as exc:
        assert type(exc) is DataError
        assert "one class" in str(exc) or "no usable images" in str(exc)
        return
    assert [b[0] for b in rep.bad] == bad_paths
    assert len(rep.dataset) == kinds.count("good")
