"""The on-disk patch-feature store: append-only float16 rows, verified when read.

One store per settings key (``<cache>/patches/<key>/``): ``rows.f16`` holds the rows back to back,
``index.json`` maps each file's content hash to its row, box and size plus the row's SHA-256, and the
committed length of ``rows.f16``. See :class:`PatchStore`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_write
from ..notices import CacheWarning

__all__ = ["PatchStore", "STORE_FORMAT"]

#: Format of ``index.json``: 2 adds the committed length (the commit marker) and a SHA-256 per row.
STORE_FORMAT = 2
_VERIFIED: set[tuple[str, int, str]] = set()  # (rows file, row, checksum) already checked in this process
_WRITE_FAULTS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS, errno.EACCES, errno.EPERM)


def _row_digest(buf: bytes | memoryview | np.ndarray) -> str:
    return hashlib.sha256(buf).hexdigest()


class PatchStore:
    """Append-only float16 rows in ``rows.f16`` plus ``index.json``, verified when read.

    ``index.json`` is ``{"format": 2, "length": L, "rows": {digest: [row, box, size, sha256]}}`` and is
    rewritten atomically *after* the rows it names are synced: ``L`` (bytes) is the commit marker, so
    bytes past it are a torn append (a kill or a full disk mid-write) and are cut off before the next
    append, which always starts at ``L`` (never at the end of a torn file). Each row's SHA-256 is checked
    the first time a process reads it (:meth:`verify`): a damaged row is recomputed, never used.

    A cache that cannot be written (read-only, full disk) keeps new rows in memory with one warning.
    Hand-written (not a library): no maintained library offers an append-only, memory-mappable array
    file with per-row checksums.
    """

    def __init__(self, root: Path, settings: dict, shape: tuple[int, int, int]) -> None:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(root) / "patches" / key
        self.shape = shape
        self.row_bytes = 2 * int(np.prod(shape))
        self.data, self.index_path, self.lock = self.folder / "rows.f16", self.folder / "index.json", self.folder / "lock"
        self.memory: dict[str, tuple[np.ndarray, list, list]] = {}  # rows kept in RAM when the cache is not writable
        self.read_only_reason: str | None = None
        try:  # nothing is rewritten on open: a read-only cache is read as is
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / "settings.json").is_file():
                with atomic_write(self.folder / "settings.json", "w") as fh:
                    json.dump({**settings, "row_shape": list(shape)}, fh, indent=2)
        except OSError as exc:
            self._cannot_write(exc)
        self.length, self.index = self._read_index()

    def _cannot_write(self, exc: OSError) -> None:
        if self.read_only_reason is None:
            self.read_only_reason = exc.strerror or str(exc)
            warnings.warn(f"patch-feature cache {self.folder} cannot be written ({self.read_only_reason}); new "
                          "features are kept in memory only", CacheWarning, stacklevel=3)

    def _file_rows(self) -> int:
        try:
            return self.data.stat().st_size // self.row_bytes
        except OSError:
            return 0

    def _read_index(self) -> tuple[int, dict]:
        """``(committed bytes, {digest: entry})``; anything unreadable or of another format counts as empty."""
        try:
            idx = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            return 0, {}
        if not isinstance(idx, dict) or idx.get("format") != STORE_FORMAT or not isinstance(idx.get("rows"), dict):
            return 0, {}  # an older, unverifiable store: rebuilt from the start
        length = idx.get("length")
        if not isinstance(length, int) or length < 0 or length % self.row_bytes:
            return 0, {}
        n = min(length // self.row_bytes, self._file_rows())  # rows lost from the file are recomputed
        rows = {}
        for k, v in idx["rows"].items():
            if (isinstance(v, list) and len(v) == 4 and isinstance(v[0], int) and 0 <= v[0] < n
                    and isinstance(v[3], str) and len(v[1]) == 4 and len(v[2]) == 2):
                rows[k] = v
        return n * self.row_bytes, rows

    def append(self, items: dict[str, tuple[np.ndarray, tuple, tuple]]) -> None:
        """Append rows after the committed length, sync them, then commit the index (under the entry's lock)."""
        if not items:
            return
        if self.read_only_reason is None:
            try:
                self._append_locked(items)
                return
            except OSError as exc:
                if exc.errno not in _WRITE_FAULTS:
                    raise
                self._cannot_write(exc)
        for k, (feat, box, size) in items.items():
            self.memory[k] = (np.ascontiguousarray(feat, dtype=np.float16), list(map(int, box)), list(map(int, size)))

    def _append_locked(self, items: dict[str, tuple[np.ndarray, tuple, tuple]]) -> None:
        with open(self.lock, "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            length, index = self._read_index()  # another writer may have committed rows meanwhile
            if not self.data.exists():
                self.data.touch()
            with open(self.data, "r+b") as fh:
                try:
                    fh.truncate(length)  # cut a torn tail: the next row starts on a row boundary
                    fh.seek(length)
                    n = length // self.row_bytes
                    new = {}
                    for k, (feat, box, size) in items.items():
                        buf = np.ascontiguousarray(feat, dtype=np.float16).tobytes()
                        fh.write(buf)
                        new[k] = [n, list(map(int, box)), list(map(int, size)), _row_digest(buf)]
                        n += 1
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError:
                    try:  # a full disk mid-append: leave no partial row behind
                        fh.truncate(length)
                    except OSError:
                        pass
                    raise
            index.update(new)
            with atomic_write(self.index_path, "w") as fh:  # the commit: these rows now exist
                json.dump({"format": STORE_FORMAT, "length": n * self.row_bytes, "rows": index}, fh)
            # Rows this process found damaged stay out until recomputed (they come back through ``new``).
            self.length, self.index = n * self.row_bytes, {k: v for k, v in index.items() if k in self.index or k in new}

    def has(self, digest: str) -> bool:
        return digest in self.index or digest in self.memory

    def verify(self, digests: Sequence[str]) -> list[str]:
        """Check the SHA-256 of the rows of ``digests`` (once per process); damaged ones leave the index.

        Returns the digests whose rows were damaged (to recompute).
        """
        mm = self.memmap()
        flat = mm.reshape(len(mm), -1) if len(mm) else mm
        bad = []
        for d in dict.fromkeys(digests):
            e = self.index.get(d)
            if e is None:
                continue
            tag = (str(self.data), int(e[0]), e[3])
            if tag in _VERIFIED:
                continue
            if e[0] >= len(flat) or _row_digest(np.ascontiguousarray(flat[e[0]]).data) != e[3]:
                bad.append(d)
                del self.index[d]
            else:
                _VERIFIED.add(tag)
        if bad:
            warnings.warn(f"patch-feature cache {self.data}: {len(bad)} row(s) failed their SHA-256 check "
                          "(damaged on disk); recomputing them", CacheWarning, stacklevel=3)
        return bad

    def memmap(self) -> np.ndarray:
        """The committed rows, memory-mapped read-only (bytes past the commit marker are never read)."""
        n = min(self.length // self.row_bytes, self._file_rows())
        if n == 0:
            return np.zeros((0, *self.shape), np.float16)
        return np.memmap(self.data, dtype=np.float16, mode="r", shape=(n, *self.shape))

    def rows_for(self, digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(store, rows, boxes, sizes)`` for ``digests``: the memory map, or an in-memory copy when some rows
        live in memory only (a cache that could not be written)."""
        if not any(d in self.memory for d in digests):
            entries = [self.index[d] for d in digests]
            store = self.memmap()
            rows = np.array([e[0] for e in entries], dtype=np.int64)
        else:
            mm, uniq = self.memmap(), list(dict.fromkeys(digests))
            pos = {d: i for i, d in enumerate(uniq)}
            store = np.stack([self.memory[d][0] if d in self.memory else np.asarray(mm[self.index[d][0]])
                              for d in uniq]) if uniq else np.zeros((0, *self.shape), np.float16)
            entries = [self.memory[d][1:] if d in self.memory else self.index[d][1:3] for d in digests]
            entries = [[pos[d], *e] for d, e in zip(digests, entries)]
            rows = np.array([e[0] for e in entries], dtype=np.int64)
        boxes = np.array([e[1] for e in entries], dtype=np.int64).reshape(-1, 4)
        sizes = np.array([e[2] for e in entries], dtype=np.int64).reshape(-1, 2)
        return store, rows, boxes, sizes
