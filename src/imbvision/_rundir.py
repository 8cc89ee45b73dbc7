"""Run folders written whole or not at all.

``train`` builds its run folder in a hidden staging folder beside ``--out``
(``PARENT/.NAME.partial/NAME``) and renames it onto ``--out`` only when every
file is written. A killed or failed run therefore never leaves a folder that
looks finished, and nothing from an older run (example images,
``bad_files.csv``) survives into a new one. An interrupted fine-tune keeps its
checkpoints in the staging folder, where ``--resume`` finds them.

Also refused up front: an existing run folder without ``--overwrite`` or
``--resume``, replacing a folder that is not an imbvision run, and an ``--out``
inside (or holding) the data, which a later run would read back as images.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from contextlib import contextmanager
from typing import Iterator

from ._io import _fsync_dir, ensure_output_dir
from .errors import ConfigError

__all__ = ["staging_dir", "open_run_dir", "commit_run_dir", "discard_run_dir", "refuse_out_in_data", "data_roots",
           "folder_lock", "lock_path"]

_MARK = "config.json"  # every run folder has it


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock of the output folder ``out``: ``<temp dir>/imbvision-locks/<hash of its real path>.lock``.

    Kept outside ``out`` and its parent, so taking the lock writes nothing into the user's folders (a data
    folder, a read-only parent) and ``train`` can still rename its staging folder onto ``out`` whole. One
    machine's processes share the temp dir, which is the scope a file lock has anyway.
    """
    import hashlib
    import tempfile

    real = os.path.realpath(os.path.abspath(os.fspath(out)))
    return Path(tempfile.gettempdir()) / "imbvision-locks" / (hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".lock")


def _holder_text(path: Path) -> str:
    import json

    try:
        h = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {h['pid']} on {h['host']}, `{h['command']}`, since {h['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


@contextmanager
def folder_lock(out: str | os.PathLike[str], what: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``out`` for the ``with`` block: one writer per folder.

    The lock is a :class:`filelock.FileLock` on :func:`lock_path` (released by the system when the
    process dies, so a killed run never leaves a stale lock); the holder's pid, host and command line
    are written beside the lock file (``<hash>.lock.holder.json``) so the refusal can name them. Only rank 0 of a
    distributed run takes it (every rank runs ``train`` into the same folder).

    Raises
    ------
    ConfigError
        Another process holds the lock (one line naming the holder), or the lock folder cannot be written.
    """
    import json
    import socket
    import sys
    import time

    from filelock import FileLock, Timeout

    if not _is_rank0():
        yield Path(out)
        return
    lock = lock_path(out)
    holder = lock.with_name(lock.name + ".holder.json")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fl = FileLock(str(lock), timeout=0)
        fl.acquire()
    except Timeout:
        raise ConfigError(f"{what} {out} is in use by another imbvision process ({_holder_text(holder)}); "
                          f"wait for it to finish or choose another {what}") from None
    except OSError as exc:
        raise ConfigError(f"cannot lock {what} {out} ({lock}: {exc.strerror or exc}); choose a writable folder") from None
    try:
        from ._io import write_json

        cmd = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        try:
            write_json(holder, {"pid": os.getpid(), "host": socket.gethostname(), "command": cmd[:300],
                                "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        except OSError:
            pass  # the lock itself holds; only the name of the holder is missing
        yield Path(out)
    finally:
        try:
            holder.unlink(missing_ok=True)
        except OSError:
            pass
        fl.release()


def staging_dir(out: str | os.PathLike[str]) -> Path:
    """Where a run into ``out`` is built: ``PARENT/.NAME.partial/NAME`` (same base name, so reports read right)."""
    out = Path(out)
    return out.parent / f".{out.name}.partial" / out.name


def _is_rank0() -> bool:
    # Under torchrun every rank calls train(); only rank 0 may clear or rename folders.
    return os.environ.get("RANK", "0") == "0"


def data_roots(source: str) -> list[tuple[Path, bool]]:
    """Folders a source string reads, each with whether it is *scanned* for images.

    Class-folder and magnetic-tile roots are scanned (anything put there becomes
    data); a CSV manifest lists its files, so only its own folder is protected.
    Cheap (no listing), so it can be checked before any work. ``demo`` sources live in the cache.
    """
    text = str(source).strip()
    kind, sep, rest = text.partition(":")
    if sep and kind in ("magnetic-tile", "folder"):
        return [(Path(rest), True)]
    if sep and kind == "csv":
        return [(Path(rest).parent, False)]
    if sep and kind == "demo" or text == "demo":
        return []
    p = Path(text)
    if p.suffix.lower() == ".csv":
        return [(p.parent, False)]
    return [(p, True)] if p.is_dir() else []


def _inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies under it (resolved paths)."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def refuse_out_in_data(out: str | os.PathLike[str], source: str) -> None:
    """Raise :class:`ConfigError` when ``out`` lies inside a data folder of ``source``, or holds one.

    A run folder under a class-folder tree is read back as images by the next
    run; a run folder that holds the data would be replaced by ``--overwrite``.
    """
    o = Path(out).resolve()
    for root, scanned in data_roots(source):
        r = root.resolve()
        if scanned and _inside(o, r):
            raise ConfigError(f"--out {out} is inside the data folder {root}: its files would be read back as data "
                              "on the next run; choose an --out outside the data")
        if _inside(r, o):
            raise ConfigError(f"--out {out} holds the data folder {root}; choose an --out outside the data")


def open_run_dir(out: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False,
                 source: str | None = None) -> Path:
    """Check ``out`` and return the staging folder to build the run in.

    Parameters
    ----------
    out
        The run folder the user asked for (``--out``).
    overwrite
        Replace an existing run folder (only once the new run has finished).
    resume
        Continue an interrupted run (its staging folder) or a finished one (copied into staging).
    source
        The data source string: an ``out`` inside its folders is refused.

    Raises
    ------
    ConfigError
        ``out`` holds a run and neither flag is given; ``out`` holds files that are not a run;
        ``out`` is inside the data; the parent folder is not writable.
    """
    out = Path(out)
    entries = check_run_dir(out, overwrite=overwrite, resume=resume, source=source)
    stage = staging_dir(out)
    if _is_rank0():
        if resume and stage.is_dir():
            pass  # an interrupted run: continue where it stopped
        else:
            shutil.rmtree(stage.parent, ignore_errors=True)
            if resume and entries:
                stage.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(out, stage)
    return ensure_output_dir(stage)


def check_run_dir(out: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False,
                  source: str | None = None) -> list[str]:
    """The refusals of :func:`open_run_dir`, without touching anything (cheap: no torch).

    Returns the names already in ``out``; raises :class:`ConfigError` as :func:`open_run_dir` does.
    """
    out = Path(out)
    if source is not None:
        refuse_out_in_data(out, source)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is an existing file, not a folder; choose another --out")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not (out / _MARK).is_file():
        shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
        raise ConfigError(f"--out {out} is a folder with other files ({shown}), not an imbvision run; "
                          "choose a new or empty --out")
    if entries and not (overwrite or resume):
        raise ConfigError(f"--out {out} already holds a run; pass --overwrite to replace it, --resume to continue it, "
                          "or choose a new --out")
    stage = staging_dir(out)
    if not (resume or overwrite) and (stage / "checkpoints" / "last.safetensors").is_file():
        raise ConfigError(f"--out {out} has an interrupted fine-tune run with a checkpoint ({stage.parent}); "
                          "pass --resume to continue it, or --overwrite to start afresh")
    return entries


def discard_run_dir(out: str | os.PathLike[str]) -> None:
    """Remove the staging folder of a failed run unless it holds a checkpoint worth resuming."""
    stage = staging_dir(out)
    if _is_rank0() and not (stage / "checkpoints" / "last.safetensors").is_file():
        shutil.rmtree(stage.parent, ignore_errors=True)


def _name_final_folder(stage: Path, out: Path) -> None:
    """The report names the folder it was written in: name the final one instead of the staging one."""
    import html

    from ._io import write_text

    report = stage / "report.html"
    try:
        text = report.read_text(encoding="utf-8")
    except OSError:
        return
    new = text.replace(html.escape(str(stage)), html.escape(str(out))).replace(str(stage), str(out))
    if new != text:
        write_text(report, new)


def commit_run_dir(out: str | os.PathLike[str]) -> Path:
    """Move the finished staging folder onto ``out`` (an older run there is replaced whole)."""
    out = Path(out)
    stage = staging_dir(out)
    if not _is_rank0():
        return out
    _name_final_folder(stage, out)
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    try:
        os.rename(stage, out)
    except BaseException:
        if old.exists() and not out.exists():
            os.rename(old, out)  # put the previous run back
        raise
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage.parent, ignore_errors=True)
    _fsync_dir(out.parent)
    return out


def check_output_file(out: str | os.PathLike[str], run: str | os.PathLike[str]) -> Path:
    """Refuse an output *file* path that is a folder, or that would replace a file of the run folder ``run``.

    Raises
    ------
    ConfigError
        ``out`` is an existing folder, or an existing file inside ``run`` (``model.json``, ``results.json``...).
    """
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name, e.g. {out / 'predictions.csv'}")
    if out.exists() and _inside(out.resolve(), Path(run).resolve()):
        raise ConfigError(f"--out {out} would overwrite a file of the run folder {run}; choose another file name")
    return out


def _damaged(run_dir: Path, name: str, why: str) -> ConfigError:
    return ConfigError(f"run {run_dir}: {name} is {why}; it is written by `imbvision train` — "
                       f"rerun train into this folder with --overwrite (or restore the file)")


def read_previous_results(run_dir: str | os.PathLike[str]) -> dict:
    """``results.json`` of a run when it is whole, else ``{}`` (it is rewritten by ``evaluate``)."""
    import json

    try:
        d = json.loads((Path(run_dir) / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def read_run_scores(run_dir: str | os.PathLike[str]):
    """The derived files ``evaluate`` needs, checked: ``(raw_scores, split, rows_by_index)``.

    ``raw_scores`` holds finite ``val`` and ``test`` lists as long as the split's parts; ``rows_by_index``
    maps each split.csv index to its row (``path``, ``label``).

    Raises
    ------
    ConfigError
        One line naming the missing or damaged file and how to make it again.
    """
    import csv
    import json
    import math

    import numpy as np

    from ._csv import unneutralize
    from .data.splits import Split

    run_dir = Path(run_dir)
    try:
        with open(run_dir / "split.csv", newline="", encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
        parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        rows = {}
        for r in table:
            r = {k: unneutralize(v or "") for k, v in r.items()}  # cells exactly as written (formula quoting undone)
            i = int(r["index"])
            parts[r["split"]].append(i)
            if r["label"] not in ("0", "1") or not r["path"]:
                raise ValueError(f"bad row {r}")
            rows[i] = r
    except FileNotFoundError:
        raise _damaged(run_dir, "split.csv", "missing") from None
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as exc:
        raise _damaged(run_dir, "split.csv", f"damaged ({type(exc).__name__})") from None
    split = Split(*(np.array(parts[k], dtype=np.int64) for k in ("train", "val", "test")))
    if not len(split.val) or not len(split.test):
        raise _damaged(run_dir, "split.csv", "damaged (no validation or test rows)")
    try:
        raw = json.loads((run_dir / "raw_scores.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _damaged(run_dir, "raw_scores.json", "missing") from None
    except (OSError, ValueError) as exc:
        raise _damaged(run_dir, "raw_scores.json", f"damaged ({type(exc).__name__})") from None
    for part, n in (("val", len(split.val)), ("test", len(split.test))):
        v = raw.get(part) if isinstance(raw, dict) else None
        if (not isinstance(v, list) or len(v) != n
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1
                           for x in v)):
            raise _damaged(run_dir, "raw_scores.json", f"damaged (its {part!r} scores do not match the "
                           f"{n} {part} rows of split.csv)")
    return raw, split, rows


def check_resume_data(run_dir: str | os.PathLike[str], records, *, resume: bool) -> str:
    """Record the data fingerprint of a run; with ``resume``, refuse data that changed since it began.

    The fingerprint covers every record's content, label, mask and group
    (:func:`imbvision._fingerprint.records_fingerprint`), so relabelled or
    dropped rows behind the same source string are noticed.

    Raises
    ------
    ConfigError
        ``resume`` and the run folder was started on other data.
    """
    import json

    from ._fingerprint import records_fingerprint
    from ._io import write_json

    path = Path(run_dir) / "data_fingerprint.json"
    fp = records_fingerprint(records)
    if resume and path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("records")
        except (OSError, ValueError, AttributeError):
            old = None
        if old is not None and old != fp:
            raise ConfigError(f"--resume: the data changed since this run began (file contents, labels, masks or "
                              f"groups differ from {path}); rerun with --overwrite to start afresh")
    write_json(path, {"records": fp, "images": len(records)})
    return fp
