"""Embed a dataset once with a frozen backbone, with an on-disk cache.

Decoding and resizing run in DataLoader workers while the engine computes the
previous batch. Features are cached per image under a key made of the file's
content hash and the settings (backbone, weights, image size, tiles,
preprocessing version), so a second run reads the cache and only new or
changed images are computed. Shards are written atomically as the work goes,
so a killed run keeps what it finished.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save
from torch.utils.data import DataLoader, Dataset as TorchDataset

from .._digest import arrays_digest
from .._io import atomic_write
from .._fingerprint import content_digest
from ..data.records import Dataset, ImageRecord
from ..errors import BadFileError, ConfigError
from ..notices import CacheWarning
from .decoding import decode_part
from .engine import make_engine
from .registry import Backbone, create_backbone

__all__ = ["Embeddings", "embed_dataset", "check_embed_settings", "embed_arrays", "tile_boxes", "preprocess", "PREPROCESS_VERSION"]

#: v2: JPEGs at least twice the input size are decoded in draft mode (reduced DCT scale) before resizing.
PREPROCESS_VERSION = "resize-bilinear-aa-v2-draft"
TILE_OVERLAP = 0.25


@dataclass
class Embeddings:
    """Features of a dataset, row i for record i.

    ``global_`` holds the whole image's features; ``tiles`` (when tiles > 0)
    the element-wise max over the N×N overlapping crops.
    """

    global_: np.ndarray
    tiles: np.ndarray | None = None
    paths: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def features(self, kind: str = "global") -> np.ndarray:
        """``global``, ``tiles`` or ``both`` (concatenated)."""
        if kind == "global":
            return self.global_
        if self.tiles is None:
            raise ConfigError(f"features {kind!r} need tiles; embed with tiles >= 2")
        if kind == "tiles":
            return self.tiles
        if kind == "both":
            return np.concatenate([self.global_, self.tiles], axis=1)
        raise ConfigError(f"feature kind {kind!r} invalid; valid: global, tiles, both")


def tile_boxes(width: int, height: int, n: int, overlap: float = TILE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """N×N overlapping crop boxes (left, top, right, bottom) covering the image."""
    boxes = []
    tw = width / (n - (n - 1) * overlap)
    th = height / (n - (n - 1) * overlap)
    for i in range(n):
        for j in range(n):
            left = min(int(round(j * tw * (1 - overlap))), width - 1)
            top = min(int(round(i * th * (1 - overlap))), height - 1)
            # At least one pixel per box, so tiny images never give empty (black) tiles.
            right = max(left + 1, int(round(min(width, j * tw * (1 - overlap) + tw))))
            bottom = max(top + 1, int(round(min(height, i * th * (1 - overlap) + th))))
            boxes.append((left, top, right, bottom))
    return boxes


def preprocess(arr: np.ndarray, image_size: int, tiles: int = 0, resize: str = "stretch") -> np.ndarray:
    """(H, W, 3) uint8 → (1 + tiles², 3, S, S) uint8: the whole image, then the tiles.

    The whole image is resized to a square without cropping, so a small object
    near the border is never cut away: stretched (``resize="stretch"``) or with its
    aspect kept and the short side edge-padded (``"keep-aspect"``, see
    :func:`~imbvision.backbones.patches.canvas_view`).
    """
    im = Image.fromarray(arr)
    if resize != "stretch":
        from .patches import canvas_view
        views = [Image.fromarray(canvas_view(arr, image_size, resize)[0].transpose(1, 2, 0))]
    else:
        views = [im.resize((image_size, image_size), Image.BILINEAR, reducing_gap=None)]
    if tiles:
        for box in tile_boxes(im.width, im.height, tiles):
            views.append(im.crop(box).resize((image_size, image_size), Image.BILINEAR))
    return np.stack([np.asarray(v, dtype=np.uint8).transpose(2, 0, 1) for v in views])


class _Views(TorchDataset):
    def __init__(self, paths: Sequence[Path], image_size: int, tiles: int, resize: str = "stretch") -> None:
        self.paths, self.size, self.tiles, self.resize = list(paths), image_size, tiles, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | tuple[str, str]]:
        # A file damaged after the check is *returned* as (path, reason), not raised: an exception
        # raised in a DataLoader worker reaches the caller as a RuntimeError holding a traceback, so
        # the main process raises the same one-line BadFileError whatever the number of workers.
        try:
            # a large JPEG decodes at reduced scale, still >= the input size (per tile with tiles): the rule
            # prediction uses too (decoding.min_side)
            arr = decode_part(self.paths[i], "global", self.size, self.tiles)
            return i, preprocess(arr, self.size, self.tiles, self.resize)
        except BadFileError as exc:
            return i, (exc.path, exc.reason)
        except OSError as exc:
            return i, (str(self.paths[i]), f"cannot be read ({exc.strerror or exc}); was it changed after the check?")


def _collate(items: list) -> list:
    return items


def _digest(path: Path) -> str:
    try:
        return content_digest(path)
    except OSError as exc:
        raise BadFileError(path, f"cannot be read ({exc.strerror or exc}); was it changed after the check?") from None


def _settings(backbone: Backbone, image_size: int, tiles: int, resize: str = "stretch") -> dict:
    out = {"backbone": backbone.name, "weights_id": backbone.weights_id, "image_size": image_size,
           "tiles": tiles, "tile_overlap": TILE_OVERLAP, "preprocess": PREPROCESS_VERSION}
    if resize != "stretch":  # the stretch key is unchanged, so existing caches stay valid
        out["resize"] = resize
    return out


#: Shards carry ``{"format": "2", "sha256": arrays_digest(tensors)}`` in their safetensors metadata.
SHARD_FORMAT = "2"


def _read_shard(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a shard when it parses, carries the current format and its tensors match its SHA-256."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != SHARD_FORMAT:
                return None
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception:  # noqa: BLE001 - any parse failure is a damaged shard
        return None
    if meta.get("sha256") != arrays_digest(arrays):
        return None
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) > 1 or any(a.ndim != 2 for a in arrays.values()):
        return None
    return arrays


class _Cache:
    """Shards of ``{digest: features}`` in safetensors, one folder per settings key."""

    def __init__(self, root: Path | None, settings: dict) -> None:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = None if root is None else Path(root) / "embeddings" / key
        self.settings = settings
        self.data: dict[str, np.ndarray] = {}
        self.read_only_reason: str | None = None
        if self.folder is not None and self.folder.is_dir():
            # Nothing is written when reading: a read-only cache that holds everything is used as is.
            bad = []
            for shard in sorted(self.folder.glob("shard-*.safetensors")):
                arrays = _read_shard(shard)
                if arrays is None:  # damaged, or from before checksums: recomputed, never used
                    bad.append(shard)
                    try:
                        shard.unlink(missing_ok=True)
                    except OSError:
                        pass
                else:
                    self.data.update(arrays)
            if bad:
                import warnings
                warnings.warn(f"embedding cache {self.folder}: {len(bad)} shard(s) failed their SHA-256 check "
                              f"(damaged, or written without one), e.g. {bad[0].name}; their images are recomputed",
                              CacheWarning, stacklevel=3)

    def _prepare_write(self) -> bool:
        """Create the folder and its settings.json before the first shard; False (with a warning) if read-only."""
        if self.folder is None or self.read_only_reason is not None:
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / "settings.json").is_file():
                with atomic_write(self.folder / "settings.json", "w") as fh:
                    json.dump(self.settings, fh, indent=2)
            return True
        except OSError as exc:
            self._read_only(exc)
            return False

    def _read_only(self, exc: OSError) -> None:
        import warnings
        self.read_only_reason = exc.strerror or str(exc)
        warnings.warn(f"embedding cache {self.folder} cannot be written ({self.read_only_reason}); "
                      "new features are kept in memory only", CacheWarning, stacklevel=4)

    def get(self, digest: str) -> np.ndarray | None:
        return self.data.get(digest)

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        if not items:
            return
        self.data.update(items)
        if not self._prepare_write():
            return
        name = f"shard-{time.time_ns()}-{os.getpid()}.safetensors"
        arrays = {k: np.ascontiguousarray(v) for k, v in items.items()}
        try:
            with atomic_write(self.folder / name, "wb") as fh:  # a unique name: no other writer touches it
                fh.write(save(arrays, metadata={"format": SHARD_FORMAT, "sha256": arrays_digest(arrays)}))
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOSPC,
                                 getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise
            self._read_only(exc)  # a full disk too: the run goes on in memory, one line


def check_embed_settings(*, image_size: int = 224, tiles: int = 0, batch_size: int = 32,
                         workers: int | None = None) -> None:
    """Range-check the settings that size memory, before any work (one :class:`ConfigError` line)."""
    from .._limits import check_range
    from ..spec import check_setting

    check_setting("image_size", image_size)
    check_setting("tiles", tiles)
    check_range("batch_size", batch_size, 1, 4096)
    if workers is not None:
        check_range("workers", workers)


def embed_dataset(
    dataset: Dataset | Sequence[ImageRecord],
    *,
    backbone: str | Backbone = "efficientnet_lite0",
    weights: str | Path | None = None,
    image_size: int = 224,
    tiles: int = 0,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    engine: str = "auto",
    progress: bool = True,
    resize: str = "stretch",
) -> Embeddings:
    """Embed every record with a frozen backbone (cached).

    Parameters
    ----------
    dataset
        Records to embed (checked beforehand: a bad file raises ``BadFileError``).
    backbone
        Registered backbone name, any timm model name, or a ready :class:`Backbone`.
    image_size
        Square input size; the whole image is resized (not cropped).
    tiles
        0 for the whole image only; N ≥ 2 adds the max-pooled features of an N×N grid of
        overlapping crops (for small objects).
    cache_dir
        Cache folder; ``None`` disables the cache.
    workers
        DataLoader workers for decoding (default: 1 when more than 64 images, else 0).
    engine
        ``auto`` (ONNX when exact, else PyTorch), ``onnx`` or ``torch``.
    resize
        ``stretch`` (default) or ``keep-aspect`` (long side = ``image_size``, short side edge-padded).
    """
    records = list(dataset.records if isinstance(dataset, Dataset) else dataset)
    check_embed_settings(image_size=image_size, tiles=tiles, batch_size=batch_size, workers=workers)
    from ..spec import check_setting
    check_setting("resize", resize)
    bb = backbone if isinstance(backbone, Backbone) else create_backbone(backbone, weights=weights)
    settings = _settings(bb, image_size, tiles, resize)
    cache = _Cache(Path(cache_dir) if cache_dir else None, settings)
    digests = [_digest(r.path) for r in records]
    todo = sorted({d: i for i, d in reversed(list(enumerate(digests))) if cache.get(d) is None}.values())
    t0 = time.perf_counter()
    stats = {"images": len(records), "computed": len(todo), "from_cache": len(records) - len(todo)}
    if todo:
        eng = make_engine(bb, image_size, kind=engine, cache_dir=Path(cache_dir) if cache_dir else None)
        stats["engine"] = eng.name
        if workers is None:
            workers = 1 if len(todo) > 64 else 0
        views = _Views([records[i].path for i in todo], image_size, tiles, resize)
        per_image = 1 + tiles * tiles
        from .resolution import patch_batch_size
        step = max(1, patch_batch_size(image_size, batch_size) // per_image)  # bounded pixels per batch
        loader = DataLoader(views, batch_size=step, num_workers=workers, shuffle=False, collate_fn=_collate,
                            persistent_workers=False, prefetch_factor=4 if workers else None)
        bar = _progress(progress, len(todo))
        pending: dict[str, np.ndarray] = {}
        with bar:
            task = bar.add_task("embedding", total=len(todo)) if bar else None
            for items in loader:
                for _, v in items:
                    if isinstance(v, tuple):
                        raise BadFileError(v[0], v[1])
                idx = [i for i, _ in items]
                batch = np.stack([v for _, v in items])
                n = batch.shape[0]
                feats = eng(batch.reshape(n * per_image, *batch.shape[2:]))
                feats = feats.reshape(n, per_image, -1)
                for k, i in enumerate(idx):
                    pending[digests[todo[i]]] = feats[k]
                if len(pending) >= 256:
                    cache.put_many(pending)
                    pending = {}
                if bar:
                    bar.update(task, advance=n)
        cache.put_many(pending)
    stats["seconds"] = time.perf_counter() - t0
    stats["images_per_s"] = stats["computed"] / stats["seconds"] if stats["computed"] else None
    rows = np.stack([cache.get(d) for d in digests]).astype(np.float32)
    glob = rows[:, 0, :]
    tl = rows[:, 1:, :].max(axis=1) if tiles else None
    return Embeddings(glob, tl, [str(r.path) for r in records], settings, stats)


def embed_arrays(images: Sequence[np.ndarray], backbone: Backbone, *, image_size: int = 224, tiles: int = 0,
                 engine: str = "auto", cache_dir: Path | None = None, batch_size: int = 32,
                 resize: str = "stretch") -> Embeddings:
    """Embed in-memory (H, W, 3) uint8 images (e.g. synthesised minority images); not cached."""
    eng = make_engine(backbone, image_size, kind=engine, cache_dir=cache_dir)
    per_image = 1 + tiles * tiles
    out = []
    from .resolution import patch_batch_size
    step = max(1, patch_batch_size(image_size, batch_size) // per_image)  # bounded pixels per batch
    for s in range(0, len(images), step):
        batch = np.stack([preprocess(a, image_size, tiles, resize) for a in images[s:s + step]])
        n = batch.shape[0]
        out.append(eng(batch.reshape(n * per_image, *batch.shape[2:])).reshape(n, per_image, -1))
    rows = np.concatenate(out) if out else np.zeros((0, per_image, backbone.num_features), np.float32)
    return Embeddings(rows[:, 0], rows[:, 1:].max(axis=1) if tiles else None, [], _settings(backbone, image_size, tiles, resize))


def _progress(enabled: bool, total: int):
    from .._progress import progress_bar

    return progress_bar(enabled, rate="img/s")
