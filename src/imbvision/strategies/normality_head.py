"""The ``normality`` head: PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection",
CVPR 2022). A memory bank of the training negatives' patches reduced by greedy coreset selection,
nearest-neighbour distance with faiss; image score = the largest patch distance. Needs no positive.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import BundleError, ConfigError, DataError
from ._patch_common import _build, _check_binary, _valid_rows, as_patches, patch_map
from .heads import Head
from .registry import Param, StrategyRecord, register_strategy

__all__ = ["NormalityHead", "greedy_coreset"]


def greedy_coreset(X: np.ndarray, n: int, *, proj_dim: int = 32, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` rows of ``X`` chosen by greedy k-centre selection (PatchCore's coreset).

    Each step adds the row farthest from the rows chosen so far; distances are
    computed on a seeded Gaussian random projection to ``proj_dim`` dimensions
    (Johnson-Lindenstrauss, as PatchCore does). Written here because no
    maintained library besides anomalib (a whole framework) ships it. The loop runs on one thread:
    each step is a small vector operation, and thread hand-offs cost more than they save
    (measured 14 vs 94 ms a step on a shared 2-core machine).
    """
    N = len(X)
    if n >= N:
        return np.arange(N)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _greedy(X, n, proj_dim, seed)
    finally:
        torch.set_num_threads(threads)


def _greedy(X: np.ndarray, n: int, proj_dim: int, seed: int) -> np.ndarray:
    N = len(X)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    if x.shape[1] > proj_dim:
        x = x @ (torch.randn(x.shape[1], proj_dim, generator=g) / math.sqrt(proj_dim))
    first = int(torch.randint(N, (1,), generator=g))
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = first
    best = ((x - x[first]) ** 2).sum(1)
    for j in range(1, n):
        i = int(torch.argmax(best))
        chosen[j] = i
        torch.minimum(best, ((x - x[i]) ** 2).sum(1), out=best)
    return np.sort(chosen)


class NormalityHead(Head):
    """Distance to the nearest training-negative patch (PatchCore); needs no positive.

    Parameters
    ----------
    ratio
        Coreset size as a fraction of the training negatives' patches (PatchCore: 0.01–0.1). On
        Magnetic-tile (zero positives, duplicate-grouped splits, seeds 0–1) 0.05 gave AP 0.760/0.695
        where 0.01 gave 0.739/0.617 (the tiles' normal texture varies; a 1% bank misses some of it),
        but the greedy selection then took ~7× longer (3 minutes on 2 busy cores), so 0.01 stays the
        default; raise it when fitting time allows.
    max_bank
        Upper bound on the memory bank's size (patches).
    search
        ``exact`` (faiss ``IndexFlatL2``), ``hnsw`` (faiss ``IndexHNSWFlat``, approximate, built
        single-threaded so it is the same every time) or ``auto`` (hnsw above 2,000 bank entries).
    """

    name = "normality"
    _param_names = ("ratio", "max_bank", "search")

    def __init__(self, ratio: float = 0.01, max_bank: int = 10000, search: str = "auto",
                 num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        if search not in ("auto", "exact", "hnsw"):
            raise ConfigError(f"normality: search={search!r} invalid; valid: auto, exact, hnsw")
        self.ratio, self.max_bank, self.search = float(ratio), int(max_bank), search
        self.bank_: np.ndarray | None = None
        self.loc_, self.scale_d_ = 0.0, 1.0
        self._index = None

    def fit(self, X: Any, y: Any, *, loss: Any = None, sampler: Any = None, sample_weight: Any = None,
            loss_name: str = "ce", seed: int | None = None, masks: Any = None) -> "NormalityHead":
        """Build the memory bank from the negatives' patches (positives are not used)."""
        feats = as_patches(X)
        yy = _check_binary(y, len(feats))
        neg = np.flatnonzero(yy == 0)
        if len(neg) == 0:
            raise DataError("head 'normality' needs negative (normal) training images; the training split has none")
        seed = self.seed if seed is None else int(seed)
        rng = np.random.default_rng([seed, 23])
        per = [_valid_rows(feats, int(i))[0] for i in neg]
        total = sum(len(p) for p in per)
        target = max(1, min(self.max_bank, int(math.ceil(self.ratio * total))))
        # Presample at most 4× the target at random (uniform over images) before the greedy selection.
        cap = min(total, 4 * target)
        cand = np.concatenate([p[rng.choice(len(p), size=max(1, int(round(cap * len(p) / total))), replace=False)]
                               if len(p) > 1 else p for p in per])
        self.bank_ = cand[greedy_coreset(cand, target, seed=seed)].astype(np.float32)
        self._index = None
        # Scale: image scores of (up to 64) training negatives, their patches' nearest *other* bank entry.
        pick = rng.choice(len(per), size=min(64, len(per)), replace=False)
        own = np.array([self._image_score(per[int(i)], exclude_self=True) for i in np.sort(pick)])
        self.loc_ = float(np.median(own))
        self.scale_d_ = float(max(np.std(own), 1e-6))
        self.num_classes = 2
        return self

    def _search(self, q: np.ndarray, k: int = 1) -> np.ndarray:
        import faiss

        if self._index is None:
            d = self.bank_.shape[1]
            hnsw = self.search == "hnsw" or (self.search == "auto" and len(self.bank_) > 2000)
            if hnsw:
                self._index = faiss.IndexHNSWFlat(d, 32)
                self._index.hnsw.efConstruction = 64
                self._index.hnsw.efSearch = 64
                faiss.omp_set_num_threads(1)  # a single-threaded build is deterministic
            else:
                self._index = faiss.IndexFlatL2(d)
            self._index.add(np.ascontiguousarray(self.bank_))
            faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
        d, _ = self._index.search(np.ascontiguousarray(q, dtype=np.float32), k)
        return np.sqrt(np.maximum(d, 0.0))

    def _image_score(self, f: np.ndarray, exclude_self: bool = False) -> float:
        d = self._search(f, 2 if exclude_self and len(self.bank_) > 1 else 1)
        nn = np.where(d[:, 0] <= 1e-6, d[:, -1], d[:, 0]) if exclude_self else d[:, 0]
        return float(nn.max())

    def patch_scores(self, X: Any) -> np.ndarray:
        """``(N, h, w)`` standardised nearest-neighbour distances; padding patches get ``-inf``."""
        if self.bank_ is None:
            raise ConfigError("head 'normality' is not fitted; call fit first")
        return patch_map(as_patches(X), lambda f: (self._search(f)[:, 0] - self.loc_) / self.scale_d_, 64)

    def decision_function(self, X: Any) -> np.ndarray:
        """Standardised image score: (max patch distance − median of the negatives') / their std."""
        z = self.patch_scores(X)
        return z.reshape(len(z), -1).max(axis=1)

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


register_strategy(StrategyRecord(
    name="normality", family="head",
    description="PatchCore normality model: coreset memory bank of the training negatives' patches, faiss "
                "nearest-neighbour distance; image score = largest patch distance. Trains with zero positives.",
    reference="Roth et al. 2022, Towards Total Recall in Industrial Anomaly Detection (PatchCore)",
    params={
        "ratio": Param(0.01, kind="float", low=0.0, low_open=True, high=1.0,
                       doc="coreset size as a fraction of the negatives' patches"),
        "max_bank": Param(10000, kind="int", low=1, high=1_000_000, doc="largest memory bank (patches)"),
        "search": Param("auto", kind="str", choices=("auto", "exact", "hnsw"),
                        doc="faiss exact search, HNSW (approximate), or HNSW above 2,000 entries"),
    },
    build=_build(NormalityHead),
    modes=("head",), representation="patches",
))
