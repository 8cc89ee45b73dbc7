"""Image and mask decoding with Pillow.

Handles grayscale, RGB, RGBA (composited on black), palette, 16-bit and
EXIF-rotated files and returns a 3-channel float tensor in [0, 1]. Masks are
binary: a pixel is object when its value is at least half the mask's own
largest value (robust to JPEG-like ringing that some datasets, Magnetic-tile
among them, carry in their PNG masks), so a 0/1, 0/255 or 0/k mask counts
every non-zero pixel whatever its bit depth; an all-zero mask is empty.
RGBA masks use their alpha channel when it varies, else their colour.

Every failure to read a file -- missing, empty, truncated, corrupt, not an
image, too large, an unsupported colour mode -- is a :class:`BadFileError`
naming the file.
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
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise BadFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    if empty:
        raise BadFileError(path, "empty file (0 bytes)")
    im: Image.Image | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            im.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises struct.error, IndexError... on damaged files
        if im is not None:  # do not leak the file handle of a half-decoded image
            im.close()
        raise BadFileError(path, _open_error_reason(exc)) from None
    if im.width < 1 or im.height < 1:
        raise BadFileError(path, "image has no pixels")
    return im


def _open_error_reason(exc: Exception) -> str:
    """Why Pillow could not decode a file, in words a user can act on."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image too large ({exc}); at most {MAX_PIXELS} pixels"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (valid: PNG, JPEG, BMP, TIFF, WebP)"
    if isinstance(exc, MemoryError):
        return f"image too large to decode in memory; at most {MAX_PIXELS} pixels"
    if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
        return f"corrupt or truncated image ({exc})"
    return f"corrupt image ({type(exc).__name__}: {exc})"


def _transpose(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the image
        return im


def _to_uint8_rgb(im: Image.Image, path: Path | None = None) -> np.ndarray:
    im = _transpose(im)
    try:
        return _convert_rgb(im)
    except (ValueError, OSError, TypeError) as exc:
        raise BadFileError(path or "<image>", f"colour mode {im.mode!r} cannot be converted to RGB ({exc}); "
                           "save it as 8/16-bit grey, RGB or RGBA") from None


def _convert_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode == "I" and arr.max() <= 65535:
            hi = 65535.0 if arr.max() > 255 else 255.0
        if mode == "F":
            arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        else:
            arr = arr / hi * 255.0
        g = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image_array(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 array."""
    return _to_uint8_rgb(_open(Path(path)), Path(path))


def load_image(path: str | Path) -> torch.Tensor:
    """Decode ``path`` to a ``(3, H, W)`` float32 tensor in [0, 1]."""
    arr = load_image_array(path)
    return torch.from_numpy(np.ascontiguousarray(arr).copy()).permute(2, 0, 1).float().div_(255.0)


def read_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, decoding the whole file (catches truncation)."""
    return _transpose(_open(Path(path))).size


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode a mask to an ``(H, W)`` bool tensor.

    Parameters
    ----------
    path
        Mask file.
    size
        Expected ``(width, height)`` of the image it belongs to; a mismatch raises.
    """
    im = _transpose(_open(Path(path)))
    if size is not None and tuple(im.size) != tuple(size):
        raise BadFileError(
            path, f"mask is {im.size[0]}x{im.size[1]} but its image is {size[0]}x{size[1]}; "
            "a mask must have the size of its image"
        )
    if im.mode in ("P", "PA", "1"):  # palette index or bilevel: 0 = background, any other = object
        return torch.from_numpy(np.asarray(im.getchannel(0) if im.mode == "PA" else im).astype(np.int64) > 0)
    try:
        arr = _mask_values(im)
    except (ValueError, OSError, TypeError) as exc:
        raise BadFileError(path, f"mask colour mode {im.mode!r} unsupported ({exc}); "
                           "save masks as 8-bit grey (0 = background, non-zero = object)") from None
    top = float(arr.max()) if arr.size else 0.0
    if top <= 0:
        return torch.zeros(arr.shape, dtype=torch.bool)
    if top <= 1:
        return torch.from_numpy(arr > 0)
    # Half the mask's own maximum: 0/k masks keep every non-zero pixel, ringing around 0/255 is dropped.
    return torch.from_numpy(arr >= top / 2)


def _mask_values(im: Image.Image) -> np.ndarray:
    """One non-negative value per pixel: alpha (when it varies), else the grey level or largest channel."""
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.size and alpha.min() != alpha.max():
            return alpha
        im = im.convert("RGB" if im.mode.startswith("RGB") else "L")
    if im.mode in ("L", "I;16", "I;16L", "I;16B", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(arr, 0, None)
    arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    return arr.max(axis=2) if arr.ndim == 3 else arr
