"""Data layer: readers, decoding, masks, and one clear error for each kind of bad input.

Every bad-input test asserts the error type, that the message names the file,
and that it says what would be valid; a few go through the CLI
(``imbvision embed``) and check exit status 2, the one-line message and the
absence of a traceback.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imbvision.cli import app
from imbvision.data.checks import check_dataset
from imbvision.data.decode import IMAGE_SUFFIXES, load_image, load_image_array, load_mask
from imbvision.data.records import Dataset, ImageRecord
from imbvision.data.sources import SOURCE_HELP, load_source, read_csv, read_folder, read_magnetic_tile
from imbvision.errors import BadFileError, ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
MAGNETIC_TILE = REPO.parent / "shared" / "data" / "magnetic-tile"


# -- helpers -----------------------------------------------------------------------------

def img(seed: int, h: int = 16, w: int = 20, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def write_csv(path: Path, rows: list[list[object]], header: tuple[str, ...] = ("path", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def good_csv_dataset(tmp: Path, n_pos: int = 3, n_neg: int = 5) -> Path:
    """A valid manifest with distinct images; returns the manifest path."""
    rows = []
    for i in range(n_pos + n_neg):
        save(tmp / "img" / f"{i}.png", img(i))
        rows.append([f"img/{i}.png", int(i < n_pos)])
    return write_csv(tmp / "manifest.csv", rows)


def run_cli(args: list[str]):
    return CliRunner().invoke(app, args)


def assert_one_clear_line(result, *needles: str) -> None:
    """CLI contract for bad input: status 2, an ``error:`` line with the needles, no traceback."""
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out
    for n in needles:
        assert n in lines[0], (n, lines[0])


# -- readers --------------------------------------------------------------------------------

def test_class_folder_tree_labels_nested_files_and_ignores_non_images(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save(root / "positive" / "a.png", img(1))
    save(root / "positive" / "deep" / "b.jpg", img(2))
    save(root / "negative" / "c.png", img(3))
    save(root / "scratch_free" / "d.bmp", img(4))
    (root / "negative" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    save(root / ".hidden" / "x.png", img(5))

    for ds in (read_folder(root, positive="positive"), load_source(str(root), positive="positive"),
               load_source(f"folder:{root}", positive="positive")):
        by_name = {Path(r.path).name: r for r in ds.records}
        assert sorted(by_name) == ["a.png", "b.jpg", "c.png", "d.bmp"]
        assert {n: r.label for n, r in by_name.items()} == {"a.png": 1, "b.jpg": 1, "c.png": 0, "d.bmp": 0}
        assert by_name["d.bmp"].class_name == "scratch_free"
        assert all(Path(r.path).is_absolute() for r in ds.records)
        assert ds.summary() == {"images": 4, "positive": 2, "negative": 2, "with_mask": 0}


def test_class_folder_needs_positive_named(tmp_path: Path) -> None:
    save(tmp_path / "cat" / "a.png", img(1))
    save(tmp_path / "dog" / "b.png", img(2))
    with pytest.raises(DataError) as e:
        read_folder(tmp_path, positive=None)
    assert "cat, dog" in str(e.value) and "--positive" in str(e.value)
    with pytest.raises(DataError) as e:
        read_folder(tmp_path, positive="bird")
    assert "'bird'" in str(e.value) and "classes: cat, dog" in str(e.value)


def test_csv_manifest_relative_absolute_mask_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "set"
    save(d / "img" / "a.png", img(1))
    save(d / "img" / "m_a.png", np.zeros((16, 20), np.uint8))
    save(d / "img" / "b.png", img(2))
    save(d / "img" / "d.png", img(4))  # one row per image: a repeated row is an error (issue 14)
    outside = save(tmp_path / "elsewhere" / "c.png", img(3))
    rows = [["img/a.png", "1", "img/m_a.png", "p1"], ["img/b.png", "negative", "", "p2"],
            [str(outside), "true", "", ""], ["img/d.png", "0", "", "p2"]]
    manifest = write_csv(d / "manifest.csv", rows, ("path", "label", "mask", "group"))
    monkeypatch.chdir(tmp_path / "elsewhere")  # paths are relative to the CSV, not the working folder
    for ds in (read_csv(manifest), load_source(str(manifest)), load_source(f"csv:{manifest}")):
        r = ds.records
        assert [x.label for x in r] == [1, 0, 1, 0]
        assert Path(r[0].path) == d / "img" / "a.png" and Path(r[0].path).is_file()
        assert Path(r[0].mask) == d / "img" / "m_a.png"
        assert r[1].mask is None and r[2].mask is None
        assert Path(r[2].path) == outside
        assert [x.group for x in r] == ["p1", "p2", None, "p2"]
        assert list(ds.groups[:2]) == ["p1", "p2"] and ds.groups[2].startswith("__single_")


def test_csv_named_labels_with_positive_and_header_spacing(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"{i}.png", img(i))
    p = tmp_path / "m.csv"
    p.write_text(" path , label \n0.png, crack\n1.png,free\n2.png,crack\n", encoding="utf-8")
    ds = read_csv(p, positive="crack")
    assert list(ds.labels) == [1, 0, 1]
    assert ds.positive_name == "crack"


def test_csv_with_utf8_bom_is_read(tmp_path: Path) -> None:
    save(tmp_path / "a.png", img(1))
    p = tmp_path / "m.csv"
    p.write_bytes("\ufeffpath,label\na.png,1\n".encode("utf-8"))
    assert list(read_csv(p).labels) == [1]


def _mini_magnetic_tile(root: Path) -> None:
    for cls, n in (("MT_Free", 3), ("MT_Crack", 2), ("MT_Blowhole", 1)):
        for i in range(n):
            a = img(zlib.crc32(f"{cls}/{i}".encode()) % 1000, 12, 14, channels=1)  # hash() is salted per run
            save(root / cls / "Imgs" / f"{cls}_{i}.jpg", a)
            m = np.zeros_like(a)
            if cls != "MT_Free":
                m[3:6, 4:8] = 255
            save(root / cls / "Imgs" / f"{cls}_{i}.png", m)


def test_magnetic_tile_layout(tmp_path: Path) -> None:
    _mini_magnetic_tile(tmp_path)
    ds = load_source(f"magnetic-tile:{tmp_path}")
    assert len(ds) == 6 and int(ds.labels.sum()) == 3
    assert all(r.mask is not None and Path(r.mask).suffix == ".png" for r in ds.records)
    assert {r.class_name for r in ds.records if r.label == 0} == {"MT_Free"}
    rep = check_dataset(ds)
    assert len(rep.dataset) == 6 and rep.bad == []
    pos = next(r for r in ds.records if r.label == 1)
    assert int(load_mask(pos.mask).sum()) == 12
    with pytest.raises(DataError, match="no MT_Free folder"):
        read_magnetic_tile(tmp_path / "MT_Crack")


@pytest.mark.realdata
def test_magnetic_tile_real_data() -> None:
    if not MAGNETIC_TILE.is_dir():
        pytest.skip(f"{MAGNETIC_TILE} absent")
    ds = load_source(f"magnetic-tile:{MAGNETIC_TILE}")
    counts = {}
    for r in ds.records:
        counts[r.class_name] = counts.get(r.class_name, 0) + 1
    assert counts == {"MT_Blowhole": 115, "MT_Break": 85, "MT_Crack": 57, "MT_Fray": 32, "MT_Free": 952,
                      "MT_Uneven": 103}
    assert int(ds.labels.sum()) == 392
    assert all(r.mask is not None for r in ds.records)
    # One defect image and its mask decode at the same size; the mask marks a small object.
    rec = next(r for r in ds.records if r.class_name == "MT_Crack")
    x = load_image(rec.path)
    m = load_mask(rec.mask, size=(x.shape[2], x.shape[1]))
    assert x.shape[0] == 3 and m.shape == x.shape[1:]
    assert 0 < m.float().mean() < 0.2
    free = next(r for r in ds.records if r.class_name == "MT_Free")
    assert not load_mask(free.mask).any()


def test_demo_source_generates_once_and_masks_positives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    ds = load_source("demo:40:0.25:3")
    assert len(ds) == 40 and int(ds.labels.sum()) == 10
    assert all((r.mask is not None) == (r.label == 1) for r in ds.records)
    assert str(tmp_path / "cache") in str(ds.records[0].path)
    mtime = os.stat(ds.records[0].path).st_mtime_ns
    again = load_source("demo:40:0.25:3")
    assert [r.path for r in again.records] == [r.path for r in ds.records]
    assert os.stat(ds.records[0].path).st_mtime_ns == mtime  # read, not regenerated


def test_demo_source_size_field_sets_the_image_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from imbvision.data.synthetic import DemoSpec, demo_source

    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    big = load_source("demo:12:0.25:1:96")
    plain = load_source("demo:12:0.25:1")
    assert {Image.open(r.path).size for r in big.records} == {(96, 96)}
    assert {Image.open(r.path).size for r in plain.records} == {(DemoSpec.size, DemoSpec.size)}
    assert big.records[0].path.parent != plain.records[0].path.parent  # two sets, two folders
    # demo_source writes the text the source reads back, naming the size only when it is not the default
    assert demo_source(DemoSpec(n=12, positive_rate=0.25, seed=1, size=96)) == "demo:12:0.25:1:96"
    assert demo_source(DemoSpec(n=12, positive_rate=0.25, seed=1)) == "demo:12:0.25:1"


@pytest.mark.parametrize("text, needle", [
    ("demo:5", "at least 10 images"),
    ("demo:100:1.5", "positive_rate=1.5"),
    ("demo:abc", "demo[:N[:RATE[:SEED[:SIZE]]]]"),
    ("demo:100:0.1:-1", "seed=-1"),
    ("demo:100:0.1:0:16", "size=16"),
    ("demo:100:0.1:0:5000", "size=5000"),
    ("demo:100:0.1:0:64:9", "5 fields"),
])
def test_bad_demo_source(text: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path))
    with pytest.raises(DataError) as e:
        load_source(text)
    assert needle in str(e.value) and text in str(e.value)


def test_unknown_source_lists_forms(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_source(str(tmp_path / "nope"))
    assert "not found" in str(e.value) and SOURCE_HELP in str(e.value)
    f = tmp_path / "x.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="not a .csv manifest"):
        load_source(str(f))


# -- decoding ---------------------------------------------------------------------------------

def _check_tensor(t: torch.Tensor, h: int, w: int) -> None:
    assert t.shape == (3, h, w) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_decode_grayscale_rgb_exact(tmp_path: Path) -> None:
    g = img(1, channels=1)
    t = load_image(save(tmp_path / "g.png", g))
    _check_tensor(t, 16, 20)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    assert torch.allclose(t[0], torch.from_numpy(g).float() / 255)
    c = img(2)
    t = load_image(save(tmp_path / "c.png", c))
    _check_tensor(t, 16, 20)
    assert torch.allclose(t, torch.from_numpy(c).permute(2, 0, 1).float() / 255)


def test_decode_rgba_composited_on_black(tmp_path: Path) -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., :3] = (200, 100, 50)
    a[0, :, 3] = 255
    a[1, :, 3] = 0
    a[2, :, 3] = 128
    t = load_image(save(tmp_path / "a.png", a))
    _check_tensor(t, 4, 4)
    np.testing.assert_allclose(t[:, 0, 0].numpy(), np.array([200, 100, 50]) / 255, atol=1e-6)
    assert float(t[:, 1].abs().max()) == 0.0
    np.testing.assert_allclose(t[:, 2, 0].numpy(), np.array([200, 100, 50]) / 255 * 128 / 255, atol=2 / 255)


def test_decode_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (3, 2))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 9))
    pal.putdata([0, 1, 2, 2, 1, 0])
    pal.save(tmp_path / "p.png")
    t = load_image(tmp_path / "p.png")
    _check_tensor(t, 2, 3)
    assert t[:, 0, 0].tolist() == [1.0, 0.0, 0.0] and t[:, 0, 1].tolist() == [0.0, 1.0, 0.0]
    pal.save(tmp_path / "pt.png", transparency=1)  # index 1 (green) transparent -> black
    t = load_image(tmp_path / "pt.png")
    assert t[:, 0, 1].tolist() == [0.0, 0.0, 0.0] and t[:, 0, 0].tolist() == [1.0, 0.0, 0.0]


def test_decode_16bit_png(tmp_path: Path) -> None:
    a = np.array([[0, 1000, 30000], [40000, 60000, 65535]], dtype=np.uint16)
    im = Image.fromarray(a)
    assert im.mode.startswith("I;16")
    im.save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    t = load_image(tmp_path / "d.png")
    _check_tensor(t, 2, 3)
    np.testing.assert_allclose(t[0].numpy(), a / 65535, atol=1 / 255)
    assert float(t.max()) == 1.0 and float(t.min()) == 0.0


def test_decode_exif_rotated_jpeg(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high
    a[:6, :10] = 255  # bright block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(a).save(tmp_path / "r.jpg", exif=exif, quality=95)
    t = load_image(tmp_path / "r.jpg")
    _check_tensor(t, 40, 20)  # width and height swapped
    expected = np.rot90(a, k=-1)  # clockwise
    assert np.abs(t.permute(1, 2, 0).numpy() * 255 - expected).mean() < 8
    assert float(t[:, :10, -6:].mean()) > 0.9  # block now at the top-right
    arr = load_image_array(tmp_path / "r.jpg")
    assert arr.shape == (40, 20, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize("scale", [1, 255, 100])
def test_masks_binary_any_nonzero_value(tmp_path: Path, scale: int) -> None:
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:7] = 1
    t = load_mask(save(tmp_path / "m.png", m * scale), size=(12, 10))
    assert t.dtype == torch.bool and t.shape == (10, 12)
    assert torch.equal(t, torch.from_numpy(m > 0))


def test_mask_16bit_and_opaque_rgba_and_ringing(tmp_path: Path) -> None:
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:7] = 1
    want = torch.from_numpy(m > 0)
    assert torch.equal(load_mask(save(tmp_path / "a.png", m.astype(np.uint16) * 255)), want)  # 16-bit file, 0/255
    assert torch.equal(load_mask(save(tmp_path / "b.png", m.astype(np.uint16) * 65535)), want)
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[..., :3] = m[..., None] * 255  # opaque black background, white object
    assert torch.equal(load_mask(save(tmp_path / "c.png", rgba)), want)
    alpha = np.zeros((10, 12, 4), np.uint8)
    alpha[..., 3] = m * 255  # transparent background, the alpha is the mask
    assert torch.equal(load_mask(save(tmp_path / "d.png", alpha)), want)
    ring = m * 255
    ring[0, 0], ring[9, 11] = 3, 20  # compression ringing in the background is not object
    assert torch.equal(load_mask(save(tmp_path / "e.png", ring)), want)
    assert not load_mask(save(tmp_path / "z.png", m * 0)).any()


def test_mask_size_must_match(tmp_path: Path) -> None:
    p = save(tmp_path / "m.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(BadFileError) as e:
        load_mask(p, size=(20, 16))
    assert str(p) in str(e.value) and "12x10" in str(e.value) and "20x16" in str(e.value)
    assert "must have the size of its image" in str(e.value)


# -- bad input: one clear error each ------------------------------------------------------------

def _dataset(tmp: Path, extra: list[tuple[Path, int, Path | None]]) -> Dataset:
    recs = [ImageRecord(save(tmp / "ok" / f"{i}.png", img(100 + i)), int(i < 2)) for i in range(5)]
    recs += [ImageRecord(p, lab, mask=m) for p, lab, m in extra]
    return Dataset(recs, source="test")


def test_truncated_png_names_file(tmp_path: Path) -> None:
    p = save(tmp_path / "t.png", img(7, 64, 64))
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(BadFileError) as e:
        check_dataset(_dataset(tmp_path, [(p, 1, None)]))
    msg = str(e.value)
    assert msg.startswith(str(p)) and "truncated" in msg and "--skip-bad" in msg
    assert e.value.path == str(p)


def test_corrupt_jpeg_names_file(tmp_path: Path) -> None:
    p = save(tmp_path / "c.jpg", img(8, 64, 64))
    data = bytearray(p.read_bytes())
    p.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(BadFileError) as e:
        load_image(p)
    assert str(p) in str(e.value) and ("truncated" in str(e.value) or "corrupt" in str(e.value))


def test_text_file_named_png(tmp_path: Path) -> None:
    p = tmp_path / "fake.png"
    p.write_text("this is not an image\n" * 5)
    with pytest.raises(BadFileError) as e:
        check_dataset(_dataset(tmp_path, [(p, 0, None)]))
    assert str(p) in str(e.value) and "not a readable image" in str(e.value)
    assert "valid: PNG, JPEG" in str(e.value)


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(BadFileError, match="empty file"):
        load_image(p)


def test_mask_missing(tmp_path: Path) -> None:
    im = save(tmp_path / "a.png", img(9))
    with pytest.raises(BadFileError) as e:
        check_dataset(_dataset(tmp_path, [(im, 1, tmp_path / "missing_mask.png")]))
    msg = str(e.value)
    assert str(tmp_path / "missing_mask.png") in msg and f"mask of {im} not found" in msg
    assert "leave the mask empty" in msg


def test_mask_of_another_size(tmp_path: Path) -> None:
    im = save(tmp_path / "a.png", img(9))  # 20x16
    m = save(tmp_path / "a_mask.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(BadFileError) as e:
        check_dataset(_dataset(tmp_path, [(im, 1, m)]))
    msg = str(e.value)
    assert msg.startswith(str(m)) and "mask is 8x8 but its image is 20x16" in msg and f"mask of {im}" in msg


def test_unknown_label_in_csv(tmp_path: Path) -> None:
    save(tmp_path / "a.png", img(1))
    p = write_csv(tmp_path / "m.csv", [["a.png", "1"], ["a.png", "maybe"]])
    with pytest.raises(DataError) as e:
        read_csv(p)
    msg = str(e.value)
    assert f"{p} line 3" in msg and "unknown label 'maybe'" in msg and "valid: 0/1" in msg and "--positive" in msg


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_source(str(tmp_path / "empty"), positive="positive")
    assert str(tmp_path / "empty") in str(e.value) and "no class sub-folders" in str(e.value)
    assert "<class>/<image files>" in str(e.value)


def test_class_folder_without_images(tmp_path: Path) -> None:
    save(tmp_path / "positive" / "a.png", img(1))
    (tmp_path / "negative").mkdir()
    (tmp_path / "negative" / "readme.txt").write_text("x")
    with pytest.raises(DataError) as e:
        read_folder(tmp_path, positive="positive")
    msg = str(e.value)
    assert str(tmp_path / "negative") in msg and "has no images" in msg and ".png" in msg


def test_only_one_class_present(tmp_path: Path) -> None:
    save(tmp_path / "positive" / "a.png", img(1))
    save(tmp_path / "positive" / "b.png", img(2))
    ds = read_folder(tmp_path, positive="positive")
    with pytest.raises(DataError) as e:
        check_dataset(ds)
    assert "only one class present (2 positive images)" in str(e.value)
    assert str(tmp_path) in str(e.value) and "both positive and negative" in str(e.value)


def test_same_content_under_two_labels(tmp_path: Path) -> None:
    a = save(tmp_path / "pos" / "x.png", img(42))
    b = tmp_path / "neg" / "y.png"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    with pytest.raises(DataError) as e:
        check_dataset(_dataset(tmp_path, [(a, 1, None), (b, 0, None)]))
    msg = str(e.value)
    assert "under both labels" in msg and f"{a} (label 1)" in msg and f"{b} (label 0)" in msg
    assert "--skip-bad" in msg


def test_skip_bad_lists_every_bad_file_and_goes_on(tmp_path: Path) -> None:
    trunc = save(tmp_path / "t.png", img(7, 64, 64))
    trunc.write_bytes(trunc.read_bytes()[:200])
    text = tmp_path / "text.png"
    text.write_text("hello")
    good_m = save(tmp_path / "g.png", img(11))
    wrong_m = save(tmp_path / "g_mask.png", np.zeros((3, 3), np.uint8))
    nomask = save(tmp_path / "h.png", img(12))
    c1 = save(tmp_path / "c1.png", img(13))
    c2 = tmp_path / "c2.png"
    c2.write_bytes(c1.read_bytes())
    ds = _dataset(tmp_path, [(trunc, 1, None), (text, 0, None), (good_m, 1, wrong_m),
                             (nomask, 1, tmp_path / "none.png"), (c1, 1, None), (c2, 0, None)])
    rep = check_dataset(ds, skip_bad=True)
    assert len(rep.dataset) == 5 and sorted(rep.dataset.labels.tolist()) == [0, 0, 0, 1, 1]
    out = rep.write_bad_files(tmp_path / "out" / "bad_files.csv")
    assert out == tmp_path / "out" / "bad_files.csv"
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    reasons = {r["path"]: r["reason"] for r in rows}
    assert set(reasons) == {str(trunc), str(text), str(wrong_m), str(tmp_path / "none.png"), str(c1), str(c2)}
    assert "truncated" in reasons[str(trunc)] and "not a readable image" in reasons[str(text)]
    assert "mask is 3x3" in reasons[str(wrong_m)] and "not found" in reasons[str(tmp_path / "none.png")]
    assert reasons[str(c1)] == reasons[str(c2)] == "same file content appears under both labels"
    # Nothing skipped -> no file written.
    assert check_dataset(_dataset(tmp_path / "clean", []), skip_bad=True).write_bad_files(tmp_path / "x.csv") is None
    assert not (tmp_path / "x.csv").exists()


def test_skip_bad_all_bad_names_them_in_the_error(tmp_path: Path) -> None:
    bad = []
    for i in range(2):
        p = tmp_path / f"bad{i}.png"
        p.write_text("no")
        bad.append(ImageRecord(p, i))
    with pytest.raises(DataError) as e:
        check_dataset(Dataset(bad, source="s"), skip_bad=True)
    msg = str(e.value)
    assert "no usable images left" in msg and str(tmp_path / "bad0.png") in msg and "2 files skipped" in msg


# -- the same through the CLI ---------------------------------------------------------------------

def test_cli_embed_bad_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    manifest = good_csv_dataset(tmp_path / "d")
    bad = tmp_path / "d" / "img" / "3.png"
    bad.write_text("not an image")
    r = run_cli(["embed", "--data", str(manifest), "--out", str(tmp_path / "out")])
    assert_one_clear_line(r, str(bad), "not a readable image", "--skip-bad")
    assert not (tmp_path / "out" / "features.safetensors").exists()


def test_cli_embed_unknown_label_and_one_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    save(tmp_path / "a.png", img(1))
    m = write_csv(tmp_path / "m.csv", [["a.png", "perhaps"]])
    r = run_cli(["embed", "--data", str(m), "--out", str(tmp_path / "out")])
    assert_one_clear_line(r, f"{m} line 2", "unknown label 'perhaps'")
    save(tmp_path / "only" / "positive" / "a.png", img(1))
    r = run_cli(["embed", "--data", str(tmp_path / "only"), "--positive", "positive", "--out", str(tmp_path / "o2")])
    assert_one_clear_line(r, "only one class present")
    r = run_cli(["embed", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o3")])
    assert_one_clear_line(r, "not found", "demo[:N[:RATE[:SEED[:SIZE]]]]")


def test_cli_embed_skip_bad_writes_bad_files_and_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path / "cache"))
    manifest = good_csv_dataset(tmp_path / "d", n_pos=3, n_neg=4)
    bad = tmp_path / "d" / "img" / "6.png"
    bad.write_bytes(bad.read_bytes()[:60])
    out = tmp_path / "out"
    args = ["embed", "--data", str(manifest), "--out", str(out), "--backbone", "test_efficientnet", "--weights",
            "none", "--image-size", "32", "--engine", "torch", "--cache-dir", str(tmp_path / "cache")]
    r = run_cli(args)
    assert r.exit_code == 2 and str(bad) in r.output
    r = run_cli(args + ["--skip-bad"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(out / "bad_files.csv", encoding="utf-8")))
    assert [x["path"] for x in rows] == [str(bad)] and "truncated" in rows[0]["reason"]
    from safetensors.numpy import load_file

    feats = load_file(str(out / "features.safetensors"))
    assert feats["global"].shape[0] == 6 and list(feats["labels"]) == [1, 1, 1, 0, 0, 0]
    paths = (out / "paths.csv").read_text(encoding="utf-8")
    assert str(bad) not in paths and paths.count("\n") == 7


def test_demo_follows_cache_dir_not_the_home_cache(tmp_path: Path) -> None:
    """--cache-dir (or IMBVISION_CACHE) holds the demo set too; the default cache is not written."""
    from typer.testing import CliRunner

    from imbvision.cli import app
    from imbvision.data.source_registry import cache_override, cache_root

    env_cache, flag_cache = tmp_path / "env", tmp_path / "flag"
    review = tmp_path / "review.csv"
    review.write_text("path,label,decision\n")
    res = CliRunner().invoke(app, ["audit", "--data", "demo:20", "--review", str(review), "--manifest-out",
                                   str(tmp_path / "m.csv"), "--cache-dir", str(flag_cache)],
                             env={"IMBVISION_CACHE": str(env_cache)})
    assert (flag_cache / "demo" / "n20-r0.05-s0" / "manifest.csv").is_file(), res.output
    assert not env_cache.exists()  # the flag wins over the environment, and nothing else was written
    with cache_override(tmp_path / "lib"):
        assert cache_root() == tmp_path / "lib"
        ds = load_source("demo:20")
    assert str(ds.records[0].path).startswith(str(tmp_path / "lib" / "demo"))
    assert cache_root() != tmp_path / "lib"  # restored after the block
