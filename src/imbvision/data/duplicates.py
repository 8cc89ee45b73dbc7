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

Near links chain: "A looks like B, B like C" joined 74 different objects of one
kept-back set into one group. Groups are therefore grown from the strongest
link down (highest cosine, then fewest differing bits) and a near link is kept
only while the group it would make holds at most ``max_set`` images
(Kruskal's order with a size cap, written here by hand: scipy's
``connected_components`` and scikit-learn's agglomerative clustering have no
size cap). A chain is thus cut at its weakest links; exact copies always stay
together, whatever their number.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy.fft import dctn

from .._digest import sha256_file

__all__ = ["sha256_file", "phash", "hamming", "find_duplicates", "Duplicates",
           "HASH_THRESHOLD", "COSINE_THRESHOLD", "MAX_NEAR_SET", "GROUPING_BACKBONE", "GROUPING_IMAGE_SIZE"]

#: Default near-duplicate criteria (pHash bits; embedding cosine).
HASH_THRESHOLD, COSINE_THRESHOLD = 6, 0.98
#: Most images one group of near duplicates may hold (exact copies are never cut). On
#: Magnetic-tile the largest set under the criteria above holds 7 images, and no set is
#: cut at 8 (benchmarks/dup_groups.py); on a set of near-identical objects the chains are
#: cut into groups of at most 8.
MAX_NEAR_SET = 8
#: The one representation near duplicates are judged on, whatever a run's backbone,
#: ``--image-size`` or ``--tiles`` (at 224 and 448 px the same 300 photos made 10 and 34
#: sets): the embedded ImageNet EfficientNet-Lite0 at 224 px, stretched, global vector.
GROUPING_BACKBONE, GROUPING_IMAGE_SIZE = "efficientnet_lite0", 224


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
        group over exact links and the near links kept -- the images to keep on one side of a split.
    linked
        ``(len(near),)`` bool: whether each near pair's link was kept (False: cut, because it
        would have grown a group beyond ``max_set`` images; the two images may then land apart).
    max_set
        The size cap the near links were kept under.
    """

    exact: list[list[int]]
    near: list[tuple[int, int, int]]
    set_id: np.ndarray
    linked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    max_set: int = MAX_NEAR_SET
    #: ``(len(near),)`` embedding cosine of each near pair (NaN without embeddings).
    cosine: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def links_cut(self) -> int:
        """Near pairs whose link was cut by the size cap."""
        return int((~self.linked).sum()) if self.linked.size else 0

    @property
    def sets(self) -> int:
        """Number of duplicate sets (groups of two or more images)."""
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


def find_duplicates(shas: Sequence[str | None], phashes: Sequence[int | None],
                    features: "np.ndarray | Callable[[np.ndarray], np.ndarray] | None" = None,
                    *, hash_threshold: int = HASH_THRESHOLD, cosine_threshold: float = COSINE_THRESHOLD,
                    near: bool = True, max_set: int = MAX_NEAR_SET) -> Duplicates:
    """Exact and near duplicates among ``N`` images.

    Parameters
    ----------
    shas
        SHA-256 of each file (``None`` when unreadable: never a duplicate).
    phashes
        64-bit perceptual hash of each image (:func:`phash`), or ``None``.
    features
        Optional ``(N, D)`` embeddings, or ``embed(indices) -> (len(indices), D)`` called once
        with the images that have a hash-near partner (so only those are embedded: none on a
        set without look-alikes); when given, a near pair also needs cosine >= ``cosine_threshold``.
    hash_threshold, cosine_threshold
        Near-duplicate criteria (bits of 64; cosine in (0, 1]).
    near
        False: exact duplicates only.
    max_set
        Most images a group grown by near links may hold (>= 2); see the module docstring.

    Returns
    -------
    Duplicates

    Raises
    ------
    ValueError
        ``max_set`` below 2.
    """
    if max_set < 2:
        raise ValueError(f"max_set={max_set} invalid; a group of near duplicates holds at least 2 images")
    n = len(shas)
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(shas):
        if h is not None:
            by_sha[h].append(i)
    exact = sorted((v for v in by_sha.values() if len(v) > 1), key=lambda v: v[0])
    exact_of = {m: k for k, members in enumerate(exact) for m in members}
    ph = np.array([p if p is not None else 0 for p in phashes], dtype=np.uint64)
    has = np.array([p is not None for p in phashes], dtype=bool)
    if callable(features) and near:  # hash candidates first, then embed only the images in them
        ca, cb = _hash_candidates(ph, has, hash_threshold)
        keep = hamming(ph[ca], ph[cb]) <= hash_threshold if ca.size else np.zeros(0, bool)
        ca, cb = ca[keep], cb[keep]
        need = np.unique(np.concatenate([ca, cb]))
        full = np.zeros((n, 1))
        if need.size:
            part = np.asarray(features(need), dtype=np.float64)
            full = np.zeros((n, part.shape[1]))
            full[need] = part
        features = full
        Zc = full / np.maximum(np.linalg.norm(full, axis=1, keepdims=True), 1e-12)
        ok = np.einsum("ij,ij->i", Zc[ca], Zc[cb]) >= cosine_threshold - 1e-9 if ca.size else np.zeros(0, bool)
        ca, cb = ca[ok], cb[ok]
    elif not near:
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
    if features is not None and pairs:
        Z = np.asarray(features, dtype=np.float64)
        Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
        cos = np.einsum("ij,ij->i", Z[[a for a, _, _ in pairs]], Z[[b for _, b, _ in pairs]])
    else:
        cos = np.full(len(pairs), np.nan)
    # union-find; exact sets first (never cut), then near links strongest first under the size cap
    parent = np.arange(n)
    size = np.ones(n, dtype=np.int64)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]

    for s_ in exact:
        for m in s_[1:]:
            join(s_[0], m)
    linked = np.zeros(len(pairs), dtype=bool)
    strength = np.nan_to_num(cos, nan=0.0)
    for k in sorted(range(len(pairs)), key=lambda k: (-strength[k], pairs[k][2], pairs[k][0], pairs[k][1])):
        a, b, _ = pairs[k]
        ra, rb = root(a), root(b)
        if ra == rb:
            linked[k] = True
        elif size[ra] + size[rb] <= max_set:
            join(a, b)
            linked[k] = True
    comp = np.array([root(i) for i in range(n)], dtype=np.int64)
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
    return Duplicates(exact=[list(s_) for s_ in exact], near=pairs, set_id=set_id, linked=linked, max_set=max_set,
                      cosine=cos)
