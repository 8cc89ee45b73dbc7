"""The embedded demo data: a textured surface with a rare small object.

Each image is a procedural surface (smooth shading, oriented grain, speckle,
faint distractor marks in every image); in a chosen fraction of images one
small object -- a blob, a scratch or a spot of varied size, contrast, polarity
and position -- is added, and its exact mask is saved. Everything is
deterministic by seed. Written by hand: no library makes such a set.

``demo-tall`` (:data:`TALL_SPEC`) is the same surface at 500×1250 px (width × height) with
thin scratches only (1–3 px wide, 15–40% of the short side long, well under 1% of the
image): small objects on tall images, which a 224-px square view squashes away.

Safe under concurrency: a set is generated into a unique temporary folder and
renamed into place once, under a file lock (``filelock``), so two processes
asking for the same set at once generate it once and neither ever sees a
half-made or deleted folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .._csv import csv_text
from .._progress import track
from ..errors import ConfigError, DataError
from .records import Dataset
from .source_registry import cache_root, register_source

__all__ = ["DemoSpec", "TALL_SPEC", "make_surface", "make_object", "generate_demo_dataset", "ensure_demo_dataset",
           "render_demo_image", "demo_folder", "demo_source"]

KINDS = ("blob", "scratch", "spot")


@dataclass(frozen=True)
class DemoSpec:
    """Size of the demo set: ``n`` images, ``positive_rate`` with the object, ``seed``.

    ``variation`` below 1 makes many distinct but near-identical objects: every surface is
    ``(1 - variation)`` of one shared surface plus ``variation`` of its own (the same part
    photographed the same way), which chains look-alike links (tests of duplicate grouping).
    ``size`` is the image width (and height, when ``height`` is 0) in pixels; ``height`` > 0
    makes tall (or wide) images; ``kinds`` are the object kinds drawn from (``KINDS``).
    """

    n: int = 600
    positive_rate: float = 0.05
    seed: int = 0
    size: int = 128
    variation: float = 1.0
    height: int = 0
    kinds: tuple[str, ...] = KINDS

    def __post_init__(self) -> None:
        if self.n < 10:
            raise ConfigError(f"demo n={self.n} too small; use at least 10 images")
        if self.n > 100_000:  # the set is written to disk: bound it
            raise ConfigError(f"demo n={self.n} invalid; use at most 100000 images")
        if not 0 < self.positive_rate < 1:
            raise ConfigError(f"demo positive_rate={self.positive_rate} invalid; use a value in (0, 1)")
        if self.seed < 0:
            raise ConfigError(f"demo seed={self.seed} invalid; use a seed >= 0")
        if self.size < 32:
            raise ConfigError(f"demo size={self.size} too small; use at least 32 px")
        if not 0 < self.variation <= 1:
            raise ConfigError(f"demo variation={self.variation} invalid; use a value in (0, 1] (1: every surface its own)")
        if self.height and not 32 <= self.height <= 4096:
            raise ConfigError(f"demo height={self.height} invalid; use 0 (square) or 32..4096 px")
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ConfigError(f"demo kinds={self.kinds!r} invalid; use a non-empty selection of {', '.join(KINDS)}")
        if self.size > 1024:  # n images of size² pixels are written to disk: bound it
            raise ConfigError(f"demo size={self.size} too large; use at most 1024 px")

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of every image, pixels."""
        return (self.height or self.size, self.size)

    @property
    def n_positive(self) -> int:
        """How many images carry the object (at least 3, so every split can hold one)."""
        return max(3, int(round(self.n * self.positive_rate)))


#: The tall demo set (``demo-tall`` source): 500×1250 px, thin scratches only, 10% positives.
TALL_SPEC = DemoSpec(n=300, positive_rate=0.1, seed=0, size=500, height=1250, kinds=("scratch",))


def make_surface(rng: np.random.Generator, size: int, height: int = 0) -> np.ndarray:
    """A grey-level textured surface in [0, 1] with distractor marks, ``(height or size, size)``."""
    if height and height != size:
        return _make_rect_surface(rng, height, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(0.35, 0.65)
    shade = rng.normal(0, 0.06) * (xx - 0.5) + rng.normal(0, 0.06) * (yy - 0.5)
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), sigma=size / 10)
    smooth = smooth / (smooth.std() + 1e-8) * rng.uniform(0.02, 0.05)
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(8, 20)
    grain = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 6.3))
    grain *= rng.uniform(0.005, 0.025)
    speckle = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), sigma=0.8) * rng.uniform(0.02, 0.045)
    img = base + shade + smooth + grain + speckle
    # Distractors in every image: faint pits and a soft smudge, so "any mark" is not "the object".
    for _ in range(rng.integers(2, 7)):
        cy, cx = rng.integers(0, size, 2)
        r = rng.uniform(0.8, 1.8)
        img -= rng.uniform(0.02, 0.06) * np.exp(-(((yy * size - cy) ** 2 + (xx * size - cx) ** 2) / (2 * r * r)))
    if rng.random() < 0.6:
        cy, cx = rng.integers(0, size, 2)
        r = rng.uniform(8, 18)
        img += rng.choice([-1, 1]) * rng.uniform(0.01, 0.03) * np.exp(
            -(((yy * size - cy) ** 2 + (xx * size - cx) ** 2) / (2 * r * r)))
    return img.astype(np.float32)


def _make_rect_surface(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """:func:`make_surface` for a non-square ``(h, w)`` image (lengths scaled by the short side; the
    smooth field is drawn at 1/8 scale and enlarged, so a large image stays cheap to render)."""
    short = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / short
    base = rng.uniform(0.35, 0.65)
    shade = (rng.normal(0, 0.06) * (xx - xx.mean()) + rng.normal(0, 0.06) * (yy - yy.mean())) * short / max(h, w)
    lo = rng.normal(0, 1, (max(1, h // 8), max(1, w // 8)))
    smooth = ndimage.zoom(ndimage.gaussian_filter(lo, sigma=short / 80), (h / lo.shape[0], w / lo.shape[1]), order=1)
    smooth = smooth / (smooth.std() + 1e-8) * rng.uniform(0.02, 0.05)
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(8, 20)
    grain = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 6.3))
    grain *= rng.uniform(0.005, 0.025)
    speckle = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), sigma=0.8) * rng.uniform(0.02, 0.045)
    img = base + shade + smooth + grain + speckle
    area = h * w / short ** 2  # as many distractors per unit area as the square demo
    for _ in range(int(rng.integers(2, 7) * area)):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = rng.uniform(0.8, 1.8) * short / 128
        img -= rng.uniform(0.02, 0.06) * np.exp(-(((yy * short - cy) ** 2 + (xx * short - cx) ** 2) / (2 * r * r)))
    for _ in range(int(area)):
        if rng.random() < 0.6:
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            r = rng.uniform(8, 18) * short / 128
            img += rng.choice([-1, 1]) * rng.uniform(0.01, 0.03) * np.exp(
                -(((yy * short - cy) ** 2 + (xx * short - cx) ** 2) / (2 * r * r)))
    return img.astype(np.float32)


def make_object(rng: np.random.Generator, size: int, height: int = 0,
                kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, np.ndarray, str]:
    """An additive object image (signed) and its boolean mask, ``(height or size, size)``; the object
    lies inside the frame. Object sizes are in pixels (a tall image's scratch is as thin as the demo's;
    its length scales with the short side)."""
    kind = kinds[int(rng.integers(0, len(kinds)))]
    h, w = (height or size), size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    amp = rng.uniform(0.05, 0.16) * rng.choice([-1.0, 1.0])
    if h == w:
        margin = size // 8
        cy, cx = rng.uniform(margin, size - margin, 2)
    else:
        cy, cx = rng.uniform(h // 8, h - h // 8), rng.uniform(w // 8, w - w // 8)
        size = min(h, w)
    if kind == "blob":
        a, b = rng.uniform(3, 9, 2)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        prof = np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2))
    elif kind == "scratch":
        length = rng.uniform(size * 0.15, size * 0.4)
        width = rng.uniform(0.6, 1.4)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        along = np.clip(1 - (np.abs(u) / (length / 2)) ** 4, 0, 1)
        prof = np.exp(-0.5 * (v / width) ** 2) * along
        amp *= 1.3
    else:  # spot: small, sharp, stronger
        r = rng.uniform(1.5, 3.5)
        prof = 1 / (1 + np.exp(((np.hypot(xx - cx, yy - cy)) - r) * 2.5))
        amp *= 1.4
    mask = prof > 0.5
    return (amp * prof).astype(np.float32), mask, kind


def render_demo_image(spec: DemoSpec, index: int, positive: bool) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Render image ``index``: (H, W, 3) uint8, mask or None, object kind or ''."""
    rng = np.random.default_rng([spec.seed, index])
    img = make_surface(rng, spec.size, spec.height)
    if spec.variation < 1:  # one shared surface (the same part), each image a small own share
        shared = make_surface(np.random.default_rng([spec.seed, 2 ** 31]), spec.size, spec.height)
        img = (1 - spec.variation) * shared + spec.variation * img
    mask, kind = None, ""
    if positive:
        obj, mask, kind = make_object(rng, spec.size, spec.height, spec.kinds)
        img = img + obj
    tint = 1 + rng.normal(0, 0.03, 3)
    rgb = np.clip(img[..., None] * tint, 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8), mask, kind


def generate_demo_dataset(folder: Path, spec: DemoSpec = DemoSpec(), *, progress: bool = False) -> Path:
    """Write the demo images, masks and ``manifest.csv`` into ``folder``; returns the manifest path.

    Written into a unique temporary folder and renamed once, so a half-written set is
    never read; an existing set is renamed aside first and removed afterwards. Use
    :func:`ensure_demo_dataset` where several processes may ask for the same set.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    n_pos = spec.n_positive
    order = np.random.default_rng(spec.seed).permutation(spec.n)
    positive = np.zeros(spec.n, dtype=bool)
    positive[order[:n_pos]] = True
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        rows = []
        for i in track(range(spec.n), progress, "generating demo images"):
            arr, mask, kind = render_demo_image(spec, i, bool(positive[i]))
            name = f"img_{i:05d}.png"
            Image.fromarray(arr).save(tmp / "images" / name)
            mpath = ""
            if mask is not None:
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / "masks" / name)
                mpath = f"masks/{name}"
            rows.append([f"images/{name}", int(positive[i]), mpath, kind or "none"])
        (tmp / "manifest.csv").write_text(csv_text(["path", "label", "mask", "kind"], rows), encoding="utf-8")
        old = None
        if folder.exists():  # moved aside in one rename, removed after the new set is in place
            old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / "manifest.csv"


def _lock(folder: Path):
    """An inter-process lock beside ``folder`` (``filelock``: fcntl/msvcrt under the hood)."""
    from filelock import FileLock

    return FileLock(str(folder.with_name(f".{folder.name}.lock")), is_singleton=True)


def ensure_demo_dataset(folder: Path, spec: DemoSpec = DemoSpec(), *, progress: bool = False) -> Path:
    """Generate the demo set into ``folder`` unless a complete one is there.

    Concurrent callers (processes or threads) wait on one lock: the first
    generates, the others then find the complete set and read it.
    """
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _lock(folder).acquire(timeout=3600):
        if manifest.exists():
            return manifest
        return generate_demo_dataset(folder, spec, progress=progress)


@register_source("demo", syntax="demo[:N[:RATE[:SEED[:SIZE]]]]",
                 description="the procedural demo set (generated once into the cache folder)")
def _demo_source(rest: str, positive: str | None = None) -> Dataset:
    from .manifest import read_csv

    parts = [p for p in rest.split(":") if p]
    usage = "write demo[:N[:RATE[:SEED[:SIZE]]]], e.g. demo:600:0.05:0 or demo:600:0.15:0:224"
    if len(parts) > 4:
        raise DataError(f"bad demo source 'demo:{rest}': {len(parts)} fields; {usage}")
    default = DemoSpec()
    try:
        n = int(parts[0]) if len(parts) > 0 else default.n
        rate = float(parts[1]) if len(parts) > 1 else default.positive_rate
        seed = int(parts[2]) if len(parts) > 2 else default.seed
        size = int(parts[3]) if len(parts) > 3 else default.size
    except ValueError as exc:
        raise DataError(f"bad demo source 'demo:{rest}' ({exc}); {usage}") from None
    try:
        spec = DemoSpec(n=n, positive_rate=rate, seed=seed, size=size)
    except ValueError as exc:  # ConfigError from DemoSpec: n, rate, seed or size out of range
        raise DataError(f"bad demo source 'demo:{rest}': {exc}; {usage}") from None
    return read_csv(ensure_demo_dataset(demo_folder(spec), spec))


def demo_folder(spec: DemoSpec) -> Path:
    """Where the set of ``spec`` lives in the cache (the size is named only when it is not the default,
    so sets generated before the size could be chosen are still found)."""
    name = f"n{spec.n}-r{spec.positive_rate:g}-s{spec.seed}"
    if spec.size != DemoSpec.size:
        name += f"-px{spec.size}"
    return cache_root() / "demo" / name


def demo_source(spec: DemoSpec) -> str:
    """The ``--data`` text of the demo set ``spec`` (read back by the ``demo`` source)."""
    text = f"demo:{spec.n}:{spec.positive_rate:g}:{spec.seed}"
    return text + (f":{spec.size}" if spec.size != DemoSpec.size else "")


@register_source("demo-tall", syntax="demo-tall[:N[:RATE[:SEED]]]",
                 description="tall demo images (500×1250 px) with thin scratches and masks (generated once)")
def _demo_tall_source(rest: str, positive: str | None = None) -> Dataset:
    from dataclasses import replace

    from .manifest import read_csv

    parts = [p for p in rest.split(":") if p]
    usage = "write demo-tall[:N[:RATE[:SEED]]], e.g. demo-tall:300:0.1:0"
    if len(parts) > 3:
        raise DataError(f"bad demo source 'demo-tall:{rest}': {len(parts)} fields; {usage}")
    try:
        n = int(parts[0]) if len(parts) > 0 else TALL_SPEC.n
        rate = float(parts[1]) if len(parts) > 1 else TALL_SPEC.positive_rate
        seed = int(parts[2]) if len(parts) > 2 else TALL_SPEC.seed
        spec = replace(TALL_SPEC, n=n, positive_rate=rate, seed=seed)
    except ValueError as exc:  # int()/float() or DemoSpec's ConfigError
        raise DataError(f"bad demo source 'demo-tall:{rest}' ({exc}); {usage}") from None
    folder = cache_root() / "demo-tall" / f"n{spec.n}-r{spec.positive_rate:g}-s{spec.seed}"
    return read_csv(ensure_demo_dataset(folder, spec))
