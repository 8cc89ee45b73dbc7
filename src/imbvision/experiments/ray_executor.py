"""Run ``imbvision compare`` cells as Ray tasks, on this machine or on a cluster.

``imbvision compare --data DATA --out OUT --executor ray`` starts a private Ray
on this machine (one task per CPU; ``--jobs N`` caps it at N CPUs) and stops it
at the end. Each cell (strategy × seed × fold) is one task; the features ``X``,
the labels and the dataset records are put in Ray's object store once and
shared by reference. A task *returns* its cell; the driver writes it
atomically to ``OUT/cells/<id>.json`` as soon as it finishes, so the Ray and
the local executor fill the same resumable store: a run killed half-way, with
either executor, is continued by the next run with either executor, and both
give the same cells and leaderboard.

Using a cluster
---------------
1. Install the same Python environment on every machine (``pip install
   "imbvision[ray]"``, same versions of imbvision, torch and ray).
2. On the head machine::

       ray start --head --port=6379

3. On every other machine::

       ray start --address=HEAD:6379

4. On the head (or any machine that can reach it)::

       imbvision compare --data DATA --out OUT --executor ray --ray-address HEAD:6379

Recent Ray versions turn on token authentication for clusters: the driver
then needs ``RAY_AUTH_MODE=token`` in its environment and the cluster's token
(``~/.ray/auth_token``, ``RAY_AUTH_TOKEN_PATH`` or ``RAY_AUTH_TOKEN``; ``ray
get-auth-token`` on the head prints it), and so does every ``ray start
--address`` machine. Without them the connection is refused after about 20 s.

The driver (where ``imbvision compare`` runs) reads the images once, embeds
them and writes every output, so ``OUT`` only needs to exist there. Workers
only read images when a pixel-space strategy (synthesis or mixing, e.g.
``copy-paste``, ``mixup``) makes new training images: then the image and mask
paths of the dataset must be readable by every worker **at the same absolute
path** (a shared filesystem such as NFS mounted at the same place, or a copy of
the data at the same path on every machine). Workers that also see ``OUT``
share its cache of synthetic embeddings (``OUT/synthetic``) and the example
images shown in the report; workers that do not recompute them when needed
(the cells, and so the leaderboard, are the same either way).
``--ray-address auto`` connects to the cluster this machine belongs to.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .cellstore import write_cell
from ..errors import ConfigError
from .cell import CellSettings, cell_id, compute_cell


__all__ = ["run_cells_ray", "require_ray"]

_INSTALL_HINT = "pip install imbvision[ray]"


def require_ray():
    """Import and return :mod:`ray`, or raise :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--executor ray needs Ray, which is not installed ({exc}); {_INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``HEAD:6379``, ``ray://HEAD:10001``, ``[::1]:6379`` → (host, port); ``auto``, ``local`` or no port → None."""
    a = address.strip()
    if a in ("auto", "local"):
        return None
    if "://" in a:
        a = a.split("://", 1)[1]
    a = a.split("/", 1)[0]
    host, sep, port = a.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why a TCP connection to the cluster address fails (None: it opens, or cannot be checked).

    Ray itself retries an unreachable address for many minutes before it gives up; this check answers in seconds.
    """
    import socket

    hp = _host_port(address)
    if hp is None:
        return None
    try:
        with socket.create_connection(hp, timeout=timeout):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


def _connect(ray, address: str | None, num_cpus: int | None) -> bool:
    """Start a private local Ray, or connect to ``address``. Returns whether this call started Ray."""
    why = _unreachable(address) if address is not None else None
    if why is not None:
        raise ConfigError(_cannot_reach(address, why))
    if ray.is_initialized():
        return False  # the caller's own Ray session (a notebook, a test): use it, leave it running
    try:
        if address is None:
            # address="local" always starts a new private instance, even where `ray start` runs on this machine.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError, ... from ray.init
        if ray.is_initialized():
            ray.shutdown()
        if address is None:
            raise ConfigError(f"could not start a local Ray for --executor ray: {exc}") from None
        raise ConfigError(_cannot_reach(address, str(exc), port_open=True)) from None
    return True


def _cannot_reach(address: str, why: str, port_open: bool = False) -> str:
    msg = f"cannot reach the Ray cluster at --ray-address {address!r} ({why}). "
    if port_open:
        msg += ("The address answers: if the cluster uses token authentication (the default of recent Ray), set "
                "RAY_AUTH_MODE=token and make its token available (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
                "RAY_AUTH_TOKEN; `ray get-auth-token` on the head prints it). ")
    return msg + ("Start a cluster with `ray start --head --port=6379` on the head machine (and `ray start "
                  "--address=HEAD:6379` on the others), then pass --ray-address HEAD:6379; leave --ray-address out "
                  "to run Ray on this machine only")


def _absolute(records: Sequence) -> list:
    """Records with absolute image and mask paths (workers do not share the driver's working folder)."""
    out = []
    for r in records:
        mask = Path(r.mask).absolute() if r.mask is not None else None
        out.append(dataclasses.replace(r, path=Path(r.path).absolute(), mask=mask))
    return out


def _ray_cell(strategy: str, seed: int, fold: int | None, split, X: np.ndarray, y: np.ndarray, records: list,
              settings: CellSettings, store: str) -> dict[str, Any]:
    """The body of one Ray task (module-level, so workers import it rather than unpickle its code)."""
    folder = Path(store)
    # The synthetic-embedding cache lives in OUT; a worker on a machine without OUT works without it.
    use = folder if folder.parent.is_dir() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_cell(strategy, seed, fold, split, X, y, records, settings, use)


def _shippable(x: Any) -> Any:
    """An array as a contiguous array; patch features with only this run's rows, in memory (a worker on
    another machine cannot open the local memory-mapped cache)."""
    if hasattr(x, "compact"):
        return x.compact()
    return np.ascontiguousarray(x)


def run_cells_ray(
    items: Sequence[tuple[str, int, int | None, Any]],
    *,
    X: np.ndarray,
    y: np.ndarray,
    records: Sequence,
    settings: CellSettings,
    out: Path,
    address: str | None = None,
    num_cpus: int | None = None,
    on_done: Callable[[str], None] | None = None,
) -> None:
    """Compute ``items`` (``(strategy, seed, fold, split)``) as Ray tasks; write each cell as it finishes.

    Parameters
    ----------
    X, y, records
        The shared features, labels and dataset records; put in the object store once.
    settings
        The per-run cell settings (backbone, image size, threshold rule...).
    out
        The compare output folder: cells are written to ``out/cells/<id>.json`` by this (driver) process.
    address
        ``None``: start a private Ray on this machine with ``num_cpus`` CPUs (all when ``None``) and stop it at
        the end; else an existing cluster (``HEAD:6379``, ``auto``, ``ray://HEAD:10001``). When Ray is already
        initialised in this process, that session is used and left running.
    on_done
        Called with the strategy name after each cell is written (progress).

    Raises
    ------
    ConfigError
        Ray is not installed, or the cluster cannot be reached. An exception raised inside a task is re-raised
        here (cells finished before it are kept, so a rerun continues).
    """
    ray = require_ray()
    if not items:
        return
    out = Path(out).absolute()
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    owned = _connect(ray, address, num_cpus)
    pending: list = []
    try:
        feats = {k: _shippable(v) for k, v in X.items()} if isinstance(X, dict) else np.ascontiguousarray(X)
        x_ref, y_ref, rec_ref = ray.put(feats), ray.put(np.asarray(y)), ray.put(_absolute(records))
        task = ray.remote(num_cpus=1)(_ray_cell)
        store = str(out / "synthetic")
        which = {}
        for name, seed, fold, split in items:
            ref = task.remote(name, seed, fold, split, x_ref, y_ref, rec_ref, settings, store)
            which[ref] = (name, seed, fold)
            pending.append(ref)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                name, seed, fold = which.pop(ref)
                try:
                    cell = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    # Raise what the cell raised, as the local executor would (not Ray's wrapper).
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, Exception):
                        raise cause from None
                    raise
                write_cell(cells_dir / f"{cell_id(name, seed, fold)}.json", cell)
                if on_done is not None:
                    on_done(name)
    except BaseException:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort; shutdown below ends them anyway
                pass
        raise
    finally:
        if owned:
            ray.shutdown()
