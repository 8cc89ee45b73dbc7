"""SHA-256 of a file's bytes: the one content hash every module uses.

A leaf module (standard library only), so data checks, embedding caches,
model bundles and backbone weights can all import it without an import circle.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str], *, chunk: int = _CHUNK) -> str:
    """Hex SHA-256 of the bytes of ``path`` (read in 1 MiB blocks; exact duplicates share it).

    Raises
    ------
    OSError
        The file cannot be opened or read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
