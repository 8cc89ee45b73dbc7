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

import hashlib
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
from ..data.records import Dataset, ImageRecord
from ..errors import ConfigError
from .decoding import decode_part_and_size
from .engine import checked_onnx, module_digest
from .patch_store import PatchStore as _Store
from .._choices import DEFAULT_PATCH_LAYERS, LEGACY_PATCH_LAYERS, PATCH_LAYERS  # noqa: F401 - re-exported
from .patch_geometry import RESIZE_MODES, _check_resize, canvas_view, grid_to_image, mask_to_grid
from .patch_geometry import measure_block_centres, resample_matrix
from .patch_geometry import valid_grid as _valid_grid
from .registry import Backbone, create_backbone
from .resolution import check_patch_budget, patch_batch_size

__all__ = ["RESIZE_MODES", "PATCH_LAYERS", "DEFAULT_PATCH_LAYERS", "PatchFeatures", "PatchNet", "patch_features", "patch_features_arrays",
           "canvas_view", "mask_to_grid", "grid_to_image", "PATCH_VERSION"]

PATCH_VERSION = "patch-avg3-v4-centred"  # v4: each block resampled by its measured effective centre
#: Largest absolute difference allowed between the ONNX export and PyTorch.
EXPORT_TOLERANCE = 2e-3


# --------------------------------------------------------------------------- #
# settings (the geometry lives in patch_geometry.py)
# --------------------------------------------------------------------------- #
def _check_layers(layers: str) -> tuple[int, int]:
    from ..spec import check_setting

    return PATCH_LAYERS[check_setting("patch_layers", layers)]


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


#: Measured block centres per (backbone parameters digest, layers): measured once per process.
_CENTRES: dict[tuple[str, str], tuple[tuple[float, float], tuple[float, float]]] = {}


class PatchNet(nn.Module):
    """uint8 ``(N, 3, S, S)`` → float ``(N, C_fine + C_coarse, S/f, S/f)`` locally averaged patch features.

    ``f`` is the finer stride of ``layers`` (16 for ``s16+s32``, 8 for ``s8+s16``). Output cell ``i``
    is centred on canvas pixel ``f·i``: each block's map is resampled (bilinear, edges held) by its
    measured effective centre (:func:`~imbvision.backbones.patch_geometry.measure_block_centres`), the
    coarse one onto the fine grid at the same time.

    Parameters
    ----------
    centres
        ``((dy, dx) fine, (dy, dx) coarse)`` offsets in canvas pixels; ``None`` measures them (once per
        process and backbone; about 0.3 s).
    """

    def __init__(self, backbone: Backbone, layers: str = DEFAULT_PATCH_LAYERS,
                 centres: tuple[tuple[float, float], tuple[float, float]] | None = None) -> None:
        super().__init__()
        from timm.models import create_feature_extractor

        (a, _), (b, _) = _layers(backbone.model, layers)
        self.strides = PATCH_LAYERS[layers]
        self.body = create_feature_extractor(backbone.model, return_nodes={a: "s8", b: "s16"})
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(backbone.std).view(1, 3, 1, 1) * 255.0))
        if centres is None:
            key = (module_digest(backbone), layers)
            if key not in _CENTRES:
                was = self.training
                self.eval()
                _CENTRES[key] = measure_block_centres(self._maps, self.strides)  # type: ignore[assignment]
                self.train(was)
            centres = _CENTRES[key]
        self.centres = tuple((float(dy), float(dx)) for dy, dx in centres)
        self._mats: dict[tuple[int, ...], tuple[torch.Tensor, ...]] = {}

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.body((x.float() - self.mean) * self.inv_std)
        return [f["s8"], f["s16"]]

    def _matrices(self, fine: tuple[int, int], coarse: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Row and column resampling matrices. A blob at pixel ``c`` moves cell ``j`` of a stride-``s`` map most
        where ``s·j = c + dy``: cell ``j`` sees pixel ``s·j − dy``. So output cell ``i`` reads the fine map at
        ``i + dy_f/f`` and the coarse one at ``(f·i + dy_c)/(2f)`` (likewise across): both see pixel ``f·i``."""
        key = (*fine, *coarse)
        if key not in self._mats:
            f = float(self.strides[0])
            (fy, fx), (cy, cx) = self.centres
            gh, gw = fine
            self._mats[key] = tuple(torch.from_numpy(m) for m in (
                resample_matrix(gh, fine[0], fy / f, 1.0), resample_matrix(gw, fine[1], fx / f, 1.0).T.copy(),
                resample_matrix(gh, coarse[0], cy / (2 * f), 0.5),
                resample_matrix(gw, coarse[1], cx / (2 * f), 0.5).T.copy()))
        return self._mats[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fa, fb = self._maps(x)
        a = F.avg_pool2d(fa, 3, stride=1, padding=1, count_include_pad=False)
        b = F.avg_pool2d(fb, 3, stride=1, padding=1, count_include_pad=False)
        # grid sizes are fixed by the canvas size (constants in an ONNX export; only the batch is dynamic)
        sizes = tuple(int(v) for v in a.shape[-2:]), tuple(int(v) for v in b.shape[-2:])
        ah, aw, bh, bw = (m.to(a.dtype) for m in self._matrices(*sizes))
        return torch.cat([ah @ a @ aw, bh @ b @ bw], 1)


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
        from .engine import onnxruntime

        ort = onnxruntime()  # telemetry off (see there)

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # No memory arena: a session kept for the process (engine_once) holds its weights, not its largest batch
        so.enable_cpu_mem_arena = False
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave idle CPU to the decoder
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.path = Path(path)  # the verified export (engine_once re-verifies it when the file changes)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0]
        return out.transpose(0, 2, 3, 1).astype(np.float32, copy=False)


def make_patch_engine(backbone: Backbone, image_size: int, *, kind: str = "auto", cache_dir: Path | None = None,
                      layers: str = DEFAULT_PATCH_LAYERS):
    """:func:`build_patch_engine`, once per process for each backbone and setting (:func:`~.engine.engine_once`)."""
    from ..data.source_registry import cache_root
    from .engine import engine_once

    folder = Path(cache_dir) if cache_dir else cache_root()
    return engine_once(backbone.model, ("patches", image_size, kind, str(folder), layers),
                       lambda: build_patch_engine(backbone, image_size, kind=kind, cache_dir=folder, layers=layers))


def build_patch_engine(backbone: Backbone, image_size: int, *, kind: str = "auto", cache_dir: Path | None = None,
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
    #: ``(N,)`` group of each image (its duplicate set or group, see ``split_units``), or ``None``.
    groups: np.ndarray | None = None

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
                             None if self.masks is None else [self.masks[int(i)] for i in idx],
                             None if self.groups is None else self.groups[idx])

    def compact(self) -> "PatchFeatures":
        """A copy holding only this set's rows, in memory (``rows`` becomes ``0..N-1``), for shipping to
        other processes or machines; the cache file may hold many more images."""
        return PatchFeatures(np.ascontiguousarray(self.store[self.rows]), np.arange(len(self.rows)), self.boxes.copy(),
                             self.sizes.copy(), self.image_size, dict(self.settings), self.stats,
                             None if self.global_ is None else np.ascontiguousarray(self.global_),
                             None if self.masks is None else list(self.masks),
                             None if self.groups is None else np.array(self.groups))

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
    """Decode (checked); a JPEG far larger than needed decodes at a reduced scale (Pillow's draft mode), by the
    rule prediction uses too (:func:`~imbvision.backbones.decoding.min_side`, part ``"patches"``)."""
    return decode_part_and_size(path, "patches", size)


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
    batch_size = patch_batch_size(image_size, batch_size)  # as many pixels per batch as 32 images of 224 px
    if todo:  # before any work: the cache and one batch must fit (one line naming --image-size and the estimate)
        check_patch_budget(len(todo), image_size, net_dim[:2], net_dim[2], batch_size, root)
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
    batch_size = patch_batch_size(image_size, batch_size)
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
