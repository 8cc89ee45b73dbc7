"""Backbones: embedded ImageNet weights, registry errors, safe weight loading, cached embedding, ONNX = PyTorch."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imbvision.backbones import create_backbone, embed_dataset, list_backbones, load_efficientnet_lite0
from imbvision.backbones.embed import embed_arrays
from imbvision.backbones.engine import EXPORT_TOLERANCE, make_engine
from imbvision.backbones.registry import load_weights_file
from imbvision.data.records import ImageRecord
from imbvision.errors import ConfigError

CAT_CLASSES = set(range(281, 286))  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("test_efficientnet", weights="none")


def _images(folder: Path, n: int, size: int = 40) -> list[ImageRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (size, size + 6, 3), dtype=np.uint8)
        p = folder / f"{i}.png"
        Image.fromarray(arr).save(p)
        recs.append(ImageRecord(p, int(i % 3 == 0)))
    return recs


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_embedded_efficientnet_lite_knows_a_cat(variant: int) -> None:
    """Each embedded Lite variant's weights are mapped right: the ImageNet classifier names a cat."""
    from imbvision.backbones.registry import EMBEDDED_LITE, load_efficientnet_lite

    skimage_data = pytest.importorskip("skimage.data")
    model = load_efficientnet_lite0() if variant == 0 else load_efficientnet_lite(variant)
    px = EMBEDDED_LITE[variant][2]
    img = Image.fromarray(skimage_data.chelsea()).resize((px, px), Image.BILINEAR)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.inference_mode():
        logits = model(((x - mean) / std)[None])
    assert logits.shape == (1, 1000)
    top3 = set(logits.topk(3).indices[0].tolist())
    assert top3 & CAT_CLASSES, f"top-3 {sorted(top3)} has no cat class"
    assert int(logits.argmax()) in CAT_CLASSES


def test_tiny_timm_backbone_with_random_weights(tiny) -> None:
    assert tiny.name == "test_efficientnet" and tiny.weights_id.startswith("timm-test_efficientnet-random")
    with torch.inference_mode():
        out = tiny.model(tiny.normalize(torch.rand(2, 3, 32, 32)))
    assert out.shape == (2, tiny.num_features) and torch.isfinite(out).all()


def test_unknown_backbone_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as e:
        create_backbone("efficientnet_lite_zero_typo", weights="none")
    msg = str(e.value)
    assert "unknown backbone 'efficientnet_lite_zero_typo'" in msg
    assert "registered: efficientnet_lite0" in msg and "timm model" in msg
    assert [b.name for b in list_backbones()][0] == "efficientnet_lite0"


class _Payload:
    """Unpickling this object would create a file: proof that arbitrary code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_weights_with_arbitrary_objects_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.pth"
    raw.write_bytes(pickle.dumps({"conv_stem.weight": torch.zeros(1), "x": _Payload(marker)}))
    zipped = tmp_path / "evil_zip.pt"
    torch.save({"conv_stem.weight": torch.zeros(1), "x": _Payload(marker)}, zipped)
    assert not marker.exists()
    for f in (raw, zipped):
        with pytest.raises(ConfigError) as e:
            create_backbone("test_efficientnet", weights=str(f))
        assert str(f) in str(e.value) and "weights_only=True" in str(e.value)
        with pytest.raises(ConfigError):
            load_weights_file(f)
    assert not marker.exists(), "unpickling ran arbitrary code"


def test_plain_state_dict_weights_file_is_accepted(tmp_path: Path, tiny) -> None:
    f = tmp_path / "w.pth"
    torch.save({"state_dict": tiny.model.state_dict()}, f)
    b = create_backbone("test_efficientnet", weights=str(f))
    assert b.weights_id.startswith("file-")
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(b.model(x), tiny.model(x))
    with pytest.raises(ConfigError, match="not found"):
        create_backbone("test_efficientnet", weights=str(tmp_path / "missing.pth"))


def test_embedding_cache_second_call_computes_nothing(tmp_path: Path, tiny) -> None:
    recs = _images(tmp_path / "img", 6)
    kw = dict(backbone=tiny, image_size=32, cache_dir=tmp_path / "cache", engine="torch", progress=False)
    first = embed_dataset(recs, **kw)
    assert first.stats["computed"] == 6 and first.stats["from_cache"] == 0
    assert first.global_.shape == (6, tiny.num_features) and first.tiles is None
    second = embed_dataset(recs, **kw)
    assert second.stats["from_cache"] == 6 and second.stats["computed"] == 0
    np.testing.assert_array_equal(first.global_, second.global_)
    # A changed image is recomputed; the others still come from the cache.
    Image.fromarray(np.zeros((40, 46, 3), np.uint8)).save(recs[2].path)
    third = embed_dataset(recs, **kw)
    assert third.stats["computed"] == 1 and third.stats["from_cache"] == 5
    assert not np.array_equal(third.global_[2], first.global_[2])
    np.testing.assert_array_equal(third.global_[[0, 1, 3, 4, 5]], first.global_[[0, 1, 3, 4, 5]])


def test_cache_key_changes_with_image_size_and_tiles(tmp_path: Path, tiny) -> None:
    recs = _images(tmp_path / "img", 3)
    base = dict(backbone=tiny, cache_dir=tmp_path / "cache", engine="torch", progress=False)
    embed_dataset(recs, image_size=32, **base)
    for extra in ({"image_size": 48}, {"image_size": 32, "tiles": 2}):
        e = embed_dataset(recs, **extra, **base)
        assert e.stats["computed"] == 3, extra
    folders = list((tmp_path / "cache" / "embeddings").iterdir())
    assert len(folders) == 3
    assert embed_dataset(recs, image_size=48, **base).stats["computed"] == 0


def test_tiles_array_shape(tmp_path: Path, tiny) -> None:
    recs = _images(tmp_path / "img", 4, size=64)
    e = embed_dataset(recs, backbone=tiny, image_size=32, tiles=2, cache_dir=None, engine="torch", progress=False)
    assert e.global_.shape == (4, tiny.num_features) and e.tiles.shape == (4, tiny.num_features)
    assert e.features("both").shape == (4, 2 * tiny.num_features)
    assert not np.array_equal(e.global_, e.tiles)
    with pytest.raises(ConfigError, match="tiles 1 invalid"):
        embed_dataset(recs, backbone=tiny, tiles=1, progress=False)
    plain = embed_dataset(recs, backbone=tiny, image_size=32, cache_dir=None, engine="torch", progress=False)
    with pytest.raises(ConfigError, match="need tiles"):
        plain.features("tiles")


def test_onnx_engine_matches_torch_tiny(tmp_path: Path, tiny) -> None:
    onnx = make_engine(tiny, 64, kind="onnx", cache_dir=tmp_path)
    eager = make_engine(tiny, 64, kind="torch")
    assert onnx.name == "onnx" and eager.name == "torch"
    batch = np.random.default_rng(1).integers(0, 256, (5, 3, 64, 64), dtype=np.uint8)
    a, b = onnx(batch), eager(batch)
    assert a.shape == b.shape == (5, tiny.num_features)
    assert float(np.abs(a - b).max()) <= EXPORT_TOLERANCE
    assert list((tmp_path / "onnx").glob("test_efficientnet-64-*.onnx"))
    with pytest.raises(ConfigError, match="engine 'tensorrt' invalid"):
        make_engine(tiny, 64, kind="tensorrt")


def test_onnx_engine_matches_torch_efficientnet_lite0(tmp_path: Path) -> None:
    bb = create_backbone("efficientnet_lite0")
    arrays = [np.random.default_rng(i).integers(0, 256, (50, 70, 3), dtype=np.uint8) for i in range(3)]
    a = embed_arrays(arrays, bb, image_size=96, engine="onnx", cache_dir=tmp_path)
    b = embed_arrays(arrays, bb, image_size=96, engine="torch")
    assert a.global_.shape == (3, 1280)
    assert float(np.abs(a.global_ - b.global_).max()) <= EXPORT_TOLERANCE


@pytest.mark.parametrize("w, h, n", [(1, 1, 3), (2, 2, 3), (3, 1, 4), (2, 2, 6)])
def test_tile_boxes_are_never_empty(w: int, h: int, n: int) -> None:
    from imbvision.backbones.embed import tile_boxes

    boxes = tile_boxes(w, h, n)
    assert len(boxes) == n * n
    assert all(r > l and b > t and 0 <= l and 0 <= t and r <= w and b <= h for l, t, r, b in boxes), boxes


def test_an_engine_is_built_and_verified_once_per_process_and_again_when_its_file_changes(tmp_path):
    """Prediction asks for the engine once per batch: the export is hashed and checked on first use only."""
    import os

    from imbvision.backbones import create_backbone

    bb = create_backbone("test_efficientnet", weights="none")
    a = make_engine(bb, 64, kind="onnx", cache_dir=tmp_path)
    assert make_engine(bb, 64, kind="onnx", cache_dir=tmp_path) is a  # reused, not re-hashed
    assert make_engine(bb, 96, kind="onnx", cache_dir=tmp_path) is not a  # another setting, another engine
    st = a.path.stat()
    os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed since it was verified
    b = make_engine(bb, 64, kind="onnx", cache_dir=tmp_path)
    assert b is not a and make_engine(bb, 64, kind="onnx", cache_dir=tmp_path) is b
    other = create_backbone("test_efficientnet", weights="none")  # another network object: its own engine
    assert make_engine(other, 64, kind="onnx", cache_dir=tmp_path) is not b
