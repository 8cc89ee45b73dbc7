"""The resolution policy: the input scale of the features, chosen from the images' own sizes.

A frozen backbone sees every image on an ``S × S`` canvas. At the historical 224 px a
500×1250 px image is shrunk 5.6 times along its long side, and a crack two pixels wide
falls inside a fraction of one 16-px patch. The policy (used whenever ``image_size`` or
``resize`` is left unset, i.e. ``None``) looks at the images first:

* ``L`` = median long side and ``A`` = median aspect (long / short side) of the images after
  EXIF orientation, read from the file headers (no pixel is decoded) of up to
  :data:`SAMPLE_IMAGES` images spread evenly over the dataset;
* ``image_size`` = ``L × NATIVE_FRACTION`` rounded up to a multiple of 32 and clamped to
  ``MIN_SIDE .. MAX_SIDE`` (224..448): an image is seen at no less than half its native
  scale, never enlarged beyond it, and never on a canvas above 448 px (the bound keeps the
  cost of a patch feature grid at 4× that of 224 px);
* ``resize`` = ``keep-aspect`` when ``A >= KEEP_ASPECT_FROM`` (1.5: tall or wide images keep
  their aspect on the canvas, short side edge-padded), else ``stretch``.

So Magnetic-tile (``L`` ≈ 359 px, ``A`` ≈ 1.4) stays at 224 px ``stretch`` (448 px did not help
there: its images are close to that scale already), while 500×1250 px images get 448 px
``keep-aspect`` and 1024-px photos 448 px ``stretch``. The numbers were chosen on validation
splits (``benchmarks/bench_resolution.py``; seeds and figures in its JSON and in the docs).
An explicit ``image_size`` or ``resize`` overrides its half of the rule. The chosen values and
the inputs of the rule are recorded (:meth:`Resolution.to_dict`) in the run's ``config.json``,
the compare folder's ``config.json`` and the saved model's meta; a saved model is always read
back with its recorded ``image_size`` and ``resize``, never with the rule.

Fine-tuning is not covered: ``--mode finetune`` trains on a square 224-px stretched view unless
``--image-size`` is given.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["Resolution", "resolve_resolution", "with_resolution", "choose_resolution", "header_size", "DEFAULT_IMAGE_SIZE",
           "MIN_SIDE", "MAX_SIDE", "NATIVE_FRACTION", "KEEP_ASPECT_FROM", "POLICY", "check_patch_budget",
           "patch_batch_size"]

#: Canvas side when no policy applies (fine-tuning, near-duplicate grouping): the historical default.
DEFAULT_IMAGE_SIZE = 224
MIN_SIDE = 224
MAX_SIDE = 448
NATIVE_FRACTION = 0.5
KEEP_ASPECT_FROM = 1.5
SAMPLE_IMAGES = 512
#: Name of the rule (recorded; a different rule is a different name).
POLICY = "native-half-224-448-aspect1.5"
#: Pixels per engine batch at which memory was measured (32 images of 224 px).
_BATCH_PIXELS = 32 * 224 * 224


@dataclass(frozen=True)
class Resolution:
    """The resolved input scale of a run and why.

    Attributes
    ----------
    image_size
        Canvas side ``S`` in pixels (a multiple of 32).
    resize
        ``stretch`` or ``keep-aspect``.
    source
        ``{"image_size": "policy" | "given", "resize": "policy" | "given"}``.
    policy
        :data:`POLICY` when either half came from the rule, else ``None``.
    median_long_side, median_aspect, images_read
        The rule's inputs (``None`` when nothing was read).
    """

    image_size: int
    resize: str
    source: dict
    policy: str | None = None
    median_long_side: float | None = None
    median_aspect: float | None = None
    images_read: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def header_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file after EXIF orientation, from its header (no decoding).

    Raises
    ------
    BadFileError
        The file cannot be opened as an image.
    """
    from PIL import Image

    from ..errors import BadFileError

    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                turned = im.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap the sides
            except Exception:  # noqa: BLE001 - a broken EXIF block: sides as stored (as decode does)
                turned = False
    except Exception as exc:  # noqa: BLE001 - any failure to open is a bad file for the user
        raise BadFileError(path, f"cannot read the image size ({exc})") from None
    return (h, w) if turned else (w, h)


def choose_resolution(sizes: np.ndarray) -> tuple[int, str, float, float]:
    """The rule on ``(N, 2)`` image ``(width, height)`` sizes → ``(image_size, resize, L, A)``.

    ``L`` is the median long side (px), ``A`` the median aspect (long / short); see the module docstring.
    """
    s = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if len(s) == 0:
        return DEFAULT_IMAGE_SIZE, "stretch", float("nan"), float("nan")
    long_side, short_side = s.max(axis=1), np.maximum(s.min(axis=1), 1.0)
    L, A = float(np.median(long_side)), float(np.median(long_side / short_side))
    size = int(min(MAX_SIDE, max(MIN_SIDE, 32 * math.ceil(L * NATIVE_FRACTION / 32))))
    return size, ("keep-aspect" if A >= KEEP_ASPECT_FROM else "stretch"), L, A


def resolve_resolution(paths: Sequence[str | Path], image_size: int | None = None,
                       resize: str | None = None) -> Resolution:
    """Fill what is unset (``None``) of ``image_size`` and ``resize`` by the policy.

    Parameters
    ----------
    paths
        The dataset's image files (already checked); up to :data:`SAMPLE_IMAGES` of them, evenly
        spaced in the given order, have their headers read.
    image_size, resize
        Given values (kept as they are) or ``None`` (chosen by the rule).

    Returns
    -------
    Resolution
    """
    if image_size is not None and resize is not None:
        return Resolution(int(image_size), resize, {"image_size": "given", "resize": "given"})
    paths = list(paths)
    pick = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), SAMPLE_IMAGES)).round().astype(int)) \
        if paths else np.zeros(0, int)
    sizes = np.array([header_size(paths[i]) for i in pick], dtype=np.float64).reshape(-1, 2)
    size, mode, L, A = choose_resolution(sizes)
    return Resolution(int(image_size) if image_size is not None else size, resize if resize is not None else mode,
                      {"image_size": "given" if image_size is not None else "policy",
                       "resize": "given" if resize is not None else "policy"},
                      POLICY, round(L, 1) if len(sizes) else None, round(A, 3) if len(sizes) else None, len(sizes))


def patch_batch_size(image_size: int, batch_size: int = 32) -> int:
    """Images per engine batch at canvas side ``image_size``: ``batch_size`` at 224 px and fewer above
    it, so that a batch holds no more pixels than 32 images of 224 px (bounded memory)."""
    return max(1, min(int(batch_size), _BATCH_PIXELS // (int(image_size) ** 2)))


def _available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of ``/proc/meminfo``), or ``None`` when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


#: Peak bytes of engine memory per canvas pixel of a batch: the patch engine of EfficientNet-Lite0 raised
#: peak RSS by 244 bytes/pixel (PyTorch) and 211 (ONNX Runtime) on a batch of 8 at 448 px; about twice
#: that is assumed (wider backbones, the global engine's later blocks, allocator slack).
_ENGINE_BYTES_PER_PIXEL = 520


def check_patch_budget(n_images: int, image_size: int, grid: tuple[int, int], dim: int, batch: int,
                       cache_dir: str | Path, *, setting: str = "--image-size") -> dict:
    """Refuse a patch-feature resolution that cannot fit, before any work; returns the estimates.

    Two estimates: the float16 feature cache of ``n_images`` images (``grid`` cells of ``dim``
    values each, 2 bytes a value) against the free disk space of ``cache_dir``, and one engine
    batch's activations against the memory available now.

    Raises
    ------
    ConfigError
        Naming ``setting``, its value, the estimate and what is available.
    """
    cells = int(grid[0]) * int(grid[1])
    cache_bytes = int(n_images) * cells * int(dim) * 2
    engine_bytes = int(batch) * int(image_size) ** 2 * _ENGINE_BYTES_PER_PIXEL
    root = Path(cache_dir)
    while not root.exists() and root != root.parent:
        root = root.parent
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        free = None
    if free is not None and cache_bytes > free:
        raise ConfigError(f"{setting} {image_size}: the patch features of {n_images} images need about "
                          f"{cache_bytes / 1e9:.1f} GB in the cache folder {cache_dir}, which has {free / 1e9:.1f} GB "
                          "free; use a smaller size (or leave it unset for the resolution policy) or --cache-dir "
                          "on a larger disk")
    avail = _available_memory()
    if avail is not None and engine_bytes > 0.8 * avail:
        raise ConfigError(f"{setting} {image_size}: one batch of {batch} image(s) needs about {engine_bytes / 1e9:.1f} GB "
                          f"of memory for the backbone, {avail / 1e9:.1f} GB is available; use a smaller size "
                          "(or leave it unset for the resolution policy)")
    return {"cache_bytes": cache_bytes, "engine_batch_bytes": engine_bytes, "disk_free_bytes": free,
            "memory_available_bytes": avail}


def with_resolution(spec: Any, paths: Sequence[str | Path], *, policy: bool = True) -> tuple[Any, Resolution]:
    """A copy of the run specification ``spec`` (:class:`~imbvision.spec.RunSpec`) with ``image_size`` and
    ``resize`` filled (given values kept), and the :class:`Resolution` saying how.

    ``policy=False`` fills them with 224 px ``stretch`` (fine-tuning) instead of reading the images ``paths``.
    """
    if policy:
        res = resolve_resolution(paths, spec.image_size, spec.resize)
    else:
        res = Resolution(spec.image_size or DEFAULT_IMAGE_SIZE, spec.resize or "stretch",
                         {"image_size": "given" if spec.image_size else "default",
                          "resize": "given" if spec.resize else "default"})
    return spec.replace(image_size=res.image_size, resize=res.resize), res
