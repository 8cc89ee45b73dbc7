"""The ``normality`` head: PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection",
CVPR 2022). A memory bank of the training negatives' patches reduced by greedy coreset selection,
nearest-neighbour distance with faiss; image score = the largest patch distance. Needs no positive.

Cost is linear in the data: the coreset is chosen shard by shard (:func:`sharded_coreset`), each
shard a fixed number of patches read from the (memory-mapped) feature cache, so neither the work
nor the memory of a fit grows faster than the number of training patches. Search goes through
:mod:`imbvision.strategies._bank_index`, which never uses a faiss result with a missing id or a
non-finite distance.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..errors import ConfigError, DataError, BundleError
from ._bank_index import IVF_ABOVE, PQ_ABOVE, SEARCH_KINDS, BankIndex
from ._patch_common import _build, _check_binary, _valid_rows, as_patches, patch_map
from .head_base import Arr, Head, SavedHead, finite_number
from .registry import Param, StrategyRecord, register_strategy

__all__ = ["NormalityHead", "NORMALITY_PARAMS", "greedy_coreset", "sharded_coreset", "ray_shard_runner", "SEARCH_KINDS", "SHARD_PATCHES"]

#: Patches per coreset shard (the ``shard`` parameter's default). The greedy's work is
#: ``shard × picks`` per shard, so a fit costs O(patches) at a fixed ratio. Chosen on Magnetic-tile
#: validation splits, seeds 0–2 (``benchmarks/bench_bank.py``): 8,192 lost 0.001 validation AP against the exact greedy.
SHARD_PATCHES = 8192


def greedy_coreset(X: np.ndarray, n: int, *, proj_dim: int = 64, seed: int = 0,
                   projection: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``n`` rows of ``X`` chosen by greedy k-centre selection (PatchCore's coreset).

    Parameters
    ----------
    X
        ``(N, D)`` rows (patch features).
    n
        Rows to choose; all of them (``arange(N)``) when ``n >= N``.
    proj_dim
        Distances are computed on a seeded Gaussian random projection to this many dimensions
        (Johnson-Lindenstrauss, as PatchCore does).
    projection
        ``(D, proj_dim)`` projection to use instead of drawing one (shards of one bank share it).

    Returns
    -------
    numpy.ndarray
        ``(min(n, N),)`` sorted int64 row indices; the same for the same ``seed``.

    Notes
    -----
    Each step adds the row farthest from the rows chosen so far. The squared distance to the
    new centre is ``|x|² − 2 x·c + |c|²``: one matrix-vector product per step, no ``(N, D)``
    temporary. The work is ``O(N · n)``: call it on bounded shards (:func:`sharded_coreset`) to keep
    a fit linear. Written here because no maintained library besides anomalib (a whole framework)
    ships it. The loop runs on one thread: each step is a small operation, and thread hand-offs cost
    more than they save.
    """
    N = len(X)
    if n >= N:
        return np.arange(N)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _greedy(X, n, proj_dim, seed, projection)
    finally:
        torch.set_num_threads(threads)


def _projection(dim: int, proj_dim: int, g: torch.Generator) -> torch.Tensor | None:
    if dim <= proj_dim:
        return None
    return torch.randn(dim, proj_dim, generator=g) / math.sqrt(proj_dim)


def _greedy(X: np.ndarray, n: int, proj_dim: int, seed: int, projection: np.ndarray | None) -> np.ndarray:
    N = len(X)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    proj = _projection(x.shape[1], proj_dim, g) if projection is None else torch.from_numpy(projection)
    if proj is not None:
        x = x @ proj
    x = x.contiguous()
    sq = (x * x).sum(1)
    first = int(torch.randint(N, (1,), generator=g))
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = first
    best = sq - 2.0 * torch.mv(x, x[first]) + sq[first]
    step = torch.empty_like(best)
    for j in range(1, n):
        i = int(torch.argmax(best))
        chosen[j] = i
        torch.mv(x, x[i], out=step)
        step.mul_(-2.0).add_(sq).add_(sq[i])
        torch.minimum(best, step, out=best)
    return np.sort(chosen)


def shard_plan(counts: np.ndarray, target: int, shard: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """Images grouped into shards of about ``shard`` patches and each shard's share of ``target`` picks.

    Parameters
    ----------
    counts
        ``(M,)`` valid patches per image.
    target
        Bank size to reach over all shards.
    shard
        Patches per shard (at most; a shard holds whole images).

    Returns
    -------
    list of (images, picks)
        Positions into ``counts`` (in a seeded random order, so each shard samples the whole set) and
        the shard's picks, proportional to its patches (cumulative rounding: they sum to ``target``).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    order = np.random.default_rng([int(seed), 29]).permutation(len(counts))
    n_shards = max(1, math.ceil(total / max(1, shard)))
    before = np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    which = np.minimum(before * n_shards // max(1, total), n_shards - 1)
    plan, done, seen = [], 0, 0
    for s in range(n_shards):
        imgs = order[which == s]
        if not len(imgs):
            continue
        seen += int(counts[imgs].sum())
        upto = int(round(target * seen / total))
        picks = min(int(counts[imgs].sum()), max(1, upto - done))
        plan.append((imgs, picks))
        done += picks
    return plan


def sharded_coreset(rows: Callable[[int], np.ndarray], counts: np.ndarray, target: int, *, shard: int = SHARD_PATCHES,
                    seed: int = 0, proj_dim: int = 64, run_shard=None, in_flight: int = 8
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A k-centre coreset of ``target`` patches, chosen shard by shard in bounded time and memory.

    Parameters
    ----------
    rows
        ``rows(i) -> (P_i, D)`` float32 valid patches of image ``i`` (read on demand, e.g. from the
        memory-mapped cache), for ``i`` in ``range(len(counts))``.
    counts
        ``(M,)`` ``P_i`` per image.
    target
        Bank size.
    shard
        Patches per shard. One shard holding every patch is the exact greedy coreset.
    run_shard
        ``run_shard(list of (X, picks, seed, projection)) -> list of row indices``: runs the shards'
        greedy selections (:func:`ray_shard_runner` runs them as Ray tasks); ``None`` runs them here,
        one after the other. Both give the same bank for the same seed.

    Returns
    -------
    bank, owner
        ``(target, D)`` float32 rows and ``(target,)`` int64 image of each row.

    Notes
    -----
    Each shard's greedy selection (:func:`greedy_coreset`, one shared projection) picks its
    share of ``target``; the bank is their union. The work is ``Σ shard·picks = ratio · shard ·
    patches``: linear in the data, where one greedy over all patches is quadratic. The union of
    per-shard k-centre sets covers every patch within its shard's radius (the composable
    coreset of Indyk et al. 2014); ``benchmarks/bench_bank.py`` measures radius and AP against the
    exact greedy.
    """
    plan = shard_plan(counts, target, shard, seed)
    g = torch.Generator().manual_seed(int(seed))
    dim = None
    jobs, owners = [], []
    bank, owner = [], []

    def flush():
        chosen = run_shard(jobs) if run_shard is not None else [greedy_coreset(X, m, seed=s, projection=p)
                                                                 for X, m, s, p in jobs]
        for (X, _, _, _), own, idx in zip(jobs, owners, chosen):
            bank.append(X[idx])
            owner.append(own[idx])
        jobs.clear()
        owners.clear()

    proj = None
    for s, (imgs, picks) in enumerate(plan):
        parts = [rows(int(i)) for i in imgs]
        X = np.concatenate(parts).astype(np.float32, copy=False)
        if dim is None:
            dim = X.shape[1]
            p = _projection(dim, proj_dim, g)
            proj = None if p is None else p.numpy()
        jobs.append((X, picks, int(seed) * 1000003 + s, proj))
        owners.append(np.repeat(np.asarray(imgs, dtype=np.int64), [len(p) for p in parts]))
        if run_shard is None or len(jobs) >= in_flight:  # locally one shard in memory at a time
            flush()
    if jobs:
        flush()
    return np.concatenate(bank), np.concatenate(owner)


def ray_shard_runner(num_cpus: float = 1.0):
    """A ``run_shard`` for :func:`sharded_coreset` (and :meth:`NormalityHead.fit`) that runs each shard's
    greedy selection as a Ray task on the cluster ``ray.init`` connected to (a local one, or many machines).

    The driver reads the shards (``in_flight`` at a time) and ships each to a task; the union of the
    tasks' picks is the bank, identical to the local one for the same seed.

    Raises
    ------
    ConfigError
        When Ray is not installed or not initialised.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("ray_shard_runner needs Ray: pip install 'imbvision[ray]'") from None
    if not ray.is_initialized():
        raise ConfigError("ray_shard_runner: call ray.init(...) first (address='local' or a cluster's address)")
    task = ray.remote(num_cpus=num_cpus)(_shard_task)

    def run(jobs):
        return ray.get([task.remote(X, m, s, p) for X, m, s, p in jobs])
    return run


def _shard_task(X: np.ndarray, picks: int, seed: int, projection: np.ndarray | None) -> np.ndarray:
    return greedy_coreset(X, picks, seed=seed, projection=projection)


#: The ``normality`` record's parameters (also what :class:`NormalityHead` checks its arguments against).
NORMALITY_PARAMS = {
    "ratio": Param(0.2, kind="float", low=0.0, low_open=True, high=1.0,
                   doc="coreset size as a fraction of the negatives' patches"),
    "max_bank": Param(50000, kind="int", low=1, high=10_000_000,
                      doc="largest memory bank (patches); at least one image's patches"),
    "search": Param("auto", kind="str", choices=SEARCH_KINDS,
                    doc=f"faiss exact search, inverted file (ivf), compressed inverted file (ivfpq) or HNSW; "
                        f"auto: exact up to {IVF_ABOVE:,} entries, ivf up to {PQ_ABOVE:,}, ivfpq above"),
    "shard": Param(SHARD_PATCHES, kind="int", low=256, high=100_000_000,
                   doc="patches per coreset shard (cost linear in the data); at least all patches: exact greedy"),
}


class NormalityHead(Head):
    """Distance to the nearest training-negative patch (PatchCore); needs no positive.

    Parameters
    ----------
    ratio
        Coreset size as a fraction of the training negatives' patches (PatchCore: 0.01–0.1). On
        Magnetic-tile (zero positives, duplicate-grouped splits, seeds 0–2, ``s16+s32`` patches)
        0.2 gave mean AP 0.860, 0.1 gave 0.835 and the whole bank 0.869: the tiles' normal
        texture varies, and a small bank misses some of it.
    max_bank
        Upper bound on the memory bank's size (patches); it must hold at least one image's patches.
    search
        ``exact`` (faiss ``IndexFlatL2``), ``ivf`` (``IndexIVFFlat``), ``ivfpq`` (``IndexIVFPQ``:
        compressed, 8 dimensions per byte), ``hnsw`` (``IndexHNSWFlat``) or ``auto`` (exact up to
        4,000 bank entries, ivf up to 200,000, ivfpq above). See :class:`~._bank_index.BankIndex`.
    shard
        Patches per coreset shard (:func:`sharded_coreset`); the fit's cost is linear in the data
        for a fixed shard. ``shard`` ≥ the negatives' patches gives the exact greedy coreset.

    Raises
    ------
    ConfigError
        For an unknown ``search``, a ``max_bank`` below one image's patches, or scoring before ``fit``.
    DataError
        When the training split has no negative image.
    """

    name = "normality"
    PARAMS = NORMALITY_PARAMS

    def __init__(self, ratio: float = 0.2, max_bank: int = 50000, search: str = "auto", shard: int = SHARD_PATCHES,
                 num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        v = self._check(ratio=ratio, max_bank=max_bank, search=search, shard=shard)
        self.ratio, self.max_bank, self.search, self.shard = v["ratio"], v["max_bank"], v["search"], v["shard"]
        self.bank_: np.ndarray | None = None
        self.owner_: np.ndarray | None = None  # group of each bank row (fit only; not saved)
        self.loc_, self.scale_d_ = 0.0, 1.0
        self._index: BankIndex | None = None

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, *, loss: Any = None, sampler: Any = None, sample_weight: Any = None,
            loss_name: str = "ce", seed: int | None = None, masks: Any = None, run_shard=None) -> "NormalityHead":
        """Build the memory bank from the negatives' patches (positives are not used).

        ``X.groups`` (duplicate set or group per image), when set, decides which bank rows an image may
        not use as its neighbour in :meth:`oof_decision_function` and in the scale estimate.
        ``run_shard`` runs the coreset's shards elsewhere (:func:`ray_shard_runner`); the bank is the same.
        """
        feats = as_patches(X)
        yy = _check_binary(y, len(feats))
        neg = np.flatnonzero(yy == 0)
        if len(neg) == 0:
            raise DataError("head 'normality' needs negative (normal) training images; the training split has none")
        seed = self.seed if seed is None else int(seed)
        counts = np.array([int(feats.valid(int(i)).sum()) for i in neg], dtype=np.int64)
        if self.max_bank < counts.max():
            raise ConfigError(f"normality: max_bank={self.max_bank} is below one image's {int(counts.max())} patches "
                              f"(grid {feats.grid[0]}x{feats.grid[1]}); use max_bank >= {int(counts.max())}")
        total = int(counts.sum())
        target = max(1, min(self.max_bank, int(math.ceil(self.ratio * total))))
        bank, owner = sharded_coreset(lambda j: _valid_rows(feats, int(neg[j]))[0], counts, target,
                                      shard=self.shard, seed=seed, run_shard=run_shard)
        self.bank_ = bank.astype(np.float32, copy=False)
        groups = _groups(feats)
        self.owner_ = groups[neg[owner]]
        self._index = None
        # Scale: image scores of (up to 64) training negatives, each searched without its own group's rows.
        rng = np.random.default_rng([seed, 23])
        pick = np.sort(rng.choice(len(neg), size=min(64, len(neg)), replace=False))
        own = np.array([self._image_score(_valid_rows(feats, int(neg[j]))[0], groups[neg[j]]) for j in pick])
        self.loc_ = float(np.median(own))
        self.scale_d_ = float(max(np.std(own), 1e-6))
        self.num_classes = 2
        return self

    # ------------------------------------------------------------------ search
    def _bank_index(self) -> BankIndex:
        if self._index is None:
            if self.bank_ is None:
                raise ConfigError("head 'normality' is not fitted; call fit first")
            self._index = BankIndex(self.bank_, self.search)
        return self._index

    def _search(self, q: np.ndarray, k: int = 1) -> np.ndarray:
        """``(M, k)`` Euclidean distances of ``q``'s rows to their ``k`` nearest bank entries."""
        return self._bank_index().search(q, k)[0]

    def _image_score(self, f: np.ndarray, group: Any = None) -> float:
        """Largest nearest-neighbour distance of the patches ``f``, ignoring bank rows of ``group``."""
        if group is None or self.owner_ is None:
            return float(self._search(f)[:, 0].max())
        return float(self._bank_index().nearest_excluding(f, self.owner_, group).max())

    def oof_decision_function(self, X: Any) -> np.ndarray:
        """Out-of-fold image scores of the *training* images from the one bank.

        Each image is searched without the bank rows of its own group (its own patches and its
        duplicates'), so a training negative is scored as an unseen one would be: this replaces a
        bank refit per cross-fitting fold (``fusion``). ``X`` must be the fit's images or a subset
        of them with the same ``groups``.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` standardised scores, as :meth:`decision_function`.
        """
        if self.owner_ is None:
            raise ConfigError("head 'normality': out-of-fold scores need the bank of this fit (a loaded bundle has none)")
        feats = as_patches(X)
        groups = _groups(feats)
        idx = self._bank_index()
        out = np.empty(len(feats))
        for i in range(len(feats)):
            d = idx.nearest_excluding(_valid_rows(feats, i)[0], self.owner_, groups[i])
            out[i] = (d.max() - self.loc_) / self.scale_d_
        return out

    def patch_scores(self, X: Any) -> np.ndarray:
        """``(N, h, w)`` standardised nearest-neighbour distances; padding patches get ``-inf``."""
        idx = self._bank_index()
        return patch_map(as_patches(X), lambda f: (idx.search(f, 1)[0][:, 0] - self.loc_) / self.scale_d_, 64)

    def decision_function(self, X: Any) -> np.ndarray:
        """Standardised image score: (max patch distance − median of the negatives') / their std."""
        z = self.patch_scores(X)
        return z.reshape(len(z), -1).max(axis=1)

    # ------------------------------------------------------------------ bundle
    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "loc": self.loc_, "scale": self.scale_d_}

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.bank_ is None:
            raise ConfigError("head 'normality' is not fitted")
        return {"bank": self.bank_.astype(np.float16)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> "NormalityHead":
        head = cls(**dict(config.get("params", {})), num_classes=config.get("num_classes"), seed=config.get("seed", 0))
        if "bank" not in arrays:
            raise BundleError("head 'normality' arrays lack its memory bank")
        head.bank_ = np.asarray(arrays["bank"], dtype=np.float32)
        head.loc_, head.scale_d_ = float(config["loc"]), float(config["scale"])
        return head


def _groups(feats) -> np.ndarray:
    """``(N,)`` group id per image: ``feats.groups`` (duplicate sets, groups) or each image its own."""
    g = getattr(feats, "groups", None)
    if g is None:
        return np.arange(len(feats), dtype=np.int64)
    return np.asarray(g)


register_strategy(StrategyRecord(
    name="normality", family="head",
    description="PatchCore normality model: coreset memory bank of the training negatives' patches, faiss "
                "nearest-neighbour distance; image score = largest patch distance. Trains with zero positives.",
    reference="Roth et al. 2022, Towards Total Recall in Industrial Anomaly Detection (PatchCore)",
    params=NORMALITY_PARAMS,
    build=_build(NormalityHead),
    modes=("head",), representation="patches", heatmaps=True, needs_positives=False, uses_loss=False,
    load=NormalityHead.from_arrays,
    saved=SavedHead({"bank": Arr(("n+", "D"))},
                    config=(("loc", finite_number, "a finite number"),
                            ("scale", lambda v: finite_number(v) and v > 0, "a finite number > 0"))),
    variants=("normality:ratio=0.05", "normality:ratio=0.5"),
))
