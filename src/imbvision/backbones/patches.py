"""Patch features: a grid of local descriptors per image from a frozen backbone's mid-level blocks.

Following PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly
Detection", CVPR 2022), the feature maps of two mid-level blocks (``layers``) are
each averaged over a 3×3 neighbourhood, the coarser map is upsampled (bilinear)
to the finer one's grid, and both are concatenated. The blocks are the last
ones timm's ``feature_info`` declares at each stride:

* ``s16+s32`` (default) – strides 16 and 32: at 224 px a 14×14 grid of
  432-dimensional patches for EfficientNet-Lite0 (112 + 320 channels);
* ``s8+s16`` – strides 8 and 16 (PatchCore's choice for ResNets): a 28×28 grid
  of 152-dimensional patches (40 + 112), finer heat maps.

``s16+s32`` is the default because it was clearly better on real defects
(Magnetic-tile, zero training positives, duplicate-grouped splits, seeds 0–2,
memory bank of every training negative's patch): normality AP 0.869, against
0.825 for the stride-16 block alone; with a 10% random bank, ``s8+s16`` reached
0.746/0.702 on seeds 0–1 and the stride-16 block alone 0.795/0.745 — the early
stride-8 block mostly adds texture noise on these tiles.
The network is truncated after the coarser block (the layers behind it are never
run) with timm's ``create_feature_extractor``.

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

import errno
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
from torch import nn
from torch.utils.data import DataLoader, Dataset as TorchDataset

from .._io import atomic_write
from ..data.checks import file_digest
from ..data.decode import load_image_and_size
from ..data.records import Dataset, ImageRecord
from ..errors import ConfigError
from ..notices import CacheWarning
from .engine import checked_onnx, module_digest
from .patch_geometry import RESIZE_MODES, _check_resize, canvas_view, grid_to_image, mask_to_grid
from .patch_geometry import valid_grid as _valid_grid
from .registry import Backbone, create_backbone

__all__ = ["RESIZE_MODES", "PATCH_LAYERS", "DEFAULT_PATCH_LAYERS", "PatchFeatures", "PatchNet", "patch_features", "patch_features_arrays",
           "canvas_view", "mask_to_grid", "grid_to_image", "PATCH_VERSION"]

#: Pairs of strides whose blocks make a patch descriptor (finer grid first).
PATCH_LAYERS = {"s16+s32": (16, 32), "s8+s16": (8, 16)}
DEFAULT_PATCH_LAYERS = "s16+s32"
#: Bundles saved before the choice existed used this pair.
LEGACY_PATCH_LAYERS = "s8+s16"
PATCH_VERSION = "patch-avg3-v3-aligned"  # v3: coarse map aligned on the fine cells' centres
#: Largest absolute difference allowed between the ONNX export and PyTorch.
EXPORT_TOLERANCE = 2e-3


# --------------------------------------------------------------------------- #
# settings (the geometry lives in patch_geometry.py)
# --------------------------------------------------------------------------- #
def _check_layers(layers: str) -> tuple[int, int]:
    if layers not in PATCH_LAYERS:
        raise ConfigError(f"patch layers {layers!r} invalid; valid: {', '.join(PATCH_LAYERS)}")
    return PATCH_LAYERS[layers]


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


def _layers(model: nn.Module, layers: str = DEFAULT_PATCH_LAYERS) -> tuple[tuple[str, int], tuple[str, int]]:
    """The last level at each of the two strides of ``layers`` as (module name, channels), finer first."""
    fine, coarse = _check_layers(layers)
    entries = _entries(model)
    a = [(m, c) for m, r, c in entries if r == fine]
    b = [(m, c) for m, r, c in entries if r == coarse]
    if not a or not b:
        raise ConfigError(f"backbone {type(model).__name__} does not declare stride-{fine} and stride-{coarse} "
                          "blocks (timm feature_info); patch heads need a timm CNN such as efficientnet_lite0")
    return a[-1], b[-1]


class PatchNet(nn.Module):
    """uint8 ``(N, 3, S, S)`` → float ``(N, C_fine + C_coarse, S/f, S/f)`` locally averaged patch features.

    ``f`` is the finer stride of ``layers`` (16 for ``s16+s32``, 8 for ``s8+s16``).
    """

    def __init__(self, backbone: Backbone, layers: str = DEFAULT_PATCH_LAYERS) -> None:
        super().__init__()
        from timm.models import create_feature_extractor

        (a, _), (b, _) = _layers(backbone.model, layers)
        self.body = create_feature_extractor(backbone.model, return_nodes={a: "s8", b: "s16"})
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(backbone.std).view(1, 3, 1, 1) * 255.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body((x.float() - self.mean) * self.inv_std)
        a = F.avg_pool2d(f["s8"], 3, stride=1, padding=1, count_include_pad=False)
        b = F.avg_pool2d(f["s16"], 3, stride=1, padding=1, count_include_pad=False)
        # The coarse cell j sits on canvas pixel 2s·j and the fine cell i on s·i (symmetric padding; see
        # patch_geometry), so fine cell i reads the coarse map at j = i/2: an edge-padded map resized with
        # align_corners=True from n+1 to 2n+1 cells has exactly that scale. (Plain bilinear resizing with
        # align_corners=False would read j = i/2 − 1/4 and shift the coarse half by a quarter cell.)
        hb, wb = b.shape[-2:]
        b = F.interpolate(F.pad(b, (0, 1, 0, 1), mode="replicate"), size=(2 * hb + 1, 2 * wb + 1), mode="bilinear",
                          align_corners=True)[..., :a.shape[-2], :a.shape[-1]]
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
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave idle CPU to the decoder
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0]
        return out.transpose(0, 2, 3, 1).astype(np.float32, copy=False)


def make_patch_engine(backbone: Backbone, image_size: int, *, kind: str = "auto", cache_dir: Path | None = None,
                      layers: str = DEFAULT_PATCH_LAYERS):
    """The truncated network as an engine: ONNX (exported once, checked against PyTorch) or PyTorch."""
    if kind not in ("auto", "onnx", "torch"):
        raise ConfigError(f"engine {kind!r} invalid; valid: auto, onnx, torch")
    net = PatchNet(backbone, layers).eval()
    torch_engine = _TorchPatchEngine(net)
    if kind == "torch":
        return torch_engine
    key = hashlib.sha256(f"{backbone.name}|{module_digest(backbone)}|{image_size}|{torch.__version__}|{PATCH_VERSION}"
                         f"|{layers}".encode()).hexdigest()
    from ..data.source_registry import cache_root
    folder = Path(cache_dir) if cache_dir else cache_root()  # --cache-dir, then IMBVISION_CACHE, then the default
    path = folder / "onnx" / f"patch-{layers.replace('+', '-')}-{backbone.name}-{image_size}-{key[:16]}.onnx"

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

    def compact(self) -> "PatchFeatures":
        """A copy holding only this set's rows, in memory (``rows`` becomes ``0..N-1``), for shipping to
        other processes or machines; the cache file may hold many more images."""
        return PatchFeatures(np.ascontiguousarray(self.store[self.rows]), np.arange(len(self.rows)), self.boxes.copy(),
                             self.sizes.copy(), self.image_size, dict(self.settings), self.stats,
                             None if self.global_ is None else np.ascontiguousarray(self.global_),
                             None if self.masks is None else list(self.masks))

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


def _settings(backbone: Backbone, image_size: int, resize: str, layers: str) -> dict:
    return {"backbone": backbone.name, "weights_id": backbone.weights_id, "image_size": image_size,
            "resize": resize, "patch": PATCH_VERSION, "layers": layers}


#: Format of ``index.json``: 2 adds the committed length (the commit marker) and a SHA-256 per row.
STORE_FORMAT = 2
_VERIFIED: set[tuple[str, int, str]] = set()  # (rows file, row, checksum) already checked in this process
_WRITE_FAULTS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS, errno.EACCES, errno.EPERM)


def _row_digest(buf: bytes | memoryview | np.ndarray) -> str:
    return hashlib.sha256(buf).hexdigest()


class _Store:
    """Append-only float16 rows in ``rows.f16`` plus ``index.json``, verified when read.

    ``index.json`` is ``{"format": 2, "length": L, "rows": {digest: [row, box, size, sha256]}}`` and is
    rewritten atomically *after* the rows it names are synced: ``L`` (bytes) is the commit marker, so
    bytes past it are a torn append (a kill or a full disk mid-write) and are cut off before the next
    append, which always starts at ``L`` (never at the end of a torn file). Each row's SHA-256 is checked
    the first time a process reads it (:meth:`verify`): a damaged row is recomputed, never used.

    A cache that cannot be written (read-only, full disk) keeps new rows in memory with one warning.
    Hand-written (not a library): no maintained library offers an append-only, memory-mappable array
    file with per-row checksums.
    """

    def __init__(self, root: Path, settings: dict, shape: tuple[int, int, int]) -> None:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(root) / "patches" / key
        self.shape = shape
        self.row_bytes = 2 * int(np.prod(shape))
        self.data, self.index_path, self.lock = self.folder / "rows.f16", self.folder / "index.json", self.folder / "lock"
        self.memory: dict[str, tuple[np.ndarray, list, list]] = {}  # rows kept in RAM when the cache is not writable
        self.read_only_reason: str | None = None
        try:  # nothing is rewritten on open: a read-only cache is read as is
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / "settings.json").is_file():
                with atomic_write(self.folder / "settings.json", "w") as fh:
                    json.dump({**settings, "row_shape": list(shape)}, fh, indent=2)
        except OSError as exc:
            self._cannot_write(exc)
        self.length, self.index = self._read_index()

    def _cannot_write(self, exc: OSError) -> None:
        if self.read_only_reason is None:
            self.read_only_reason = exc.strerror or str(exc)
            warnings.warn(f"patch-feature cache {self.folder} cannot be written ({self.read_only_reason}); new "
                          "features are kept in memory only", CacheWarning, stacklevel=3)

    def _file_rows(self) -> int:
        try:
            return self.data.stat().st_size // self.row_bytes
        except OSError:
            return 0

    def _read_index(self) -> tuple[int, dict]:
        """``(committed bytes, {digest: entry})``; anything unreadable or of another format counts as empty."""
        try:
            idx = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            return 0, {}
        if not isinstance(idx, dict) or idx.get("format") != STORE_FORMAT or not isinstance(idx.get("rows"), dict):
            return 0, {}  # an older, unverifiable store: rebuilt from the start
        length = idx.get("length")
        if not isinstance(length, int) or length < 0 or length % self.row_bytes:
            return 0, {}
        n = min(length // self.row_bytes, self._file_rows())  # rows lost from the file are recomputed
        rows = {}
        for k, v in idx["rows"].items():
            if (isinstance(v, list) and len(v) == 4 and isinstance(v[0], int) and 0 <= v[0] < n
                    and isinstance(v[3], str) and len(v[1]) == 4 and len(v[2]) == 2):
                rows[k] = v
        return n * self.row_bytes, rows

    def append(self, items: dict[str, tuple[np.ndarray, tuple, tuple]]) -> None:
        """Append rows after the committed length, sync them, then commit the index (under the entry's lock)."""
        if not items:
            return
        if self.read_only_reason is None:
            try:
                self._append_locked(items)
                return
            except OSError as exc:
                if exc.errno not in _WRITE_FAULTS:
                    raise
                self._cannot_write(exc)
        for k, (feat, box, size) in items.items():
            self.memory[k] = (np.ascontiguousarray(feat, dtype=np.float16), list(map(int, box)), list(map(int, size)))

    def _append_locked(self, items: dict[str, tuple[np.ndarray, tuple, tuple]]) -> None:
        with open(self.lock, "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            length, index = self._read_index()  # another writer may have committed rows meanwhile
            if not self.data.exists():
                self.data.touch()
            with open(self.data, "r+b") as fh:
                try:
                    fh.truncate(length)  # cut a torn tail: the next row starts on a row boundary
                    fh.seek(length)
                    n = length // self.row_bytes
                    new = {}
                    for k, (feat, box, size) in items.items():
                        buf = np.ascontiguousarray(feat, dtype=np.float16).tobytes()
                        fh.write(buf)
                        new[k] = [n, list(map(int, box)), list(map(int, size)), _row_digest(buf)]
                        n += 1
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError:
                    try:  # a full disk mid-append: leave no partial row behind
                        fh.truncate(length)
                    except OSError:
                        pass
                    raise
            index.update(new)
            with atomic_write(self.index_path, "w") as fh:  # the commit: these rows now exist
                json.dump({"format": STORE_FORMAT, "length": n * self.row_bytes, "rows": index}, fh)
            # Rows this process found damaged stay out until recomputed (they come back through ``new``).
            self.length, self.index = n * self.row_bytes, {k: v for k, v in index.items() if k in self.index or k in new}

    def has(self, digest: str) -> bool:
        return digest in self.index or digest in self.memory

    def verify(self, digests: Sequence[str]) -> list[str]:
        """Check the SHA-256 of the rows of ``digests`` (once per process); damaged ones leave the index.

        Returns the digests whose rows were damaged (to recompute).
        """
        mm = self.memmap()
        flat = mm.reshape(len(mm), -1) if len(mm) else mm
        bad = []
        for d in dict.fromkeys(digests):
            e = self.index.get(d)
            if e is None:
                continue
            tag = (str(self.data), int(e[0]), e[3])
            if tag in _VERIFIED:
                continue
            if e[0] >= len(flat) or _row_digest(np.ascontiguousarray(flat[e[0]]).data) != e[3]:
                bad.append(d)
                del self.index[d]
            else:
                _VERIFIED.add(tag)
        if bad:
            warnings.warn(f"patch-feature cache {self.data}: {len(bad)} row(s) failed their SHA-256 check "
                          "(damaged on disk); recomputing them", CacheWarning, stacklevel=3)
        return bad

    def memmap(self) -> np.ndarray:
        """The committed rows, memory-mapped read-only (bytes past the commit marker are never read)."""
        n = min(self.length // self.row_bytes, self._file_rows())
        if n == 0:
            return np.zeros((0, *self.shape), np.float16)
        return np.memmap(self.data, dtype=np.float16, mode="r", shape=(n, *self.shape))

    def rows_for(self, digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(store, rows, boxes, sizes)`` for ``digests``: the memory map, or an in-memory copy when some rows
        live in memory only (a cache that could not be written)."""
        if not any(d in self.memory for d in digests):
            entries = [self.index[d] for d in digests]
            store = self.memmap()
            rows = np.array([e[0] for e in entries], dtype=np.int64)
        else:
            mm, uniq = self.memmap(), list(dict.fromkeys(digests))
            pos = {d: i for i, d in enumerate(uniq)}
            store = np.stack([self.memory[d][0] if d in self.memory else np.asarray(mm[self.index[d][0]])
                              for d in uniq]) if uniq else np.zeros((0, *self.shape), np.float16)
            entries = [self.memory[d][1:] if d in self.memory else self.index[d][1:3] for d in digests]
            entries = [[pos[d], *e] for d, e in zip(digests, entries)]
            rows = np.array([e[0] for e in entries], dtype=np.int64)
        boxes = np.array([e[1] for e in entries], dtype=np.int64).reshape(-1, 4)
        sizes = np.array([e[2] for e in entries], dtype=np.int64).reshape(-1, 2)
        return store, rows, boxes, sizes


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
    """Decode (checked); a JPEG far larger than needed decodes at a reduced scale (Pillow's draft mode)."""
    return load_image_and_size(path, min_side=size)


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
    layers: str = DEFAULT_PATCH_LAYERS,
) -> PatchFeatures:
    """Patch features of every record (cached on disk, float16, memory-mapped).

    Parameters
    ----------
    image_size
        Canvas side ``S`` in pixels, a multiple of 32 in 64..1024; the grid is ``S/f × S/f`` for the finer
        stride ``f`` of ``layers``.
    resize
        ``stretch`` or ``keep-aspect`` (see the module docstring for the padding rule).
    cache_dir
        Cache root (``patches/<settings key>/`` below it); ``None`` uses a temporary folder.
    engine
        ``auto`` (ONNX when its export matches PyTorch, else PyTorch), ``onnx`` or ``torch``.
    layers
        ``s16+s32`` (default) or ``s8+s16`` (see the module docstring).

    Returns
    -------
    PatchFeatures
        ``(N, S/f, S/f, C)`` float16 rows plus each image's box and size.

    Raises
    ------
    ConfigError
        For an invalid ``image_size``, ``resize`` or ``layers``, or a backbone without those blocks.
    """
    import tempfile

    records = list(dataset.records if isinstance(dataset, Dataset) else dataset)
    _check_resize(resize)
    _check_layers(layers)
    if image_size % 32 or not 64 <= image_size <= 1024:
        raise ConfigError(f"image_size {image_size} invalid for patch features; use a multiple of 32 in 64..1024")
    bb = backbone if isinstance(backbone, Backbone) else create_backbone(backbone, weights=weights)
    settings = _settings(bb, image_size, resize, layers)
    root = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="imbvision-patches-"))
    net_dim = _probe_dim(bb, image_size, layers)
    store = _Store(root, settings, net_dim)
    digests = [file_digest(r.path) for r in records]
    store.verify(digests)  # a row that fails its checksum is recomputed below, never used
    todo = sorted({d: i for i, d in reversed(list(enumerate(digests))) if not store.has(d)}.values())
    t0 = time.perf_counter()
    stats = {"images": len(records), "computed": len(todo), "from_cache": len(records) - len(todo)}
    if todo:
        eng = make_patch_engine(bb, image_size, cache_dir=root, kind=engine, layers=layers)
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
    arr, rows, boxes, sizes = store.rows_for(digests)
    return PatchFeatures(arr, rows, boxes, sizes, image_size, settings, stats)


def _probe_dim(bb: Backbone, image_size: int, layers: str) -> tuple[int, int, int]:
    """Row shape ``(S/f, S/f, C_fine + C_coarse)`` of the patch features."""
    (_, ca), (_, cb) = _layers(bb.model, layers)
    g = image_size // PATCH_LAYERS[layers][0]
    return g, g, ca + cb


def patch_features_arrays(images: Sequence[np.ndarray], backbone: Backbone, *, image_size: int = 224,
                          resize: str = "stretch", engine: str = "auto", cache_dir: Path | None = None,
                          batch_size: int = 32, layers: str = DEFAULT_PATCH_LAYERS) -> PatchFeatures:
    """Patch features of in-memory ``(H, W, 3)`` uint8 images (not cached; held in RAM)."""
    _check_resize(resize)
    _check_layers(layers)
    eng = make_patch_engine(backbone, image_size, kind=engine, cache_dir=cache_dir, layers=layers)
    feats, boxes, sizes = [], [], []
    for s in range(0, len(images), batch_size):
        views = []
        for a in images[s:s + batch_size]:
            v, box = canvas_view(np.asarray(a, dtype=np.uint8), image_size, resize)
            views.append(v)
            boxes.append(box)
            sizes.append((a.shape[1], a.shape[0]))
        feats.append(eng(np.stack(views)).astype(np.float16))
    shape = _probe_dim(backbone, image_size, layers)
    store = np.concatenate(feats) if feats else np.zeros((0, *shape), np.float16)
    return PatchFeatures(store, np.arange(len(store)), np.asarray(boxes, np.int64).reshape(-1, 4),
                         np.asarray(sizes, np.int64).reshape(-1, 2), image_size,
                         _settings(backbone, image_size, resize, layers))
