"""The resumable stores of ``compare``: cells and synthetic-image features, keyed by data and settings.

A stored item is reused only when it parses, matches the SHA-256 it was
written with, and carries the key the current run would give it; anything else (a zero-byte file, garbled JSON, a damaged
safetensors file, a key from other data or settings) is recomputed. The key is
a fingerprint of the records' content, labels, masks and groups plus the
settings and split indices (:mod:`imbvision._fingerprint`), never the source
string alone.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._digest import json_digest
from .._fingerprint import combine, split_fingerprint
from .._io import write_json
from ..notices import CacheWarning

from ..training.synthetic_store import load_synthetic, save_synthetic, synthetic_key  # re-exported

__all__ = ["cell_id", "cell_key", "load_cell", "write_cell", "read_cells", "synthetic_key", "load_synthetic", "save_synthetic", "has_cells"]


def cell_id(strategy: str, seed: int, fold: int | None) -> str:
    """The file stem of a cell: readable strategy, its hash, seed and fold."""
    h = hashlib.sha1(strategy.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in strategy)[:60]
    return f"{safe}-{h}__s{seed}" + (f"_f{fold}" if fold is not None else "")


def cell_key(data_key: str, strategy: str, seed: int, fold: int | None, split: Any) -> str:
    """Key of one compare cell: data and run settings, strategy, seed, fold and the split's indices."""
    return combine("cell-v1", data_key, strategy, seed, fold, split_fingerprint(split))


#: Every cell file carries ``sha256``: :func:`imbvision._digest.json_digest` of all its other keys.
_CHECKSUM = "sha256"


def write_cell(path: Path, cell: dict[str, Any]) -> None:
    """Write one cell atomically with the SHA-256 of its content (every executor writes through here)."""
    body = json.loads(json.dumps({k: v for k, v in cell.items() if k != _CHECKSUM}, default=_plain))
    write_json(path, {**body, _CHECKSUM: json_digest(body)})


def _plain(obj: Any) -> Any:
    from .._io import _default
    return _default(obj)


def load_cell(path: Path, key: str) -> dict[str, Any] | None:
    """The stored cell at ``path`` when it is whole, matches its SHA-256 and was made from the same data and
    settings, else ``None`` (recomputed). A cell that parses but fails its checksum (edited scores, a file
    from before checksums) is recomputed with one warning naming the file."""
    path = Path(path)
    try:
        cell = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, zero bytes, garbled, not UTF-8
        return None
    if not isinstance(cell, dict) or cell.get("key") != key:
        return None
    if cell.get(_CHECKSUM) != json_digest({k: v for k, v in cell.items() if k != _CHECKSUM}):
        warnings.warn(f"compare cell {path} fails its SHA-256 check (edited or damaged, or from before checksums); "
                      "recomputing it", CacheWarning, stacklevel=2)
        return None
    need = ("ap", "test_index", "test_score", "recall_at_p90", "f1", "mcc", "recall", "precision", "roc_auc", "head",
            "timing")
    if any(k not in cell for k in need) or len(cell["test_index"]) != len(cell["test_score"]):
        return None
    return cell


def has_cells(cells_dir: Path) -> bool:
    """Whether a compare folder holds any finished cell (so its settings are worth protecting)."""
    return Path(cells_dir).is_dir() and any(p.stat().st_size > 0 for p in Path(cells_dir).glob("*.json"))


def read_cells(cells_dir: Path, names: list[str], splits: list, data_key: "str | Callable[[str], str]"
               ) -> dict[tuple, dict[str, Any]]:
    """Every finished cell ``{(strategy, seed, fold): cell}``, each verified as :func:`load_cell` does.

    ``data_key``: the key of every cell, or ``strategy -> key`` (patch-level heads have their own).

    The library warnings a cell kept (an unconverged fit) are said again as
    :class:`~imbvision.notices.LibraryWarning` lines, so a compare says them once whether its cells were
    computed now, in another process (Ray) or by an earlier run.

    Raises
    ------
    DataError
        A cell is missing or fails its checksum or key (changed on disk while the compare ran).
    """
    from ..errors import DataError

    cells = {}
    for n in names:
        for s, f, sp in splits:
            path = Path(cells_dir) / f"{cell_id(n, s, f)}.json"
            key = data_key(n) if callable(data_key) else data_key
            cell = load_cell(path, cell_key(key, n, s, f, sp))
            if cell is None:
                raise DataError(f"compare cell {path} is missing or changed on disk while this compare ran "
                                "(checksum or key); rerun the same command to recompute it")
            cells[(n, s, f)] = cell
    from ..notices import emit_library_lines
    for cell in cells.values():
        emit_library_lines(cell.get("library_warnings"))
    return cells
