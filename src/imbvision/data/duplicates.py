"""Duplicate detection, one implementation for the audit and for leak-proof splits.

Exact duplicates share their file bytes (SHA-256, :func:`imbvision._digest.sha256_file`).
Near duplicates have perceptual hashes within ``hash_threshold`` of 64 bits
and -- when embeddings are given -- an embedding cosine of at least
``cosine_threshold`` (requiring both keeps textures that look alike to one
measure only, uniform backgrounds or tiles of one part, apart).

The perceptual hash is written here by hand (a DCT "pHash", as described by
Zauner, 2010, and popularised by the ``imagehash`` package) because
``imagehash`` is not a dependency of imbvision and the algorithm is twenty
lines of Pillow + NumPy + SciPy. It is robust to re-encoding, resizing,
small brightness/contrast changes and mild blur, which is what "the same
picture saved twice" looks like in practice. Without embeddings, candidate
pairs come from multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012):
two hashes within ``t`` bits agree exactly on at least one of ``t + 1``
blocks, so only hashes sharing a block are compared.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image
from scipy.fft import dctn

from .._digest import sha256_file

__all__ = ["sha256_file", "phash", "hamming", "find_duplicates", "Duplicates",
           "HASH_THRESHOLD", "COSINE_THRESHOLD"]

#: Default near-duplicate criteria (pHash bits; embedding cosine).
HASH_THRESHOLD, COSINE_THRESHOLD = 6, 0.98


def phash(rgb: np.ndarray, *, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """64-bit DCT perceptual hash of an ``(H, W, 3)`` uint8 image.

    The image is reduced to grey at ``hash_size * highfreq_factor`` pixels a
    side, transformed with a 2-D DCT, and the ``hash_size x hash_size`` lowest
    frequencies are thresholded at their median (the DC term is left out of the
    median, as it only carries mean brightness).

    Returns
    -------
    int
        The hash as an unsigned integer of ``hash_size**2`` bits.
    """
    side = hash_size * highfreq_factor
    grey = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("L").resize((side, side), Image.LANCZOS)
    coeffs = dctn(np.asarray(grey, dtype=np.float64), type=2, norm="ortho")[:hash_size, :hash_size]
    flat = coeffs.ravel()
    bits = flat > np.median(flat[1:])
    out = 0
    for b in bits:
        out = (out << 1) | int(b)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance between two arrays of uint64 hashes."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))).astype(np.int64)


@dataclass
class Duplicates:
    """What :func:`find_duplicates` found.

    Attributes
    ----------
    exact
        Sets of indices with identical bytes (each sorted, sets ordered by first member).
    near
        ``(a, b, hamming)`` near-duplicate pairs, ``a < b``, not in the same exact set, sorted.
    set_id
        ``(N,)`` int: 0 for an image with no duplicate, else the id (1, 2, ...) of its
        connected component over exact and near links -- the images to keep on one side of a split.
    """

    exact: list[list[int]]
    near: list[tuple[int, int, int]]
    set_id: np.ndarray

    @property
    def sets(self) -> int:
        """Number of duplicate sets (connected components of two or more images)."""
        return int(self.set_id.max()) if self.set_id.size else 0

    @property
    def images_in_sets(self) -> int:
        return int((self.set_id > 0).sum())


def _hash_candidates(ph: np.ndarray, ok: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``a < b`` sharing at least one of ``threshold + 1`` bit blocks (multi-index hashing)."""
    blocks = min(threshold + 1, 64)
    edges = np.linspace(0, 64, blocks + 1).astype(int)
    pairs: set[tuple[int, int]] = set()
    idx = np.flatnonzero(ok)
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64(((1 << (hi - lo)) - 1) << lo)
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, key in zip(idx, (ph[idx] & mask).tolist()):
            buckets[key].append(int(i))
        for members in buckets.values():
            for j, a in enumerate(members):
                pairs.update((a, b) for b in members[j + 1:])
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.array(sorted(pairs), dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def _cosine_candidates(features: np.ndarray, cosine_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``a < b`` with embedding cosine >= ``cosine_threshold`` (sparse radius search)."""
    from sklearn.neighbors import NearestNeighbors

    Z = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(Z)
    _, neigh = nn.radius_neighbors(Z, radius=1.0 - cosine_threshold + 1e-9, sort_results=False)
    ca, cb = [], []
    for a, nb in enumerate(neigh):
        nb = nb[nb > a]
        ca.append(np.full(nb.size, a, dtype=np.int64))
        cb.append(nb.astype(np.int64))
    if not ca:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ca), np.concatenate(cb)


def find_duplicates(shas: Sequence[str | None], phashes: Sequence[int | None], features: np.ndarray | None = None,
                    *, hash_threshold: int = HASH_THRESHOLD, cosine_threshold: float = COSINE_THRESHOLD,
                    near: bool = True) -> Duplicates:
    """Exact and near duplicates among ``N`` images.

    Parameters
    ----------
    shas
        SHA-256 of each file (``None`` when unreadable: never a duplicate).
    phashes
        64-bit perceptual hash of each image (:func:`phash`), or ``None``.
    features
        Optional ``(N, D)`` embeddings; when given, a near pair also needs cosine >= ``cosine_threshold``.
    hash_threshold, cosine_threshold
        Near-duplicate criteria (bits of 64; cosine in (0, 1]).
    near
        False: exact duplicates only.

    Returns
    -------
    Duplicates
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(shas)
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(shas):
        if h is not None:
            by_sha[h].append(i)
    exact = sorted((v for v in by_sha.values() if len(v) > 1), key=lambda v: v[0])
    exact_of = {m: k for k, members in enumerate(exact) for m in members}
    ph = np.array([p if p is not None else 0 for p in phashes], dtype=np.uint64)
    has = np.array([p is not None for p in phashes], dtype=bool)
    if not near:
        ca = cb = np.zeros(0, np.int64)
    elif features is not None:
        ca, cb = _cosine_candidates(np.asarray(features, dtype=np.float64), cosine_threshold)
        ok = has[ca] & has[cb]
        ca, cb = ca[ok], cb[ok]
    else:
        ca, cb = _hash_candidates(ph, has, hash_threshold)
    ham = hamming(ph[ca], ph[cb]) if ca.size else np.zeros(0, np.int64)
    sel = ham <= hash_threshold
    pairs = sorted((int(a), int(b), int(h)) for a, b, h in zip(ca[sel], cb[sel], ham[sel])
                  if not (int(a) in exact_of and exact_of.get(int(b)) == exact_of[int(a)]))
    rows = [a for s in exact for a in s[1:]] + [a for a, _, _ in pairs]
    cols = [s[0] for s in exact for _ in s[1:]] + [b for _, b, _ in pairs]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=1) if n else np.zeros(0, np.int64)
    set_id = np.zeros(n, dtype=np.int64)
    next_id = 0
    seen: dict[int, int] = {}
    for i in range(n):  # number sets by their first image, so ids are stable for a given order
        c = int(comp[i])
        if sizes[c] > 1:
            if c not in seen:
                next_id += 1
                seen[c] = next_id
            set_id[i] = seen[c]
    return Duplicates(exact=[list(s) for s in exact], near=pairs, set_id=set_id)
