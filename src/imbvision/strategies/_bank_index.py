"""Nearest-neighbour search over a memory bank with faiss, guarded against faiss's silent failures.

faiss reports a neighbour it could not find (an inverted list probed with fewer entries than
``k``, an HNSW graph cut short) as id ``-1`` with distance ``3.4e38`` (faiss issues 244, 1780);
read as a real distance it dwarfs every other score. :meth:`BankIndex.search` never returns such
a result: those rows are searched again exactly. Index parameters are chosen so that faiss's
k-means never prints its "please provide at least N training points" warning (at least 39
training points per centroid, faiss's own threshold).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["SEARCH_KINDS", "IVF_ABOVE", "PQ_ABOVE", "BankIndex", "index_kind"]

SEARCH_KINDS = ("auto", "exact", "ivf", "ivfpq", "hnsw")
#: ``search="auto"`` uses the inverted-file index above this many bank entries ...
IVF_ABOVE = 4000
#: ... and the compressed one (IVF-PQ) above this many (≈ 350 MB as float32 at 432 dimensions).
PQ_ABOVE = 200_000
#: faiss's k-means warns below this many training points per centroid.
_MIN_PER_CENTROID = 39


def index_kind(n: int, search: str) -> str:
    """The index ``search`` gives for a bank of ``n`` entries (``auto`` resolved; IVF needs ≥ 8 lists)."""
    kind = search
    if search == "auto":
        kind = "exact" if n <= IVF_ABOVE else ("ivf" if n <= PQ_ABOVE else "ivfpq")
    if kind in ("ivf", "ivfpq") and n < 8 * _MIN_PER_CENTROID:
        kind = "exact"  # too few entries to train 8 lists without faiss's warning; exact is fast here
    return kind


def _nlist(n: int) -> int:
    return int(max(8, min(1024, round(2 * math.sqrt(n)), n // _MIN_PER_CENTROID)))


def _pq_shape(n: int, d: int) -> tuple[int, int]:
    """(sub-quantisers, bits): ≥ 8 dimensions per sub-quantiser, ≤ 64 of them; bits so that each of the
    ``2**bits`` codewords has ≥ 39 training points."""
    m = max([k for k in range(1, 65) if d % k == 0 and d // k >= 8] or [1])
    bits = int(max(1, min(8, math.floor(math.log2(max(2, n // _MIN_PER_CENTROID))))))
    return m, bits


class BankIndex:
    """A faiss index over ``bank`` rows that never returns a missing neighbour.

    Parameters
    ----------
    bank
        ``(n, d)`` float32 rows.
    search
        ``exact`` (``IndexFlatL2``), ``ivf`` (``IndexIVFFlat``: about 2·√n lists, at most n/39, 1/16 of
        them probed), ``ivfpq`` (``IndexIVFPQ``, the same lists, residuals compressed to one byte per
        8 dimensions: 54 bytes for a 432-dimensional patch instead of 1,728), ``hnsw``
        (``IndexHNSWFlat``) or ``auto`` (see :func:`index_kind`). Built single-threaded with fixed
        seeds: the same bank gives the same scores.

    Notes
    -----
    faiss (Johnson, Douze, Jégou 2019) does the search; what is written here is the guard
    (a result with id < 0 or a non-finite distance is replaced by an exact search of that row)
    and the search that skips rows of a given group (:meth:`nearest_excluding`).
    """

    def __init__(self, bank: np.ndarray, search: str = "auto") -> None:
        import faiss

        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        n, d = self.bank.shape
        self.kind = index_kind(n, search)
        self._exact = None
        self.fallback_rows = 0  # rows the guard searched again exactly (for tests and reports)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # a single-threaded build is deterministic
        try:
            if self.kind == "hnsw":
                index = faiss.IndexHNSWFlat(d, 32)
                index.hnsw.efConstruction = 64
                index.hnsw.efSearch = 64
            elif self.kind in ("ivf", "ivfpq"):
                nlist = _nlist(n)
                if self.kind == "ivf":
                    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
                else:
                    m, bits = _pq_shape(n, d)
                    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(d), d, nlist, m, bits)
                    index.pq.cp.seed = 1234
                    index.pq.cp.max_points_per_centroid = 64
                index.cp.seed = 1234
                index.cp.max_points_per_centroid = 64  # k-means on ≤ 64 points per list: bounded training
                index.train(self.bank)
                index.nprobe = max(1, nlist // 16)
            else:
                index = faiss.IndexFlatL2(d)
            index.add(self.bank)
        finally:
            faiss.omp_set_num_threads(max(1, threads))
        self.index = index

    def __len__(self) -> int:
        return len(self.bank)

    def _exact_index(self):
        import faiss

        if self.kind == "exact":
            return self.index
        if self._exact is None:
            self._exact = faiss.IndexFlatL2(self.bank.shape[1])
            self._exact.add(self.bank)
        return self._exact

    def search(self, q: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(M, k)`` Euclidean distances and bank ids of each query row's ``k`` nearest entries.

        ``k`` is capped at the bank's size. A row whose approximate result holds a missing id or a
        non-finite distance is searched again exactly, so every returned id is ≥ 0 and every
        distance finite.
        """
        q = np.ascontiguousarray(q, dtype=np.float32)
        k = int(max(1, min(k, len(self.bank))))
        D, ids = self.index.search(q, k)
        bad = ((ids < 0) | ~np.isfinite(D)).any(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            self.fallback_rows += len(rows)
            D[rows], ids[rows] = self._exact_index().search(q[rows], k)
        return np.sqrt(np.maximum(D, 0.0)), ids

    def nearest_excluding(self, q: np.ndarray, owner: np.ndarray, group: Any) -> np.ndarray:
        """``(M,)`` distance of each query row to its nearest bank entry whose ``owner`` is not ``group``.

        Searches ``1 + m`` neighbours (``m`` = the bank rows of ``group``) and drops the group's own;
        rows whose approximate result held only the group's entries are searched exactly among the
        others. A bank holding nothing but ``group`` gives the plain nearest distance.
        """
        own = owner == group
        m = int(own.sum())
        if m == 0:
            return self.search(q, 1)[0][:, 0]
        if m >= len(self.bank):
            return self.search(q, 1)[0][:, 0]
        D, ids = self.search(q, m + 1)
        D = np.where(own[ids], np.inf, D)
        d = D.min(axis=1)
        missing = ~np.isfinite(d)
        if missing.any():  # an approximate index returned the group's rows only: exact among the others
            others = self.bank[~own]
            qq = np.ascontiguousarray(q[missing], dtype=np.float32)
            d2 = (qq * qq).sum(1)[:, None] - 2.0 * qq @ others.T + (others * others).sum(1)[None]
            d[missing] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
        return d
