"""Fingerprints of the data and the settings, so a resumable artefact never outlives its inputs.

Every artefact that a later run may reuse (a compare cell, a synthetic-image
cache, a run folder) is stored with a key made of

* the *data*: for each record, in order, the SHA-256 of the image bytes, the
  label, the SHA-256 of the mask bytes (or none) and the group; and
* the *settings* that shaped it (backbone weights, image size, split indices...).

A source string such as ``csv:data.csv`` says nothing about the rows behind it:
relabelling three rows or dropping ten keeps the string and changes the key.
Hashing is plain :mod:`hashlib` (no library keys data this way); file hashes
are memoised per process by ``(path, size, mtime_ns, inode)`` so the same file
is read once per run however many artefacts it keys.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ._digest import sha256_file

__all__ = ["content_digest", "records_fingerprint", "settings_fingerprint", "split_fingerprint", "combine"]

_MEMO: dict[tuple, str] = {}


def content_digest(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, memoised by ``(path, size, mtime_ns, inode)``.

    Raises
    ------
    OSError
        When the file cannot be read (the caller names it).
    """
    p = os.fspath(path)
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _MEMO.get(key)
    if hit is not None:
        return hit
    digest = sha256_file(p)  # the one content hash (imbvision._digest), memoised here
    if len(_MEMO) > 200_000:  # bound the memo (about 40 MB) on huge datasets
        _MEMO.clear()
    _MEMO[key] = digest
    return digest


def records_fingerprint(records: Sequence[Any], digests: Sequence[str] | None = None) -> str:
    """SHA-256 over every record's image content, label, mask content and group, in order.

    Parameters
    ----------
    records
        :class:`~imbvision.data.records.ImageRecord` objects (``path``, ``label``, ``mask``, ``group``).
    digests
        The images' content hashes when already known (same order), else they are computed.

    Returns
    -------
    str
        64 hex characters; equal exactly when the data a model would see is equal.
    """
    h = hashlib.sha256(b"imbvision-records-v1\n")
    for i, rec in enumerate(records):
        d = digests[i] if digests is not None else content_digest(rec.path)
        m = content_digest(rec.mask) if getattr(rec, "mask", None) is not None and Path(rec.mask).is_file() else "-"
        g = getattr(rec, "group", None)
        h.update(json.dumps([d, int(rec.label), m, g]).encode() + b"\n")
    return h.hexdigest()


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(obj)
    raise TypeError(f"cannot fingerprint {type(obj).__name__}")


def settings_fingerprint(settings: Any) -> str:
    """SHA-256 of a JSON-able settings object (dict keys sorted; numpy values allowed)."""
    text = json.dumps(settings, sort_keys=True, default=_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def split_fingerprint(split: Any) -> str:
    """SHA-256 of a split's train, validation and test indices."""
    parts = [np.asarray(getattr(split, k), dtype=np.int64) for k in ("train", "val", "test")]
    h = hashlib.sha256()
    for a in parts:
        h.update(str(len(a)).encode() + b":" + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def combine(*parts: Iterable[Any] | str) -> str:
    """One key from several fingerprints or plain values."""
    return settings_fingerprint(list(parts))
