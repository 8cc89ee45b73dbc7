"""Issues 12 §6 and 14 §6: decoding keeps the data's own scale and refuses what it cannot show."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from imbvision.data.checks import check_dataset
from imbvision.data.decode import PagesDroppedWarning, load_image, load_image_array, load_mask
from imbvision.data.records import Dataset, ImageRecord
from imbvision.errors import BadFileError


def _grey(path: Path) -> np.ndarray:
    arr = load_image_array(path)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()
    return arr[..., 0].astype(int)


def _with_sbit(path: Path, bits: int) -> None:
    """Insert a greyscale ``sBIT`` chunk after IHDR (Pillow cannot write one)."""
    data = path.read_bytes()
    end_ihdr = 8 + 8 + 13 + 4
    chunk = struct.pack(">I", 1) + b"sBIT" + bytes([bits]) + struct.pack(">I", zlib.crc32(b"sBIT" + bytes([bits])))
    path.write_bytes(data[:end_ihdr] + chunk + data[end_ihdr:])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_xray_12bit_object_64_over_2000_stays_visible(tmp_path: Path, suffix: str) -> None:
    a = np.full((40, 40), 2000, np.uint16)
    a[10:20, 10:20] = 2064
    a[0, 0] = 4000  # the largest value of the 12-bit frame
    Image.fromarray(a).save(tmp_path / f"x{suffix}")
    g = _grey(tmp_path / f"x{suffix}")
    # divided by 4095 (12 bits), not 65535: 2000 -> 124.5, 2064 -> 128.5 grey levels
    assert g[5, 30] == round(2000 / 4095 * 255) and g[15, 15] == round(2064 / 4095 * 255)
    assert g[15, 15] - g[5, 30] == 4


@pytest.mark.parametrize("bits", [10, 12, 14])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_10_12_14_bit_data_use_their_full_range(tmp_path: Path, bits: int, suffix: str) -> None:
    top = 2 ** bits - 1
    ramp = np.linspace(0, top, 64).round().astype(np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(tmp_path / f"r{suffix}")
    g = _grey(tmp_path / f"r{suffix}")
    expected = np.clip(np.floor(ramp / top * 255 + 0.5), 0, 255).astype(int)
    assert np.array_equal(g, expected)
    assert g.max() == 255 and g.min() == 0


def test_png_sbit_chunk_decides_the_scale(tmp_path: Path) -> None:
    a = np.full((8, 8), 1000, np.uint16)  # 12-bit data that happens to stay below 1024
    Image.fromarray(a).save(tmp_path / "s.png")
    assert _grey(tmp_path / "s.png")[0, 0] == round(1000 / 1023 * 255)  # no sBIT: smallest depth, 10 bits
    _with_sbit(tmp_path / "s.png", 12)
    assert _grey(tmp_path / "s.png")[0, 0] == round(1000 / 4095 * 255)  # sBIT says 12 bits


def test_full_16bit_data_still_divides_by_65535(tmp_path: Path) -> None:
    a = np.array([[0, 65535], [32768, 40000]], np.uint16)
    Image.fromarray(a).save(tmp_path / "f.png")
    assert _grey(tmp_path / "f.png").tolist() == [[0, 255], [128, round(40000 / 65535 * 255)]]


def test_float_tiff_in_0_1_keeps_its_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    f = (0.2 + 0.2 * rng.random((32, 32))).astype(np.float32)  # in [0.2, 0.4]: no per-image stretch
    Image.fromarray(f).save(tmp_path / "f.tif")
    g = _grey(tmp_path / "f.tif")
    assert np.abs(g - f * 255).max() <= 0.5 + 1e-4
    assert abs(g.mean() - f.mean() * 255) < 0.5


def test_constant_half_grey_float_stays_half_grey(tmp_path: Path) -> None:
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(tmp_path / "c.tif")
    assert set(_grey(tmp_path / "c.tif").ravel().tolist()) == {128}
    assert torch_close(load_image(tmp_path / "c.tif"), 128 / 255)


def torch_close(t, value: float) -> bool:
    return bool(((t - value).abs() < 1e-6).all())


@pytest.mark.parametrize("bad, needle", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                         (-np.inf, "NaN or infinite"), (1e30, "rescale the image to [0, 1]"),
                                         (-0.5, "rescale the image to [0, 1]")])
def test_non_finite_or_out_of_range_float_pixels_are_refused(tmp_path: Path, bad: float, needle: str) -> None:
    f = np.full((16, 16), 0.5, np.float32)
    f[3, 4] = bad
    Image.fromarray(f).save(tmp_path / "bad.tif")
    with pytest.raises(BadFileError) as e:
        load_image_array(tmp_path / "bad.tif")
    assert str(tmp_path / "bad.tif") in str(e.value) and needle in str(e.value)
    # the dataset check finds it too (the image is decoded there)
    recs = [ImageRecord(tmp_path / "bad.tif", 1)]
    with pytest.raises(BadFileError, match="bad.tif"):
        check_dataset(Dataset(recs), require_both_classes=False)


def test_multipage_tiff_says_pages_were_dropped(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((8, 8), 40 * i, np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "mp.tif", save_all=True, append_images=pages[1:])
    with pytest.warns(PagesDroppedWarning, match=r"mp\.tif: 3 pages, only the first"):
        g = _grey(tmp_path / "mp.tif")
    assert (g == 0).all()  # page 1
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "one.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PagesDroppedWarning)
        rep = check_dataset(Dataset([ImageRecord(tmp_path / "mp.tif", 1), ImageRecord(tmp_path / "one.png", 0)]))
    assert any("1 multi-page file: only the first page is used" in n and "mp.tif" in n for n in rep.notes)


def test_truncated_file_refused_even_when_the_caller_allows_truncated_images(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        with pytest.raises(BadFileError, match="cut.png.*truncated"):
            load_image_array(tmp_path / "cut.png")
        with pytest.raises(BadFileError, match="cut.png"):
            check_dataset(Dataset([ImageRecord(tmp_path / "cut.png", 1)]), require_both_classes=False)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored
        assert load_image_array(tmp_path / "t.png").shape == (64, 64, 3)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


@pytest.mark.parametrize("fill", ["all", "some"])
def test_nan_mask_is_refused_naming_the_file(tmp_path: Path, fill: str) -> None:
    m = np.zeros((8, 8), np.float32)
    if fill == "all":
        m[:] = np.nan
    else:
        m[2, 2] = np.nan
    Image.fromarray(m).save(tmp_path / "m.tif")
    with pytest.raises(BadFileError) as e:
        load_mask(tmp_path / "m.tif")
    assert str(tmp_path / "m.tif") in str(e.value) and "NaN" in str(e.value)
    if fill == "all":
        assert "every pixel" in str(e.value)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "i.png")
    with pytest.raises(BadFileError, match=r"m\.tif.*mask of"):
        check_dataset(Dataset([ImageRecord(tmp_path / "i.png", 1, mask=tmp_path / "m.tif")]), require_both_classes=False)


def test_large_jpeg_decodes_in_draft_mode_but_never_below_the_input(tmp_path):
    """Issue 15: a camera-sized JPEG decodes at a reduced DCT scale that keeps both sides >= min_side."""
    from PIL import Image as _Image

    from imbvision.data.decode import load_image_and_size, load_image_array

    yy, xx = np.mgrid[0:800, 0:1000] / 40.0  # a smooth photo-like picture (noise is JPEG's worst case)
    pic = np.stack([128 + 100 * np.sin(xx), 128 + 100 * np.cos(yy), 128 + 60 * np.sin(xx + yy)], -1)
    big = tmp_path / "big.jpg"
    _Image.fromarray(pic.astype(np.uint8)).save(big, quality=90)
    full = load_image_array(big)
    assert full.shape == (800, 1000, 3)
    arr, size = load_image_and_size(big, min_side=224)
    # 1/2 keeps 400 x 500; 1/4 would give 200 < 224 on the short side
    assert arr.shape == (400, 500, 3) and size == (1000, 800)
    assert load_image_array(big, min_side=300).shape == (400, 500, 3)
    assert load_image_array(big, min_side=100).shape == (100, 125, 3)  # 1/8: 100 >= 100
    # close to the full decode shrunk by the same factor (DCT scaling, not a different picture)
    from PIL import Image as PILImage
    shrunk = np.asarray(PILImage.fromarray(full).resize((500, 400), PILImage.BOX), dtype=float)
    assert np.abs(arr.astype(float) - shrunk).mean() < 3
    # a PNG of the same size, or a JPEG under twice min_side, decodes in full
    png = tmp_path / "big.png"
    _Image.fromarray(full).save(png)
    assert load_image_array(png, min_side=224).shape == (800, 1000, 3)
    assert load_image_array(big, min_side=450).shape == (800, 1000, 3)
