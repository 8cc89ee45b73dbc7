"""SHA-256 of a file's bytes: the one content hash every module uses.

A leaf module (standard library only), so data checks, embedding caches,
model bundles and backbone weights can all import it without an import circle.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file", "arrays_digest", "json_digest"]

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


def arrays_digest(arrays: "dict[str, object]") -> str:
    """Hex SHA-256 over named arrays: each name, dtype, shape and bytes, names in sorted order.

    The checksum cached safetensors files carry in their metadata (embedding shards, synthetic features):
    a flipped byte in a tensor, a renamed or reshaped tensor all change it.
    """
    import numpy as np

    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data if a.size else b"")
    return h.hexdigest()


def json_digest(obj: object) -> str:
    """Hex SHA-256 of the canonical JSON of ``obj`` (sorted keys, no spaces): the checksum of cached JSON records."""
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()).hexdigest()
