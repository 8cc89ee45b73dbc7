"""Image and mask decoding with Pillow.

Handles grayscale, RGB, RGBA (composited on black), palette, 16-bit and
EXIF-rotated files and returns a 3-channel float tensor in [0, 1]. Masks are
binary: for 8-bit or deeper masks a pixel is object when its value is at
least half the maximum of its type (robust to JPEG-like ringing that some
datasets, Magnetic-tile among them, carry in their PNG masks); masks stored
as 0/1 count every non-zero pixel.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadFileError

__all__ = ["load_image", "load_image_array", "load_mask", "read_size", "MAX_PIXELS"]

#: Refuse images above this many pixels (decompression-bomb guard): 16k x 16k.
MAX_PIXELS = 16384 * 16384
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise BadFileError(path, "file not found")
    if path.is_dir():
        raise BadFileError(path, "is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise BadFileError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadFileError(path, f"image too large ({exc}); at most {MAX_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise BadFileError(
            path, "not a readable image (valid: PNG, JPEG, BMP, TIFF, WebP)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadFileError(path, f"corrupt or truncated image ({exc})") from None
    if im.width < 1 or im.height < 1:
        raise BadFileError(path, "image has no pixels")
    return im


def _to_uint8_rgb(im: Image.Image) -> np.ndarray:
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not lose the image
        pass
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode == "I" and arr.max() <= 65535:
            hi = 65535.0 if arr.max() > 255 else 255.0
        if mode == "F":
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        else:
            arr = arr / hi * 255.0
        g = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA") or (mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image_array(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 array."""
    return _to_uint8_rgb(_open(Path(path)))


def load_image(path: str | Path) -> torch.Tensor:
    """Decode ``path`` to a ``(3, H, W)`` float32 tensor in [0, 1]."""
    arr = load_image_array(path)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def read_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, decoding the whole file (catches truncation)."""
    im = _open(Path(path))
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:
        pass
    return im.size


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode a mask to an ``(H, W)`` bool tensor.

    Parameters
    ----------
    path
        Mask file.
    size
        Expected ``(width, height)`` of the image it belongs to; a mismatch raises.
    """
    im = _open(Path(path))
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:
        pass
    if size is not None and tuple(im.size) != tuple(size):
        raise BadFileError(
            path, f"mask is {im.size[0]}x{im.size[1]} but its image is {size[0]}x{size[1]}; "
            "a mask must have the size of its image"
        )
    if im.mode in ("RGBA", "LA"):
        arr = np.asarray(im.split()[-1])
    elif im.mode == "P":
        arr = np.asarray(im)  # palette index: 0 = background
        return torch.from_numpy(arr > 0)
    elif im.mode == "1":
        return torch.from_numpy(np.asarray(im, dtype=bool))
    else:
        arr = np.asarray(im if im.mode in ("L", "I;16", "I", "F") else im.convert("L"))
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    top = float(arr.max()) if arr.size else 0.0
    if top <= 1:
        return torch.from_numpy(arr > 0)
    full = 65535.0 if arr.dtype == np.uint16 or top > 255 else 255.0
    return torch.from_numpy(arr >= full / 2)
