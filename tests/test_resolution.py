"""The resolution policy: input scale from the images' sizes, recorded, overridable, bounded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision.backbones.resolution import (KEEP_ASPECT_FROM, MAX_SIDE, MIN_SIDE, NATIVE_FRACTION,
                                            check_patch_budget, choose_resolution, header_size,
                                            patch_batch_size, resolve_resolution)
from imbvision.errors import ConfigError


def _rule(w: int, h: int) -> tuple[int, str]:
    """The documented rule, written out independently of the implementation."""
    long_side, aspect = max(w, h), max(w, h) / min(w, h)
    size = min(MAX_SIDE, max(MIN_SIDE, 32 * math.ceil(long_side * NATIVE_FRACTION / 32)))
    return size, "keep-aspect" if aspect >= KEEP_ASPECT_FROM else "stretch"


@pytest.mark.parametrize("w,h,expected", [
    (500, 1250, (448, "keep-aspect")),   # tall thin-crack images: seen at 448 px, aspect kept
    (1250, 500, (448, "keep-aspect")),   # wide ones too
    (258, 359, (224, "stretch")),        # Magnetic-tile-like: already near 224 px, unchanged
    (1024, 1024, (448, "stretch")),      # 1024-px photos: bounded at 448
    (640, 640, (320, "stretch")),        # half the native side, rounded up to 32
    (100, 80, (224, "stretch")),         # small images are never shrunk below 224 (nor is 224 exceeded by much)
    (4000, 3000, (448, "stretch")),      # the bound holds for camera-sized photos
])
def test_rule_on_typical_sizes(w: int, h: int, expected: tuple[int, str]) -> None:
    sizes = np.array([[w, h]] * 5)
    size, resize, L, A = choose_resolution(sizes)
    assert (size, resize) == expected == _rule(w, h)
    assert L == max(w, h) and A == pytest.approx(max(w, h) / min(w, h))
    assert size % 32 == 0


def test_rule_uses_medians_so_a_few_odd_images_do_not_move_it() -> None:
    sizes = np.array([[500, 1250]] * 9 + [[100, 100]] * 2)
    assert choose_resolution(sizes)[:2] == (448, "keep-aspect")


def _tall_images(folder: Path, n: int, w: int, h: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_given_values_override_their_half_and_the_record_says_so(tmp_path: Path) -> None:
    paths = _tall_images(tmp_path, 3, 40, 1000)
    both = resolve_resolution(paths)
    assert (both.image_size, both.resize) == _rule(40, 1000)
    assert both.source == {"image_size": "policy", "resize": "policy"} and both.images_read == 3
    assert both.median_long_side == 1000 and both.policy
    one = resolve_resolution(paths, image_size=256)
    assert (one.image_size, one.resize) == (256, "keep-aspect") and one.source["image_size"] == "given"
    given = resolve_resolution(paths, image_size=320, resize="stretch")
    assert (given.image_size, given.resize, given.policy, given.images_read) == (320, "stretch", None, 0)


def test_header_size_follows_exif_orientation_without_decoding(tmp_path: Path) -> None:
    from imbvision.data.decode import read_size

    p = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: a 300×100 file shows as 100×300
    Image.new("RGB", (300, 100), (120, 30, 30)).save(p, exif=exif)
    assert header_size(p) == read_size(p) == (100, 300)


def test_patch_batch_holds_no_more_pixels_than_at_224() -> None:
    assert patch_batch_size(224) == 32 and patch_batch_size(448) == 8 and patch_batch_size(1024) == 1
    assert patch_batch_size(224, 4) == 4
    for s in (224, 320, 448, 640, 1024):
        assert patch_batch_size(s) * s * s <= 32 * 224 * 224


def test_budget_refuses_a_cache_larger_than_the_disk(tmp_path: Path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    n = int(free // (64 * 64 * 432 * 2)) + 10  # one more image than fits at 1024 px
    with pytest.raises(ConfigError) as e:
        check_patch_budget(n, 1024, (64, 64), 432, 1, tmp_path / "not-yet")
    msg = str(e.value)
    assert msg.startswith("--image-size 1024:") and "GB" in msg and str(tmp_path / "not-yet") in msg
    assert "\n" not in msg
    ok = check_patch_budget(10, 224, (14, 14), 432, 32, tmp_path)
    assert ok["cache_bytes"] == 10 * 14 * 14 * 432 * 2


def test_budget_refuses_a_batch_larger_than_memory(tmp_path: Path) -> None:
    from imbvision.backbones.resolution import _available_memory

    avail = _available_memory()
    assert avail is not None  # Linux: /proc/meminfo
    batch = int(avail // (1024 * 1024 * 520)) + 1
    with pytest.raises(ConfigError, match=r"^--image-size 1024: one batch .* GB of memory"):
        check_patch_budget(1, 1024, (64, 64), 432, batch, tmp_path)


def test_train_records_the_chosen_resolution_and_predict_uses_it(tmp_path: Path, cache_dir: Path) -> None:
    """Tall images, no --image-size/--resize: the policy chooses, config.json and the bundle record it,
    and the saved model scores new images with exactly those settings."""
    from imbvision import Model
    from imbvision.workflows.train import train

    rng = np.random.default_rng(0)
    rows = []
    folder = tmp_path / "tall"
    folder.mkdir()
    for i in range(24):
        arr = rng.integers(90, 110, (600, 120, 3), dtype=np.uint8)
        if i % 4 == 0:
            arr[200:260, 50:54] = 250  # a thin bright crack
        p = folder / f"{i}.png"
        Image.fromarray(arr).save(p)
        rows.append(f"{p},{int(i % 4 == 0)}")
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    res = train(data=str(tmp_path / "m.csv"), strategy="patch", backbone="test_efficientnet", weights="none",
                cache_dir=str(cache_dir), n_boot=0, out=tmp_path / "run", progress=False, group_duplicates=False)
    want = _rule(120, 600)  # 600/2 = 300 → 320 px, aspect 5 → keep-aspect
    cfg = json.loads((res.out / "config.json").read_text())
    assert (cfg["image_size"], cfg["resize"]) == want
    assert cfg["extra"]["resolution"]["source"] == {"image_size": "policy", "resize": "policy"}
    model = Model.load(res.out)
    b = model.meta["backbone"]
    assert (b["image_size"], b["resize"]) == want and b["resolution"]["median_aspect"] == pytest.approx(5.0)
    heat = model.explain([str(folder / "0.png")])
    assert heat.shape == (1, 600, 120)  # at the image's own resolution
    from imbvision.explain import HEATMAP_MAX_SIDE, patch_model_features, write_heatmaps

    feats = patch_model_features(model, [np.asarray(Image.open(folder / "0.png").convert("RGB"))])
    assert feats.image_size == want[0] and feats.settings["resize"] == want[1]
    # a much larger image: its map is capped on the long side, aspect kept; the overlay follows the map
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(90, 110, (2400, 480, 3), dtype=np.uint8)).save(big)
    m = model.explain([str(big)])
    assert m.shape == (1, HEATMAP_MAX_SIDE, round(480 * HEATMAP_MAX_SIDE / 2400))
    assert write_heatmaps(model, [str(big)], tmp_path / "maps") == 1
    w, h = Image.open(next((tmp_path / "maps").glob("*.png"))).size
    assert h / w == pytest.approx(2400 / 480, rel=0.02) and h <= 2 * HEATMAP_MAX_SIDE


def test_bundle_meta_before_the_policy_still_validates_and_a_bad_record_is_refused() -> None:
    """A model saved before the policy has no ``resolution``: it loads with its recorded size and resize;
    a damaged record is refused with the field named."""
    from pydantic import ValidationError

    from imbvision.bundle_schema import _Backbone

    old = {"name": "efficientnet_lite0", "weights_id": "x", "image_size": 224, "tiles": 0, "features": "global"}
    b = _Backbone.model_validate(old)
    assert (b.image_size, b.resize, b.resolution) == (224, "stretch", None)
    bad = {**old, "resolution": {"image_size": 448, "resize": "sideways", "source": {}, "images_read": 1}}
    with pytest.raises(ValidationError, match="resolution.resize"):
        _Backbone.model_validate(bad)
