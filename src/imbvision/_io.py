"""Atomic file writing: every output goes to a temporary name and is renamed.

A reader therefore never sees a half-written file, and a kill mid-write leaves
the previous version intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError

__all__ = ["atomic_write", "write_json", "write_text", "read_json", "ensure_output_dir"]


def _read_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    On any failure (including a full disk while writing or renaming) the
    temporary file is removed and a previous ``path`` is left untouched. The
    new file gets the permissions a plain ``open`` would give it (or those of
    the file it replaces), not the owner-only mode of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            fh = os.fdopen(fd, mode, **kwargs)
        except BaseException:
            os.close(fd)
            raise
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        try:
            perm = path.stat().st_mode & 0o7777
        except OSError:
            perm = 0o666 & ~_UMASK
        os.chmod(tmp, perm)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically (numpy scalars and arrays allowed)."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=indent, default=_default, sort_keys=False)
        fh.write("\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text atomically."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def ensure_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check early that it is writable.

    A probe file of 4 KiB is written, synced and removed, so a read-only
    folder or a full disk is found before any work is done.

    Raises
    ------
    ConfigError
        If the folder cannot be created or written to (read-only, full disk).
    """
    path = Path(path)
    hint = "Choose a writable folder with free space (--out)."
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output folder {path} is an existing file, not a folder; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {path}: {exc.strerror or exc}. {hint}") from exc
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {path} (creating a file there failed: "
                          f"{exc.strerror or exc}). {hint}") from exc
    try:
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {path} (writing a test file failed: "
                          f"{exc.strerror or exc}). {hint}") from exc
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass
    return path
