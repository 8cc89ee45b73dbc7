"""Remember which image files passed the check, so a second command does not decode them again.

Checking decodes every image and mask (10-20 s for a few hundred real
images) and hashes every file; every command checks its data first. A file
whose path, size and modification time (and its mask's) are unchanged gives
the same answer, so the answer -- passed with the file's SHA-256 and perceptual hash, or the reason it
failed -- is kept in ``<cache>/image_checks.sqlite`` under that key.
An edited, replaced or truncated file has a new size or time and is checked
again. Set ``IMBVISION_CHECK_CACHE=0`` to always decode.

sqlite (standard library) rather than a JSON file: several processes (compare
workers, two terminals) may read and add answers at once. Any error of the
cache itself (read-only home, locked database) only costs speed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import BadFileError
from .records import ImageRecord

__all__ = ["cached_check", "cache_path"]

_LOCK = threading.Lock()
_CONN: dict[str, sqlite3.Connection | None] = {}


def cache_path() -> Path:
    """``<cache root>/image_checks.sqlite`` (``$IMBVISION_CACHE`` or ``~/.cache/imbvision``)."""
    from .sources import cache_root

    return cache_root() / "image_checks.sqlite"


def _conn() -> sqlite3.Connection | None:
    if os.environ.get("IMBVISION_CHECK_CACHE", "1") == "0":
        return None
    path = str(cache_path())
    with _LOCK:
        if path not in _CONN:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                c = sqlite3.connect(path, timeout=2.0, isolation_level=None, check_same_thread=False)
                c.execute("PRAGMA synchronous=OFF")
                c.execute("CREATE TABLE IF NOT EXISTS checks_v2 (key TEXT PRIMARY KEY, bad_path TEXT, reason TEXT, "
                          "result TEXT)")
                _CONN[path] = c
            except (OSError, sqlite3.Error):
                _CONN[path] = None
        return _CONN[path]


def _stamp(path: str | os.PathLike[str] | None) -> str | None:
    if path is None:
        return "-"
    try:
        p = Path(path).resolve()
        st = p.stat()
    except (OSError, ValueError):  # missing, or a name the OS refuses (NUL byte): the real check says so
        return None
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8: not cached; the real check names it
        return None
    return key


def _query(sql: str, args: tuple) -> tuple | None:
    c = _conn()
    if c is None:
        return None
    try:
        with _LOCK:
            return c.execute(sql, args).fetchone()
    except sqlite3.Error:
        return None


def _store(sql: str, args: tuple) -> None:
    c = _conn()
    if c is None:
        return
    try:
        with _LOCK:
            c.execute(sql, args)
    except sqlite3.Error:
        pass


#: Part of every key: a new version of the check (what it refuses, what it returns) never reads older answers.
CHECK_VERSION = "4"  # 4: images beyond MAX_ASPECT refused


def cached_check(rec: ImageRecord, check: Callable[[ImageRecord], Any]) -> Any:
    """``check(rec)`` unless the same image and mask files were checked before; returns its (JSON) result.

    Raises the same :class:`~imbvision.errors.BadFileError` (path and reason) a
    fresh check raised for these files.
    """
    img, mask = _stamp(rec.path), _stamp(rec.mask)
    if img is None or mask is None:
        return check(rec)
    key = f"v{CHECK_VERSION}#{img}#{mask}"
    hit = _query("SELECT bad_path, reason, result FROM checks_v2 WHERE key = ?", (key,))
    if hit is not None:
        if hit[1] is not None:
            raise BadFileError(hit[0], hit[1])
        try:
            return json.loads(hit[2])
        except (TypeError, ValueError):
            pass  # a damaged answer: check again
    try:
        result = check(rec)
    except BadFileError as exc:
        _store("INSERT OR REPLACE INTO checks_v2 VALUES (?, ?, ?, NULL)", (key, exc.path, exc.reason))
        raise
    _store("INSERT OR REPLACE INTO checks_v2 VALUES (?, NULL, NULL, ?)", (key, json.dumps(result)))
    return result
