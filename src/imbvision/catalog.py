"""A cached, import-free listing of the strategy registry, so the CLI starts fast.

Registering the strategies imports torch, torchvision and scikit-learn (about
5 s). ``imbvision strategies`` and the early check of a ``--strategy`` string
need only names, parameters and descriptions, so the first call writes them
to ``<cache>/catalog/strategies-<key>.json`` and later calls read that file.
The key hashes the package version and the size and modification time of
every file in ``imbvision/strategies/``: editing a strategy refreshes it.

The early check (:func:`precheck_strategies`) only rejects what the full
parser (:func:`imbvision.strategies.parse_strategies`) rejects too -- unknown
names and unknown parameter names -- with the same messages; parameter values
and combinations are checked by the full parser when training starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import ConfigError
from .registry import Registry

__all__ = ["strategy_catalog", "precheck_strategies"]

_STRATEGY_DIR = Path(__file__).resolve().parent / "strategies"


def _cache_dir() -> Path:
    env = os.environ.get("IMBVISION_CACHE")  # the same root as data.sources.cache_root (not imported: slow)
    return (Path(env) if env else Path.home() / ".cache" / "imbvision") / "catalog"


def _key() -> str:
    h = hashlib.sha256(__version__.encode())
    for p in sorted(_STRATEGY_DIR.glob("*.py")):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _build() -> list[dict[str, Any]]:
    from .strategies.registry import list_strategies

    return [
        {
            "name": r.name,
            "family": r.family,
            "description": r.description,
            "reference": r.reference,
            "params": {k: {"default": _plain(p.default), "describe": p.describe(), "doc": p.doc}
                       for k, p in r.params.items()},
        }
        for r in list_strategies()
    ]


def _plain(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


def strategy_catalog(*, refresh: bool = False) -> list[dict[str, Any]]:
    """Every registered strategy as plain data: name, family, description, reference, params.

    Read from the cache file when it matches the installed strategy modules,
    otherwise built from the registry (slow: imports torch) and written.
    An unwritable cache folder only costs speed.
    """
    path = _cache_dir() / f"strategies-{_key()}.json"
    if not refresh:
        try:
            return json.loads(path.read_text(encoding="utf-8"))["strategies"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    rows = _build()
    try:
        from ._io import write_json

        write_json(path, {"version": __version__, "strategies": rows})
    except OSError:
        pass
    return rows


def precheck_strategies(text: str) -> None:
    """Reject unknown strategy names and parameter names in ``text`` in milliseconds.

    ``text`` is one strategy string (``focal:gamma=2+balanced-sampler``) or a
    comma-separated list of them as ``compare --strategies`` takes (``default``
    and ``all`` pass). Raises :class:`~imbvision.errors.ConfigError` worded as the
    full parser words it; anything else is left to the full parser.
    """
    rows = strategy_catalog()
    reg: Registry[dict[str, Any]] = Registry("strategy")
    for r in rows:
        reg.register(r["name"], r)
    for item in _split_items(text):
        for part in item.split("+"):
            name, _, arg = part.strip().partition(":")
            name = name.strip()
            if not name:
                continue  # the full parser words empty names
            rec = reg.get(name)
            for kv in arg.split(",") if arg else []:
                key = kv.partition("=")[0].strip()
                if key and key not in rec["params"]:
                    valid = ", ".join(rec["params"]) or "none"
                    raise ConfigError(f"strategy {name!r} has no parameter {key!r}; valid parameters: {valid}")


def _split_items(text: str) -> list[str]:
    """Split a compare list on the commas that separate strategies (not parameter commas)."""
    text = str(text).strip()
    if text in ("default", "all", ""):
        return []
    items: list[str] = []
    for chunk in text.split(","):
        chunk = chunk.strip()
        # "focal:gamma=2,alpha=0.25" -> the second chunk is a parameter of the first
        if items and "=" in chunk.split("+")[0] and ":" not in chunk.split("+")[0]:
            items[-1] += "," + chunk
        else:
            items.append(chunk)
    return items
