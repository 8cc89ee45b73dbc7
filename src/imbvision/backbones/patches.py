"""Patch features: a grid of local descriptors per image from a frozen backbone's mid-level blocks.

Following PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly
Detection", CVPR 2022), the feature maps of the last blocks at stride 8 and
stride 16 are each averaged over a 3×3 neighbourhood, the stride-16 map is
upsampled (bilinear) to the stride-8 grid, and both are concatenated: at
224 px an image becomes a 28×28 grid of 152-dimensional patches for
EfficientNet-Lite0 (40 + 112 channels). The network is truncated after the
stride-16 block (the layers behind it are never run) with timm's
``create_feature_extractor``.

Resizing (``resize``):

* ``stretch`` – the whole image is resized to ``S × S`` (the global embedding's rule);
* ``keep-aspect`` – the image is scaled so that its *long* side is ``S`` (aspect
  ratio kept), centred on an ``S × S`` canvas, and the short side is padded by
  replicating the edge pixels (no artificial border for a normality model to
  flag). Nothing is cropped. Patches whose centre lies in the padding are marked
  invalid: they never count for an image score, and heat maps are cropped back
  to the image before they are resized to its original size.

Features are cached as float16 in one append-only, memory-mapped file per
settings key, indexed by each file's content hash, so RAM stays bounded by a
batch no matter how many images there are, and a second run reads only what
it needs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset as TorchDataset

from .._io import atomic_write
from ..data.checks import file_digest
from ..data.decode import load_image_array
from ..data.records import Dataset, ImageRecord
from ..errors import ConfigError
from .engine import checked_onnx, module_digest
from .registry import Backbone, create_backbone

__all__ = ["RESIZE_MODES", "PatchFeatures", "PatchNet", "patch_features", "patch_features_arrays",
           "canvas_view", "mask_to_grid", "grid_to_image", "PATCH_VERSION"]

RESIZE_MODES = ("stretch", "keep-aspect")
PATCH_VERSION = "patch-s8s16-avg3-v1"
#: Largest absolute difference allowed between the ONNX export and PyTorch.
EXPORT_TOLERANCE = 2e-3


# --------------------------------------------------------------------------- #
# geometry: image ↔ canvas ↔ grid
# --------------------------------------------------------------------------- #
def _check_resize(resize: str) -> None:
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize {resize!r} invalid; valid: {', '.join(RESIZE_MODES)}")


def canvas_view(arr: np.ndarray, size: int, resize: str = "stretch") -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Resize an ``(H, W, 3)`` uint8 image onto an ``S × S`` canvas.

    Returns
    -------
    view
        ``(3, S, S)`` uint8.
    box
        ``(left, top, right, bottom)`` of the image on the canvas, in canvas pixels
        (the whole canvas for ``stretch``).
    """
    _check_resize(resize)
    im = Image.fromarray(arr)
    if resize == "stretch":
        out = np.asarray(im.resize((size, size), Image.BILINEAR, reducing_gap=None), dtype=np.uint8)
        return out.transpose(2, 0, 1), (0, 0, size, size)
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(im.resize((nw, nh), Image.BILINEAR, reducing_gap=None), dtype=np.uint8)
    left, top = (size - nw) // 2, (size - nh) // 2
    out = np.pad(small, ((top, size - nh - top), (left, size - nw - left), (0, 0)), mode="edge")
    return out.transpose(2, 0, 1), (left, top, left + nw, top + nh)


def _valid_grid(box: Sequence[float], size: int, grid: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` bool: patches whose centre lies on the image, not the padding."""
    gh, gw = grid
    cy = (np.arange(gh) + 0.5) * size / gh
    cx = (np.arange(gw) + 0.5) * size / gw
    ok_y = (cy >= box[1]) & (cy < box[3])
    ok_x = (cx >= box[0]) & (cx < box[2])
    valid = ok_y[:, None] & ok_x[None, :]
    if not valid.any():  # a sliver image: keep the nearest row/column
        valid[np.argmin(np.abs(cy - (box[1] + box[3]) / 2)), np.argmin(np.abs(cx - (box[0] + box[2]) / 2))] = True
    return valid


def mask_to_grid(mask: np.ndarray, box: Sequence[int], size: int, grid: tuple[int, int]) -> np.ndarray:
    """Fraction of object pixels per patch, ``(h, w)`` float32 in [0, 1].

    ``mask`` is the ``(H, W)`` bool mask at the image's original size; it is placed on the
    canvas exactly as the image was (``box``) and area-averaged onto the grid.
    """
    m = Image.fromarray((np.asarray(mask, dtype=bool) * 255).astype(np.uint8))
    left, top, right, bottom = (int(v) for v in box)
    canvas = np.zeros((size, size), np.float32)
    canvas[top:bottom, left:right] = np.asarray(m.resize((right - left, bottom - top), Image.BILINEAR),
                                                dtype=np.float32) / 255.0
    gh, gw = grid
    return canvas.reshape(gh, size // gh, gw, size // gw).mean(axis=(1, 3))


def grid_to_image(heat: np.ndarray, box: Sequence[int], size: int, out_size: tuple[int, int],
                  sigma: float = 4.0) -> np.ndarray:
    """A ``(h, w)`` patch-score grid → ``(H, W)`` float32 map at the image's size ``out_size=(W, H)``.

    Upsampled bilinearly to the canvas, cropped to the image's ``box``, resized, then smoothed with a
    Gaussian of ``sigma`` canvas pixels (PatchCore's σ = 4), scaled to the output.
    """
    t = torch.from_numpy(np.ascontiguousarray(heat, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    left, top, right, bottom = (int(v) for v in box)
    crop = up[top:bottom, left:right]
    W, H = out_size
    out = np.asarray(Image.fromarray(crop).resize((W, H), Image.BILINEAR), dtype=np.float32)
    if sigma > 0:
        from scipy.ndimage import gaussian_filter
        out = gaussian_filter(out, sigma * max(W, H) / size).astype(np.float32)
    return out


# --------------------------------------------------------------------------- #
# the network
# --------------------------------------------------------------------------- #
def _entries(model: nn.Module) -> list[tuple[str, int, int]]:
    """(module, reduction, channels) of each feature level timm declares for ``model``."""
    info = getattr(model, "feature_info", None)
    try:
        return [(i["module"], i["reduction"], i["num_chs"]) for i in (info.info if hasattr(info, "info") else info)]
    except Exception:  # noqa: BLE001 - any model without timm feature_info
        return []


def _layers(model: nn.Module) -> tuple[tuple[str, int], tuple[str, int]]:
    """The last stride-8 and stride-16 levels as (module name, channels)."""
    entries = _entries(model)
    s8 = [(m, c) for m, r, c in entries if r == 8]
    s16 = [(m, c) for m, r, c in entries if r == 16]
    if not s8 or not s16:
        raise ConfigError(f"backbone {type(model).__name__} does not declare stride-8 and stride-16 blocks "
                          "(timm feature_info); patch heads need a timm CNN such as efficientnet_lite0")
    return s8[-1], s16[-1]


class PatchNet(nn.Module):
    """uint8 ``(N, 3, S, S)`` → float ``(N, C8 + C16, S/8, S/8)`` locally averaged patch features."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        from timm.models import create_feature_extractor

        (a, _), (b, _) = _layers(backbone.model)
        self.body = create_feature_extractor(backbone.model, return_nodes={a: "s8", b: "s16"})
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(backbone.std).view(1, 3, 1, 1) * 255.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body((x.float() - self.mean) * self.inv_std)
        a = F.avg_pool2d(f["s8"], 3, stride=1, padding=1, count_include_pad=False)
        b = F.avg_pool2d(f["s16"], 3, stride=1, padding=1, count_include_pad=False)
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([a, b], 1)


class _TorchPatchEngine:
    name = "torch"

    def __init__(self, net: PatchNet) -> None:
        self.net = net.eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).contiguous(memory_format=torch.channels_last)
        return self.net(x).permute(0, 2, 3, 1).float().numpy()


class _OnnxPatchEngine:
    name = "onnx"

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0]
        return out.transpose(0, 2, 3, 1).astype(np.float32, copy=False)


def make_patch_engine(backbone: Backbone, image_size: int, *, kind: str = "auto", cache_dir: Path | None = None):
    """The truncated network as an engine: ONNX (exported once, checked against PyTorch) or PyTorch."""
    if kind not in ("auto", "onnx", "torch"):
        raise ConfigError(f"engine {kind!r} invalid; valid: auto, onnx, torch")
    net = PatchNet(backbone).eval()
    torch_engine = _TorchPatchEngine(net)
    if kind == "torch":
        return torch_engine
    key = hashlib.sha256(f"{backbone.name}|{module_digest(backbone)}|{image_size}|{torch.__version__}|{PATCH_VERSION}"
                         .encode()).hexdigest()
    folder = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "imbvision"
    path = folder / "onnx" / f"patch-{backbone.name}-{image_size}-{key[:16]}.onnx"

    def export(p: Path) -> None:
        x = torch.randint(0, 256, (2, 3, image_size, image_size), dtype=torch.uint8)
        with warnings.catch_warnings(), atomic_write(p, "wb") as fh:
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), fh, input_names=["x"], output_names=["patches"],
                              dynamic_axes={"x": {0: "n"}, "patches": {0: "n"}}, opset_version=17, dynamo=False)

    batch = np.random.default_rng(0).integers(0, 256, (2, 3, image_size, image_size), dtype=np.uint8)
    return checked_onnx(path, key, export, _OnnxPatchEngine, torch_engine, batch, kind=kind, tolerance=EXPORT_TOLERANCE,
                        what="patch features")


# --------------------------------------------------------------------------- #
# features of a dataset
# --------------------------------------------------------------------------- #
@dataclass
class PatchFeatures:
    """Patch features of N images, row i for image i, backed by a (memory-mapped) float16 array.

    Attributes
    ----------
    store
        ``(R, h, w, C)`` float16 array (a ``np.memmap`` for cached data); ``rows`` picks this set's rows.
    boxes
        ``(N, 4)`` image box on the canvas, canvas pixels (left, top, right, bottom).
    sizes
        ``(N, 2)`` original (width, height).
    """

    store: np.ndarray
    rows: np.ndarray
    boxes: np.ndarray
    sizes: np.ndarray
    image_size: int
    settings: dict
    stats: dict | None = None
    global_: np.ndarray | None = None
    masks: list | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Sequence[int] | np.ndarray) -> "PatchFeatures":
        """``feats[idx]`` for an integer index array: :meth:`take` (so a split indexes it like an array)."""
        return self.take(index)

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.store.shape[1]), int(self.store.shape[2])

    @property
    def dim(self) -> int:
        return int(self.store.shape[3])

    def take(self, index: Sequence[int] | np.ndarray) -> "PatchFeatures":
        """A subset (no copy of the features)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        return PatchFeatures(self.store, self.rows[idx], self.boxes[idx], self.sizes[idx], self.image_size,
                             self.settings, self.stats, None if self.global_ is None else self.global_[idx],
                             None if self.masks is None else [self.masks[int(i)] for i in idx])

    def image(self, i: int) -> np.ndarray:
        """``(h, w, C)`` float32 features of image ``i``."""
        return np.asarray(self.store[int(self.rows[i])], dtype=np.float32)

    def valid(self, i: int) -> np.ndarray:
        """``(h, w)`` bool: patches on the image (not padding)."""
        return _valid_grid(self.boxes[i], self.image_size, self.grid)

    def batches(self, size: int = 64):
        """Yield ``(start, (n, h, w, C) float32)`` chunks in order (bounded memory)."""
        for s in range(0, len(self), size):
            rows = self.rows[s:s + size]
            yield s, np.asarray(self.store[rows], dtype=np.float32)


def _settings(backbone: Backbone, image_size: int, resize: str) -> dict:
    return {"backbone": backbone.name, "weights_id": backbone.weights_id, "image_size": image_size,
            "resize": resize, "patch": PATCH_VERSION}


class _Store:
    """Append-only float16 rows in ``rows.f16`` plus ``index.json`` {digest: [row, box, size]}."""

    def __init__(self, root: Path, settings: dict, shape: tuple[int, int, int]) -> None:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(root) / "patches" / key
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shape = shape
        self.data, self.index_path, self.lock = self.folder / "rows.f16", self.folder / "index.json", self.folder / "lock"
        with atomic_write(self.folder / "settings.json", "w") as fh:
            json.dump({**settings, "row_shape": list(shape)}, fh, indent=2)
        self.index = self._read_index()

    def _read_index(self) -> dict:
        try:
            idx = json.loads(self.index_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        n = self.data.stat().st_size // (2 * int(np.prod(self.shape))) if self.data.exists() else 0
        return {k: v for k, v in idx.items() if v[0] < n}  # rows past a torn write are recomputed

    def append(self, items: dict[str, tuple[np.ndarray, tuple, tuple]]) -> None:
        if not items:
            return
        with open(self.lock, "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            self.index = {**self._read_index(), **self.index}
            n = self.data.stat().st_size // (2 * int(np.prod(self.shape))) if self.data.exists() else 0
            with open(self.data, "ab") as fh:
                for k, (feat, box, size) in items.items():
                    fh.write(np.ascontiguousarray(feat, dtype=np.float16).tobytes())
                    self.index[k] = [n, list(map(int, box)), list(map(int, size))]
                    n += 1
                fh.flush()
                os.fsync(fh.fileno())
            with atomic_write(self.index_path, "w") as fh:
                json.dump(self.index, fh)

    def memmap(self) -> np.ndarray:
        n = self.data.stat().st_size // (2 * int(np.prod(self.shape))) if self.data.exists() else 0
        if n == 0:
            return np.zeros((0, *self.shape), np.float16)
        return np.memmap(self.data, dtype=np.float16, mode="r", shape=(n, *self.shape))


class _Views(TorchDataset):
    def __init__(self, paths: Sequence[Path], size: int, resize: str) -> None:
        self.paths, self.size, self.resize = list(paths), size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        arr = _decode(self.paths[i], self.size)
        view, box = canvas_view(arr[0], self.size, self.resize)
        return i, torch.from_numpy(view.copy()), torch.tensor(box), torch.tensor(arr[1])


def _decode(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode; a JPEG far larger than needed decodes at a reduced scale (Pillow's draft mode, DCT scaling)."""
    with Image.open(path) as im:
        full, big_jpeg = im.size, im.format == "JPEG" and min(im.size) > 2 * size
    if not big_jpeg:
        arr = load_image_array(path)
        return arr, (arr.shape[1], arr.shape[0])
    return _draft_array(path, size), full


def _draft_array(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def patch_features(
    dataset: Dataset | Sequence[ImageRecord],
    *,
    backbone: str | Backbone = "efficientnet_lite0",
    weights: str | Path | None = None,
    image_size: int = 224,
    resize: str = "stretch",
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    engine: str = "auto",
    progress: bool = False,
) -> PatchFeatures:
    """Patch features of every record (cached on disk, float16, memory-mapped).

    Parameters
    ----------
    image_size
        Canvas side ``S`` in pixels, a multiple of 32 in 64..1024; the grid is ``S/8 × S/8``.
    resize
        ``stretch`` or ``keep-aspect`` (see the module docstring for the padding rule).
    cache_dir
        Cache root (``patches/<settings key>/`` below it); ``None`` uses a temporary folder.
    engine
        ``auto`` (ONNX when its export matches PyTorch, else PyTorch), ``onnx`` or ``torch``.

    Returns
    -------
    PatchFeatures
        ``(N, S/8, S/8, C)`` float16 rows plus each image's box and size.
    """
    import tempfile

    records = list(dataset.records if isinstance(dataset, Dataset) else dataset)
    _check_resize(resize)
    if image_size % 32 or not 64 <= image_size <= 1024:
        raise ConfigError(f"image_size {image_size} invalid for patch features; use a multiple of 32 in 64..1024")
    bb = backbone if isinstance(backbone, Backbone) else create_backbone(backbone, weights=weights)
    settings = _settings(bb, image_size, resize)
    root = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="imbvision-patches-"))
    net_dim = _probe_dim(bb, image_size)
    store = _Store(root, settings, net_dim)
    digests = [file_digest(r.path) for r in records]
    todo = sorted({d: i for i, d in reversed(list(enumerate(digests))) if d not in store.index}.values())
    t0 = time.perf_counter()
    stats = {"images": len(records), "computed": len(todo), "from_cache": len(records) - len(todo)}
    if todo:
        eng = make_patch_engine(bb, image_size, cache_dir=root, kind=engine)
        stats["engine"] = eng.name
        if workers is None:
            workers = 1 if len(todo) > 64 else 0
        loader = DataLoader(_Views([records[i].path for i in todo], image_size, resize), batch_size=batch_size,
                            num_workers=workers, shuffle=False, prefetch_factor=4 if workers else None)
        for idx, views, boxes, sizes in loader:
            feats = eng(views.numpy())
            store.append({digests[todo[i]]: (feats[k], tuple(boxes[k].tolist()), tuple(sizes[k].tolist()))
                          for k, i in enumerate(idx.tolist())})
    stats["seconds"] = time.perf_counter() - t0
    stats["images_per_s"] = stats["computed"] / stats["seconds"] if stats["computed"] else None
    entries = [store.index[d] for d in digests]
    rows = np.array([e[0] for e in entries], dtype=np.int64)
    boxes = np.array([e[1] for e in entries], dtype=np.int64).reshape(-1, 4)
    sizes = np.array([e[2] for e in entries], dtype=np.int64).reshape(-1, 2)
    return PatchFeatures(store.memmap(), rows, boxes, sizes, image_size, settings, stats)


def _probe_dim(bb: Backbone, image_size: int) -> tuple[int, int, int]:
    """Row shape ``(S/8, S/8, C8 + C16)`` of the patch features."""
    (_, c8), (_, c16) = _layers(bb.model)
    return image_size // 8, image_size // 8, c8 + c16


def patch_features_arrays(images: Sequence[np.ndarray], backbone: Backbone, *, image_size: int = 224,
                          resize: str = "stretch", engine: str = "auto", cache_dir: Path | None = None,
                          batch_size: int = 32) -> PatchFeatures:
    """Patch features of in-memory ``(H, W, 3)`` uint8 images (not cached; held in RAM)."""
    _check_resize(resize)
    eng = make_patch_engine(backbone, image_size, kind=engine, cache_dir=cache_dir)
    feats, boxes, sizes = [], [], []
    for s in range(0, len(images), batch_size):
        views = []
        for a in images[s:s + batch_size]:
            v, box = canvas_view(np.asarray(a, dtype=np.uint8), image_size, resize)
            views.append(v)
            boxes.append(box)
            sizes.append((a.shape[1], a.shape[0]))
        feats.append(eng(np.stack(views)).astype(np.float16))
    shape = _probe_dim(backbone, image_size)
    store = np.concatenate(feats) if feats else np.zeros((0, *shape), np.float16)
    return PatchFeatures(store, np.arange(len(store)), np.asarray(boxes, np.int64).reshape(-1, 4),
                         np.asarray(sizes, np.int64).reshape(-1, 2), image_size,
                         _settings(backbone, image_size, resize))
