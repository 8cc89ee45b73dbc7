"""Per-sample signals computed on embeddings: neighbours, out-of-fold
probabilities, confident-learning flags, minority clusters, and the combined
suspect score.

Everything here is plain scikit-learn / imbalanced-learn on an ``(N, D)``
array and a binary label vector, so it is testable without a backbone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize

__all__ = [
    "cosine_neighbours", "other_share", "balanced_other_prob", "neighbour_categories", "tomek_minority",
    "oof_probabilities", "OOF", "confident_flags", "minority_isolation", "Isolation", "combine_score",
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


def _head(C: float):
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=C, class_weight="balanced", max_iter=2000),
    )


def oof_probabilities(
    X: np.ndarray,
    y: np.ndarray,
    *,
    folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    C: float = 0.05,
    repeats: int = 1,
    progress=None,
) -> OOF:
    """Out-of-fold P(positive) of a logistic-regression head on standardised features.

    Folds are stratified (and group-aware when ``groups`` is given, so images
    of one patient/part never sit on both sides). With ``repeats > 1`` the
    cross-validation is repeated with different shuffles and the
    probabilities averaged, which steadies the ranking of borderline samples.
    The head is class-balanced so that probabilities are comparable between
    classes; only their ranking within a class matters to confident learning.
    """
    n_min = int(min((y == 1).sum(), (y == 0).sum()))
    folds = int(max(2, min(folds, n_min)))
    acc = np.zeros(len(y), dtype=np.float64)
    splitter = "StratifiedKFold"
    for rep in range(repeats):
        rs = seed + 1000 * rep
        if groups is not None:
            try:
                splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=rs).split(X, y, groups))
                if any(len(np.unique(y[tr])) < 2 for tr, _ in splits):
                    raise ValueError("a training fold holds one class only")
                splitter = "StratifiedGroupKFold"
            except ValueError:
                splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=rs).split(X, y))
                splitter = "StratifiedKFold (groups too few to split by group)"
        else:
            splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=rs).split(X, y))
        for tr, te in splits:
            head = _head(C)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                head.fit(X[tr], y[tr])
            acc[te] += head.predict_proba(X[te])[:, list(head.classes_).index(1)]
            if progress is not None:
                progress()
    p1 = acc / repeats
    ap = float(average_precision_score(y, p1))
    return OOF(p1=p1, folds=folds, splitter=splitter, ap=ap,
               head=f"StandardScaler + LogisticRegression(C={C:g}, class_weight='balanced')")


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

    Single-linkage agglomerative clustering under cosine distance, cut at a
    data-driven distance: the median distance from a minority sample to its
    nearest minority neighbour plus three robust standard deviations (1.4826 x
    MAD). Single linkage cut at ``d`` gives the connected components of the
    "closer than d" graph, so a cluster of size 1 is exactly a sample with no
    other minority sample within ``d``. No number of clusters has to be chosen
    and the result is deterministic. Samples in clusters of at most ``small``
    members (default: 1, or 1% of the minority when that is larger) are
    *isolated*: an isolated positive is either a label error or a rare genuine
    variant -- which is why the audit flags it for review instead of deleting
    it.
    """
    n = Xm.shape[0]
    Z = normalize(Xm)
    D = np.clip(1.0 - Z @ Z.T, 0.0, 2.0)
    np.fill_diagonal(D, np.inf)
    nearest = D.min(axis=1)
    med = float(np.median(nearest))
    mad = float(np.median(np.abs(nearest - med))) * 1.4826
    thr = med + 3.0 * max(mad, 1e-6)
    np.fill_diagonal(D, 0.0)
    if n >= 2:
        cl = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="single", distance_threshold=thr
        ).fit_predict(D)
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
