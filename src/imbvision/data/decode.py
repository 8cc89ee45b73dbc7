"""Image and mask decoding with Pillow.

Handles grayscale, RGB, RGBA (composited on black), palette, 16-bit and
EXIF-rotated files and returns a 3-channel float tensor in [0, 1].

The data's own scale is kept, never stretched per image:

* 16-bit (and 32-bit integer) grey is divided by the range of the bits
  actually used: the PNG ``sBIT`` chunk when present, else the smallest
  common sensor depth 2^k - 1 (k = 8, 10, 12, 14, 16, then 32) that holds the
  image's maximum. A 12-bit X-ray is divided by 4095, not 65535, so an
  object 64 levels above a background of 2000 stays 4 grey levels brighter.
* 32-bit float grey in [0, 1] is multiplied by 255 (a constant 0.5 stays
  mid-grey); floats in (1, 65535] are treated like integer data; negative or
  larger floats, NaN and infinity are refused (:class:`BadFileError`).
* A multi-page TIFF (or animated image) uses its first page and says so with
  a :class:`PagesDroppedWarning` naming the file and the page count.

Decoding is strict whatever the calling program set: a truncated file is a
:class:`BadFileError` even under ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True``
(the flag is restored afterwards). Masks are
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

import struct
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # torch is imported where a tensor is made: listing data sources stays fast
    import torch

from ..errors import BadFileError

__all__ = ["load_image", "load_image_array", "load_image_and_size", "load_mask", "read_size", "MAX_PIXELS",
           "MAX_ASPECT", "PagesDroppedWarning", "check_shape"]

#: Refuse images above this many pixels (decompression-bomb guard): 16k x 16k.
MAX_PIXELS = 16384 * 16384
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
#: Refuse images whose long side is more than this many times the short side. Every step that resizes an
#: image to a square input, tiles it or draws its heat map works on arrays whose size grows with the aspect
#: ratio (a 1×20000 strip resized to a 224-px square side by side with its map needs gigabytes), so the
#: bound keeps memory per image within a few hundred MB for any accepted file (with MAX_PIXELS).
MAX_ASPECT = 100

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Sensor depths tried, smallest first, when a file does not say how many bits it uses.
_DEPTHS = (8, 10, 12, 14, 16, 32)


class PagesDroppedWarning(UserWarning):
    """A multi-page file was read as its first page only."""


_STRICT_LOCK = threading.Lock()
_strict_users = 0
_saved_flag = False


@contextmanager
def _strict_decoding():
    """``ImageFile.LOAD_TRUNCATED_IMAGES = False`` while decoding; the caller's value comes back after.

    Pillow only offers a module-wide flag, so concurrent decodes (threads) share one
    save/restore, counted under a lock.
    """
    global _strict_users, _saved_flag
    with _STRICT_LOCK:
        if _strict_users == 0:
            _saved_flag = ImageFile.LOAD_TRUNCATED_IMAGES
        _strict_users += 1
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        with _STRICT_LOCK:
            _strict_users -= 1
            if _strict_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _saved_flag


_FULL_SIZE = "imbvision.full_size"


@contextmanager
def _bomb_is_an_error():
    """Pillow's ``DecompressionBombWarning`` raised as an error while opening -- in the main thread only.

    The warning state is process-wide and :func:`warnings.catch_warnings` is not thread-safe (two threads
    decoding at once, as ``compare --jobs`` does, leave each other's filters behind). A worker thread needs no
    filter: :func:`check_shape` refuses every image above :data:`MAX_PIXELS` (Pillow's own limit) anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _open(path: Path, draft: int | None = None) -> Image.Image:
    """Open and fully decode ``path`` (so damage is found now); ``draft``: see :func:`load_image_array`."""
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
        with _bomb_is_an_error():
            with _strict_decoding():
                im = Image.open(path)
                check_shape(path, *im.size)  # from the header, before any pixel is decoded
                im.info[_FULL_SIZE] = im.size
                if draft and im.format == "JPEG" and min(im.size) >= 2 * draft:
                    im.draft(im.mode, (draft, draft))  # DCT scaling by 1/2, 1/4 or 1/8; both sides stay >= draft
                im.load()
    except BadFileError:
        if im is not None:
            im.close()
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises struct.error, IndexError... on damaged files
        if im is not None:  # do not leak the file handle of a half-decoded image
            im.close()
        raise BadFileError(path, _open_error_reason(exc)) from None
    if im.width < 1 or im.height < 1:
        raise BadFileError(path, "image has no pixels")
    pages = int(getattr(im, "n_frames", 1) or 1)
    if pages > 1:
        warnings.warn(f"{path}: {pages} pages, only the first is used", PagesDroppedWarning, stacklevel=3)
    return im


def check_shape(path: str | Path, width: int, height: int) -> None:
    """Refuse an image whose shape cannot be processed within bounded memory (one :class:`BadFileError` line).

    Raises
    ------
    BadFileError
        More than :data:`MAX_PIXELS` pixels, or a long side more than :data:`MAX_ASPECT` times the short side.
    """
    if width * height > MAX_PIXELS:
        raise BadFileError(path, f"image too large ({width}x{height} = {width * height} pixels); at most {MAX_PIXELS}")
    long, short = max(width, height), max(1, min(width, height))
    if long > MAX_ASPECT * short:
        raise BadFileError(path, f"image is {width}x{height} px, aspect ratio {long / short:.0f}:1; at most "
                           f"{MAX_ASPECT}:1 can be processed within bounded memory (crop it into tiles of at most "
                           f"{MAX_ASPECT}:1)")


def _png_sbit(path: Path | None) -> int | None:
    """Significant bits of a greyscale PNG from its ``sBIT`` chunk (Pillow does not parse it), or None."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind == b"sBIT":
                    data = fh.read(length)
                    return int(max(data)) if data else None
                if kind in (b"IDAT", b"IEND"):
                    return None
                fh.seek(length + 4, 1)
    except (OSError, struct.error, ValueError):
        return None


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
        return _convert_rgb(im, path)
    except BadFileError:
        raise
    except (ValueError, OSError, TypeError) as exc:
        raise BadFileError(path or "<image>", f"colour mode {im.mode!r} cannot be converted to RGB ({exc}); "
                           "save it as 8/16-bit grey, RGB or RGBA") from None


def _bits_used(arr: np.ndarray, sbit: int | None) -> int:
    """Bits of the data: ``sBIT`` when given, else the smallest common depth whose 2^k - 1 holds the maximum."""
    if sbit is not None and 1 <= sbit <= 16:
        return max(int(sbit), int(np.ceil(np.log2(float(arr.max()) + 1))) if arr.size else 1)
    top = float(arr.max()) if arr.size else 0.0
    return next(k for k in _DEPTHS if top <= 2 ** k - 1)


def _grey_to_uint8(im: Image.Image, path: Path | None) -> np.ndarray:
    """16/32-bit integer or float grey to ``(H, W)`` uint8 on the data's own scale (see module docstring)."""
    where = path or "<image>"
    arr = np.asarray(im, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise BadFileError(where, f"{bad} pixel(s) are NaN or infinite; save finite values (floats in [0, 1])")
    lo = float(arr.min()) if arr.size else 0.0
    hi = float(arr.max()) if arr.size else 0.0
    if im.mode == "F":
        if lo < 0 or hi > 65535:
            raise BadFileError(where, f"float pixel values span [{lo:g}, {hi:g}]; imbvision reads float images in "
                               "[0, 1] (or integer-like values in 0..65535) -- rescale the image to [0, 1]")
        if hi <= 1.0:
            return np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if lo < 0:
        raise BadFileError(where, f"negative pixel values (minimum {lo:g}); save unsigned grey levels")
    scale = float(2 ** _bits_used(arr, _png_sbit(path) if im.mode.startswith("I;16") else None) - 1)
    return np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _convert_rgb(im: Image.Image, path: Path | None = None) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        g = _grey_to_uint8(im, path)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image_array(path: str | Path, *, min_side: int | None = None) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 array.

    ``min_side``: a JPEG whose sides are both at least twice this is decoded at a reduced scale
    (Pillow's draft mode: the decoder's DCT scaling by 1/2, 1/4 or 1/8, chosen so both sides stay
    ``>= min_side``), several times faster for camera-sized photos that are resized to a small
    network input anyway. Other formats and smaller JPEGs decode in full.
    """
    with _open(Path(path), draft=min_side) as im:
        return _to_uint8_rgb(im, Path(path))


def load_image(path: str | Path) -> torch.Tensor:
    """Decode ``path`` to a ``(3, H, W)`` float32 tensor in [0, 1]."""
    import torch

    arr = load_image_array(path)
    return torch.from_numpy(np.ascontiguousarray(arr).copy()).permute(2, 0, 1).float().div_(255.0)


def load_image_and_size(path: str | Path, *, min_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` once: the ``(H, W, 3)`` uint8 array and the file's full ``(width, height)`` after
    EXIF orientation (``min_side`` as in :func:`load_image_array`: the array may then be smaller)."""
    with _open(Path(path), draft=min_side) as im:
        full = im.info.get(_FULL_SIZE, im.size)  # before any draft scaling
        arr = _to_uint8_rgb(im, Path(path))
        if _transpose(im).size != im.size:  # EXIF orientation swapped the sides
            full = full[::-1]
        return arr, tuple(full)


def read_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, decoding the whole file (catches truncation)."""
    with _open(Path(path)) as im:
        return _transpose(im).size


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode a mask to an ``(H, W)`` bool tensor.

    Parameters
    ----------
    path
        Mask file.
    size
        Expected ``(width, height)`` of the image it belongs to; a mismatch raises.
    """
    with _open(Path(path)) as raw:
        return _mask_of(_transpose(raw), path, size)


def _mask_of(im: Image.Image, path: str | Path, size: tuple[int, int] | None) -> torch.Tensor:
    import torch

    if size is not None and tuple(im.size) != tuple(size):
        raise BadFileError(
            path, f"mask is {im.size[0]}x{im.size[1]} but its image is {size[0]}x{size[1]}; "
            "a mask must have the size of its image"
        )
    if im.mode in ("P", "PA", "1"):  # palette index or bilevel: 0 = background, any other = object
        return torch.from_numpy(np.asarray(im.getchannel(0) if im.mode == "PA" else im).astype(np.int64) > 0)
    try:
        arr = _mask_values(im)
    except _NonFinite as exc:
        raise BadFileError(path, f"mask: {exc}") from None
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


class _NonFinite(ValueError):
    pass


def _mask_values(im: Image.Image) -> np.ndarray:
    """One non-negative value per pixel: alpha (when it varies), else the grey level or largest channel."""
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.size and alpha.min() != alpha.max():
            return alpha
        im = im.convert("RGB" if im.mode.startswith("RGB") else "L")
    if im.mode in ("L", "I;16", "I;16L", "I;16B", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if not np.isfinite(arr).all():
            what = "every pixel is" if not np.isfinite(arr).any() else f"{int((~np.isfinite(arr)).sum())} pixel(s) are"
            raise _NonFinite(f"{what} NaN or infinite; a mask needs finite values (0 = background, non-zero = object)")
        return np.clip(arr, 0, None)
    arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    return arr.max(axis=2) if arr.ndim == 3 else arr
