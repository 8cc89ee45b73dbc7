"""Per-sample signals computed on embeddings: neighbours, out-of-fold
probabilities, confident-learning flags, minority clusters, and the combined
suspect score.

Everything here is plain scikit-learn / imbalanced-learn on an ``(N, D)``
array and a binary label vector, so it is testable without a backbone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, log_loss
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize

__all__ = [
    "cosine_neighbours", "other_share", "balanced_other_prob", "neighbour_categories", "tomek_minority",
    "oof_probabilities", "OOF", "confident_flags", "minority_isolation", "Isolation", "combine_score",
    "vote_above_class_median",
]


def cosine_neighbours(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of every row under cosine distance, itself excluded.

    Exact duplicates make "itself" ambiguous (distance 0 to several rows), so
    ``k + 1`` neighbours are asked for and the row's own index is removed
    where it appears, else the farthest one is dropped.

    Returns
    -------
    index, distance
        ``(N, k)`` arrays, nearest first.
    """
    n = X.shape[0]
    k = int(min(k, n - 1))
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(X)
    dist, idx = nn.kneighbors(X)
    out_i = np.empty((n, k), dtype=np.int64)
    out_d = np.empty((n, k), dtype=np.float64)
    for r in range(n):
        keep = idx[r] != r
        if keep.all():
            keep[-1] = False
        out_i[r] = idx[r][keep][:k]
        out_d[r] = dist[r][keep][:k]
    return out_i, np.clip(out_d, 0.0, 2.0)


def other_share(y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Share of each row's neighbours whose label differs from the row's own."""
    return (y[idx] != y[:, None]).mean(axis=1)


def balanced_other_prob(y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Prior-corrected neighbour vote for "the other class".

    A raw neighbour share is biased towards the majority (a negative has
    negatives around it just because there are more of them). Dividing each
    class's votes by its size gives a vote that is 0.5 when the neighbourhood
    looks like a random draw from both classes, for either label.
    """
    n1 = max(int((y == 1).sum()), 1)
    n0 = max(int((y == 0).sum()), 1)
    m1 = (y[idx] == 1).sum(axis=1) / n1
    m0 = (y[idx] == 0).sum(axis=1) / n0
    own = np.where(y == 1, m1, m0)
    oth = np.where(y == 1, m0, m1)
    tot = own + oth
    return np.where(tot > 0, oth / np.where(tot > 0, tot, 1.0), 0.5)


def vote_above_class_median(vote: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The part of each row's other-class vote above its class's median, rescaled to [0, 1].

    ``(v - m_c) / (1 - m_c)`` clipped at 0, with ``m_c`` the median vote of the row's class.
    When the embedding does not group a class at all (its median member is already
    surrounded by the other class, ``m_c = 1``), neighbours say nothing about that class's
    labels and the result is 0 for all of it.
    """
    v = np.asarray(vote, dtype=float)
    out = np.zeros_like(v)
    for c in np.unique(y):
        m = y == c
        med = float(np.median(v[m]))
        if med < 1.0 - 1e-9:
            out[m] = np.clip((v[m] - med) / (1.0 - med), 0.0, 1.0)
    return out


def neighbour_categories(share_other: np.ndarray) -> dict[str, int]:
    """Napierała & Stefanowski (2016) types from the share of other-class neighbours.

    With k = 5 this is their rule (0-1 other: safe, 2-3: borderline, 4: rare,
    5: outlier); other k use the same shares.
    """
    s = np.asarray(share_other, dtype=float)
    return {
        "safe": int((s <= 0.2 + 1e-9).sum()),
        "borderline": int(((s > 0.2 + 1e-9) & (s <= 0.6 + 1e-9)).sum()),
        "rare": int(((s > 0.6 + 1e-9) & (s < 1.0 - 1e-9)).sum()),
        "outlier": int((s >= 1.0 - 1e-9).sum()),
    }


def tomek_minority(y: np.ndarray, nn1: np.ndarray, minority: int) -> np.ndarray:
    """Minority members of Tomek links (mutual nearest neighbours of different labels).

    Uses :meth:`imblearn.under_sampling.TomekLinks.is_tomek`; in a binary
    problem every link has exactly one minority member, so the count of the
    returned mask is the number of links.
    """
    from imblearn.under_sampling import TomekLinks

    return np.asarray(TomekLinks.is_tomek(y, nn1, [minority]), dtype=bool)


@dataclass
class OOF:
    """Out-of-fold probabilities of the positive class and how they were made."""

    p1: np.ndarray
    folds: int
    splitter: str
    ap: float
    head: str
    C: float
    C_grid: dict[str, dict[str, float]]
    ap_repeats: list[float] = field(default_factory=list)


#: Grid searched when ``C="auto"`` (inverse regularisation of the head).
C_GRID = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
#: Features are reduced to at most this many principal components before the head.
MAX_DIMS = 256


def _reducer(dims: int, n_train: int, seed: int):
    """PCA to at most :data:`MAX_DIMS` components (when wider), then standardisation."""
    steps = []
    k = min(MAX_DIMS, n_train - 1)
    if dims > k:
        steps.append(PCA(n_components=k, svd_solver="covariance_eigh" if dims <= 4096 else "randomized",
                         random_state=seed))
    steps.append(StandardScaler())
    return make_pipeline(*steps)


def _splits(X, y, folds: int, seed: int, groups):
    if groups is not None:
        try:
            splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, y, groups))
            if any(len(np.unique(y[tr])) < 2 or len(te) == 0 for tr, te in splits):
                raise ValueError("a training fold holds one class only")
            return splits, "StratifiedGroupKFold"
        except ValueError:
            return (list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, y)),
                    "StratifiedKFold (groups too few to split by group)")
    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, y)), "StratifiedKFold"


def _prepare(X, splits, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Fit the reducer inside each training fold once; reused for every C."""
    out = []
    for tr, te in splits:
        red = _reducer(X.shape[1], len(tr), seed).fit(X[tr])
        out.append((tr, te, red.transform(X[tr]), red.transform(X[te])))
    return out


def _oof(y, prepared, C: float, tick) -> np.ndarray:
    out = np.zeros(len(y), dtype=np.float64)
    for tr, te, Xtr, Xte in prepared:
        head = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            head.fit(Xtr, y[tr])
        out[te] = head.predict_proba(Xte)[:, list(head.classes_).index(1)]
        if tick is not None:
            tick()
    return out


def oof_probabilities(
    X: np.ndarray,
    y: np.ndarray,
    *,
    folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    C: float | str = "auto",
    repeats: int = 1,
    progress=None,
) -> OOF:
    """Out-of-fold P(positive) of a logistic-regression head on standardised features.

    The head is ``[PCA to 256 dims when wider] -> StandardScaler ->
    LogisticRegression(class_weight='balanced')``, fitted inside each fold.
    Folds are stratified (and group-aware when ``groups`` is given, so images
    of one patient/part never sit on both sides). ``C="auto"`` picks the
    regularisation from :data:`C_GRID` by out-of-fold class-balanced log-loss
    on the first shuffle (on Magnetic-tile embeddings that picks a strongly
    regularised head; on small, well separated sets a weak one). With ``repeats > 1`` the
    cross-validation is repeated with other shuffles and the probabilities
    averaged, which steadies the ranking of borderline samples. The head is
    class-balanced so that probabilities are comparable between classes.
    ``OOF.ap`` is the mean of the repeats' out-of-fold APs (``OOF.ap_repeats``;
    the first equals the grid row of the chosen C), not the AP of the averaged
    probabilities, which would score an ensemble of ``repeats`` heads.
    """
    n_min = int(min((y == 1).sum(), (y == 0).sum()))
    folds = int(max(2, min(folds, n_min)))
    first, splitter = _splits(X, y, folds, seed, groups)
    prepared = _prepare(X, first, seed)
    grid: dict[str, float] = {}
    if C == "auto":
        # class-balanced log-loss: a proper scoring rule, so the chosen head gives
        # probabilities whose per-class means (the confident-learning thresholds)
        # mean something; AP alone cannot tell a shrunk head from a sharp one.
        w = np.where(y == 1, (y == 0).sum() / max((y == 1).sum(), 1), 1.0)
        best, best_ll, best_p = None, np.inf, None
        for c in C_GRID:
            p = _oof(y, prepared, c, progress)
            ll = float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), sample_weight=w, labels=[0, 1]))
            grid[f"{c:g}"] = {"balanced_log_loss": ll, "ap": float(average_precision_score(y, p))}
            if ll < best_ll - 1e-9:
                best, best_ll, best_p = c, ll, p
        C_used = float(best)
        acc = best_p.copy()
    else:
        C_used = float(C)
        acc = _oof(y, prepared, C_used, progress)
    # One AP per repeat, each from one head per fold: repeat 1 is the grid row of the chosen C.
    ap_repeats = [float(average_precision_score(y, acc))]
    for rep in range(1, repeats):
        splits, _ = _splits(X, y, folds, seed + 1000 * rep, groups)
        p_rep = _oof(y, _prepare(X, splits, seed), C_used, progress)
        ap_repeats.append(float(average_precision_score(y, p_rep)))
        acc += p_rep
    p1 = acc / max(repeats, 1)
    # The reported AP is the mean over repeats, not the AP of the averaged probabilities:
    # averaging R heads is an ensemble and scores higher than any one cross-validated head
    # (on Magnetic-tile 0.551 vs every grid value <= 0.485), which no single model achieves.
    ap = float(np.mean(ap_repeats))
    dims = f"PCA({min(MAX_DIMS, X.shape[1])}) + " if X.shape[1] > MAX_DIMS else ""
    return OOF(p1=p1, folds=folds, splitter=splitter, ap=ap, C=C_used, C_grid=grid, ap_repeats=ap_repeats,
               head=f"{dims}StandardScaler + LogisticRegression(C={C_used:g}, class_weight='balanced')")


def confident_flags(y: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
    """Confident-learning off-diagonal flags (Northcutt, Jiang & Chuang, JAIR 2021).

    Per-class thresholds ``t_j`` are the mean self-confidence of the samples
    labelled ``j``. A sample labelled ``i`` is flagged when its out-of-fold
    probability of the other class ``j`` reaches ``t_j`` while its probability
    of its own class is below ``t_i`` -- both directions: positives that look
    negative, and negatives that look positive (a missed object).

    Returns
    -------
    flags, thresholds
        Boolean ``(N,)`` mask and ``{0: t_0, 1: t_1}``.
    """
    p = np.column_stack([1.0 - p1, p1])
    t = {j: float(p[y == j, j].mean()) for j in (0, 1)}
    own = p[np.arange(len(y)), y]
    oth = p[np.arange(len(y)), 1 - y]
    t_own = np.where(y == 1, t[1], t[0])
    t_oth = np.where(y == 1, t[0], t[1])
    return (oth >= t_oth) & (own < t_own), t


@dataclass
class Isolation:
    """Minority clusters and isolation flags (indices into the minority subset)."""

    cluster: np.ndarray
    isolated: np.ndarray
    nearest: np.ndarray
    threshold: float
    sizes: list[int]


def minority_isolation(Xm: np.ndarray, *, small: int | None = None) -> Isolation:
    """Cluster the minority embeddings and flag the isolated ones.

    Clusters are the connected components of the graph linking minority
    samples closer than a data-driven cosine distance ``d``: the median
    distance from a minority sample to its nearest minority neighbour plus
    three robust standard deviations (1.4826 x MAD). That is single-linkage
    agglomerative clustering cut at ``d``, computed as ``DBSCAN(eps=d,
    min_samples=1)`` so that memory stays sparse for a large minority. No
    number of clusters has to be chosen, the result is deterministic, and a
    cluster of size 1 is exactly a sample with no other minority sample within
    ``d``. Samples in clusters of at most ``small`` members (default: 1, or 1%
    of the minority when that is larger) are *isolated*: an isolated positive
    is either a label error or a rare genuine variant -- which is why the audit
    lists it for review instead of deleting it.
    """
    n = Xm.shape[0]
    Z = normalize(Xm)
    nn = NearestNeighbors(n_neighbors=min(2, n), metric="cosine", algorithm="brute").fit(Z)
    dist, idx = nn.kneighbors(Z)
    nearest = np.full(n, np.inf)
    if n >= 2:
        # the first neighbour is the sample itself unless an exact duplicate tied with it
        nearest = np.where(idx[:, 0] == np.arange(n), dist[:, 1], dist[:, 0])
        nearest = np.clip(nearest, 0.0, 2.0)
    finite = nearest[np.isfinite(nearest)]
    med = float(np.median(finite)) if finite.size else 0.0
    mad = float(np.median(np.abs(finite - med))) * 1.4826 if finite.size else 0.0
    thr = med + 3.0 * max(mad, 1e-6)
    if n >= 2:
        cl = DBSCAN(eps=thr, min_samples=1, metric="cosine", algorithm="brute").fit_predict(Z)
    else:
        cl = np.zeros(n, dtype=np.int64)
    sizes = np.bincount(cl)
    small = small if small is not None else max(1, int(np.floor(0.01 * n)))
    isolated = sizes[cl] <= small
    return Isolation(cluster=cl, isolated=isolated, nearest=nearest, threshold=thr,
                     sizes=sorted((int(s) for s in sizes), reverse=True))


#: Weights of the combined suspect score (see :func:`combine_score`).
SCORE_WEIGHTS = {"p_other": 0.6, "knn": 0.3, "isolated": 0.1}


def combine_score(p_other: np.ndarray, knn_other: np.ndarray, isolated: np.ndarray) -> np.ndarray:
    """One suspect score in [0, 1] per sample.

    A weighted mean of the out-of-fold probability of the *other* class, the
    prior-corrected neighbour vote for the other class, and minority
    isolation (weights :data:`SCORE_WEIGHTS`). The out-of-fold probability
    leads because it is learnt from all samples; neighbours add local
    evidence the linear head cannot see; isolation alone is weak evidence (a
    rare variant is isolated too), so it only breaks ties.
    """
    w = SCORE_WEIGHTS
    s = w["p_other"] * p_other + w["knn"] * knn_other + w["isolated"] * isolated.astype(float)
    return np.clip(s, 0.0, 1.0)
