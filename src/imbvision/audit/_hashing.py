"""Content and perceptual hashes for duplicate detection.

The perceptual hash is written here by hand (a DCT "pHash", as described by
Zauner, 2010, and popularised by the ``imagehash`` package) because
``imagehash`` is not a dependency of imbvision and the algorithm is twenty
lines of Pillow + NumPy + SciPy. It is robust to re-encoding, resizing,
small brightness/contrast changes and mild blur, which is what "the same
picture saved twice" looks like in practice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dctn

__all__ = ["sha256_file", "phash", "hamming"]

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (exact duplicates share it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def phash(rgb: np.ndarray, *, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """64-bit DCT perceptual hash of an ``(H, W, 3)`` uint8 image.

    The image is reduced to grey at ``hash_size * highfreq_factor`` pixels a
    side, transformed with a 2-D DCT, and the ``hash_size x hash_size`` lowest
    frequencies are thresholded at their median (the DC term is left out of the
    median, as it only carries mean brightness).

    Returns
    -------
    int
        The hash as an unsigned integer of ``hash_size**2`` bits.
    """
    side = hash_size * highfreq_factor
    grey = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("L").resize((side, side), Image.LANCZOS)
    coeffs = dctn(np.asarray(grey, dtype=np.float64), type=2, norm="ortho")[:hash_size, :hash_size]
    flat = coeffs.ravel()
    bits = flat > np.median(flat[1:])
    out = 0
    for b in bits:
        out = (out << 1) | int(b)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance between two arrays of uint64 hashes."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))).astype(np.int64)
