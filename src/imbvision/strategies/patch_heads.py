"""Heads on patch features: ``patch`` (mixed supervision), ``normality`` (PatchCore) and ``fusion``.

They take a :class:`~imbvision.backbones.patches.PatchFeatures` (a grid of
local descriptors per image) where the global heads take ``(N, D)`` rows. A
plain ``(N, D)`` array is accepted too and read as a 1×1 grid (so the common
strategy test and a global embedding still work, without localisation).

* ``patch`` – a patch classifier. Patch labels come from the masks where a
  positive has one (patches mostly inside the object are positive, patches
  outside it negative); a positive without a mask takes part through
  multiple-instance learning: its ``k`` highest-scoring patches are positive,
  re-chosen for a few rounds (MI-SVM, Andrews et al. 2002; mixed supervision as
  in Božič et al., "Mixed supervision for surface-defect detection", 2021).
  Negatives' patches are subsampled. The patch classifier is the registry's
  ``logreg`` head, or ``linear`` when the recipe's loss or sampler needs it, so
  loss and sampler remedies apply at the patch level. Image score = mean of
  the top-``k`` patch probabilities.
* ``normality`` – PatchCore (Roth et al., "Towards Total Recall in Industrial
  Anomaly Detection", CVPR 2022): a memory bank of the training negatives'
  patches reduced by greedy coreset selection, nearest-neighbour distance with
  faiss; image score = the largest patch distance. Needs no positive.
* ``fusion`` – the global head (``logreg`` on the pooled embedding), ``patch``
  and ``normality`` stacked by a logistic regression fitted on out-of-fold
  scores (cross-fitting inside the training split on folds grouped by
  duplicate set, so validation stays untouched for threshold and
  calibration; the normality base is one memory bank whose out-of-fold
  scores skip each image's own group). Its weights say which representation won.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BundleError, ConfigError, DataError
from ._patch_common import _build, _check_binary, _sigmoid, _valid_rows, as_patches, patch_map
from .head_base import Arr, Head, SavedHead, finite_number, head_from_arrays
from .heads import LogRegHead
from .normality_head import NormalityHead, greedy_coreset
from .registry import Param, StrategyRecord, register_strategy
from .torch_heads import LinearHead

__all__ = ["PatchHead", "NormalityHead", "FusionHead", "as_patches", "greedy_coreset", "PATCH_PARAMS", "FUSION_PARAMS"]

#: The ``patch`` record's parameters (also what :class:`PatchHead` checks its arguments against).
PATCH_PARAMS = {
    "k": Param(3, kind="int", low=1, high=64, doc="top patches per image in the score and in MIL"),
    "neg_patches": Param(48, kind="int", low=1, high=4096, doc="patches drawn per negative image"),
    "pos_fraction": Param(0.3, kind="float", low=0.0, low_open=True, high=1.0,
                          doc="share of a patch inside the mask that makes it positive"),
    "mil_rounds": Param(2, kind="int", low=0, high=10, doc="MIL re-selection rounds for unmasked positives"),
    "C": Param(0.1, kind="float", low=0.0, low_open=True, doc="inverse L2 strength of the patch logreg"),
}

#: How the normality base of ``fusion`` is cross-fitted.
OOF_KINDS = ("one-bank", "refit")

#: The ``fusion`` record's parameters (also what :class:`FusionHead` checks its arguments against).
FUSION_PARAMS = {
    "folds": Param(3, kind="int", low=2, high=10, doc="cross-fitting folds inside the training split"),
    "C": Param(1.0, kind="float", low=0.0, low_open=True, doc="inverse L2 strength of the stacker"),
    "oof": Param("one-bank", kind="str", choices=OOF_KINDS,
                 doc="normality's out-of-fold scores: one bank searched without each image's group, or a "
                     "bank refitted per fold"),
}

# --------------------------------------------------------------------------- #
# patch head
# --------------------------------------------------------------------------- #
class PatchHead(Head):
    """Patch classifier with mixed supervision (masks where given, MIL elsewhere).

    Parameters
    ----------
    k
        Patches per image in the image score (mean of the top ``k``) and positives per unmasked image in MIL.
    neg_patches
        Patches drawn per negative image (and per masked positive's background).
    pos_fraction
        A patch is positive when at least this fraction of its pixels lies in the mask.
    mil_rounds
        Refit rounds after the first: positives without a mask re-choose their top-``k`` patches, and
        every negative adds its ``k`` highest-scoring patches (hard negatives: the patches that decide
        its image score). On Magnetic-tile (5% positives, seeds 0–1) hard negatives lifted AP from
        0.620 to 0.647 with masks and from 0.664 to 0.685 without.
    C
        Inverse L2 strength of the patch ``logreg``.
    """

    name = "patch"
    PARAMS = PATCH_PARAMS

    def __init__(self, k: int = 3, neg_patches: int = 48, pos_fraction: float = 0.3, mil_rounds: int = 2,
                 C: float = 0.1, num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        v = self._check(k=k, neg_patches=neg_patches, pos_fraction=pos_fraction, mil_rounds=mil_rounds, C=C)
        self.k, self.neg_patches, self.mil_rounds = v["k"], v["neg_patches"], v["mil_rounds"]
        self.pos_fraction, self.C = v["pos_fraction"], v["C"]
        self.inner: Head | None = None
        self.info_: dict[str, Any] = {}

    def _rows(self, feats, y, masks, rng, inner: Head | None, loss_name: str):
        Xs, ys, ws = [], [], []
        n_mask = n_mil = 0
        for i in range(len(feats)):
            f, flat = _valid_rows(feats, i)
            m = None if masks is None else masks[i]
            if y[i] == 0:
                take = rng.choice(len(f), size=min(self.neg_patches, len(f)), replace=False)
                if inner is not None:  # hard negatives: the k patches that decide this image's score
                    hard = np.argsort(-inner.decision_function(f), kind="stable")[:self.k]
                    take = np.union1d(take, hard)
                Xs.append(f[take]), ys.append(np.zeros(len(take))), ws.append(np.ones(len(take)))
            elif m is not None:
                n_mask += 1
                frac = np.asarray(m, dtype=np.float64).reshape(-1)[flat]
                pos = np.flatnonzero(frac >= self.pos_fraction)
                if len(pos) == 0:  # a tiny object: its best-covered patch
                    pos = np.array([int(np.argmax(frac))])
                bg = np.flatnonzero(frac == 0)
                bg = rng.choice(bg, size=min(self.neg_patches, len(bg)), replace=False) if len(bg) else bg
                Xs += [f[pos], f[bg]]
                ys += [np.ones(len(pos)), np.zeros(len(bg))]
                ws += [np.ones(len(pos)), np.ones(len(bg))]
            else:
                n_mil += 1
                if inner is None:  # first round, no model yet: every patch, total weight k
                    Xs.append(f), ys.append(np.ones(len(f))), ws.append(np.full(len(f), min(self.k, len(f)) / len(f)))
                else:
                    s = inner.decision_function(f)
                    top = np.argsort(-s, kind="stable")[:self.k]
                    Xs.append(f[top]), ys.append(np.ones(len(top))), ws.append(np.ones(len(top)))
        return np.concatenate(Xs), np.concatenate(ys), np.concatenate(ws), n_mask, n_mil

    def _new_inner(self, loss_name: str, sampler: Any) -> Head:
        if sampler is None and LogRegHead.supports(loss_name):
            return LogRegHead(C=self.C, max_iter=500, seed=self.seed)
        return LinearHead(epochs=30, batch_size=512, seed=self.seed)

    def fit(self, X: Any, y: Any, *, loss: Any = None, sampler: Any = None, sample_weight: Any = None,
            loss_name: str = "ce", seed: int | None = None, masks: Sequence[np.ndarray | None] | None = None
            ) -> "PatchHead":
        """Fit on patch features, image labels and optional per-image mask grids.

        ``masks[i]`` is image i's ``(h, w)`` object fraction per patch (``mask_to_grid``) or ``None``.
        The loss is rebuilt by name at the patch level's class counts (its image-level weights would not fit).
        """
        feats = as_patches(X)
        masks = feats.masks if masks is None else masks
        yy = _check_binary(y, len(feats))
        if yy.sum() == 0 or (yy == 0).sum() == 0:
            raise DataError("head 'patch' needs positive and negative training images; with no positive use 'normality'")
        if masks is not None and len(masks) != len(feats):
            raise DataError(f"masks has {len(masks)} entries for {len(feats)} images")
        seed = self.seed if seed is None else int(seed)
        rng = np.random.default_rng([seed, 17])
        has_mask = masks is not None and any(m is not None for i, m in enumerate(masks) if yy[i] == 1)
        all_mask = masks is not None and all(masks[i] is not None for i in np.flatnonzero(yy == 1))
        inner: Head | None = None
        rounds = 1 + self.mil_rounds  # later rounds re-choose MIL positives and add hard negatives
        for r in range(rounds):
            sub = masks
            if r == 0 and has_mask and not all_mask:  # first fit on masked positives only
                keep = np.array([yy[i] == 0 or masks[i] is not None for i in range(len(feats))])
                Xr, yr, wr, n_mask, n_mil = self._rows(feats.take(np.flatnonzero(keep)), yy[keep],
                                                       [masks[i] for i in np.flatnonzero(keep)], rng, None, loss_name)
            else:
                Xr, yr, wr, n_mask, n_mil = self._rows(feats, yy, sub, rng, inner, loss_name)
            head = self._new_inner(loss_name, sampler)
            head.fit(Xr, yr, loss=None, sampler=sampler, sample_weight=wr, loss_name=loss_name, seed=seed)
            inner = head
        self.inner = inner
        self.num_classes = 2
        self.info_ = {"patch_rows": int(len(yr)), "positive_patches": int(yr.sum()),
                      "masked_positives": n_mask, "mil_positives": int((yy == 1).sum()) - n_mask,
                      "inner": inner.name}
        return self

    def patch_scores(self, X: Any) -> np.ndarray:
        """``(N, h, w)`` patch logits; padding patches get ``-inf``."""
        if self.inner is None:
            raise ConfigError("head 'patch' is not fitted; call fit first")
        return patch_map(as_patches(X), self.inner.decision_function, 256)

    def decision_function(self, X: Any) -> np.ndarray:
        """Image logit: logit of the mean of the top-``k`` patch probabilities."""
        z = self.patch_scores(X)
        n = len(z)
        flat = z.reshape(n, -1)
        k = min(self.k, flat.shape[1])
        top = -np.sort(-flat, axis=1)[:, :k]
        p = np.where(np.isfinite(top), _sigmoid(top), np.nan)
        p = np.clip(np.nanmean(p, axis=1), 1e-12, 1 - 1e-12)
        return np.log(p) - np.log1p(-p)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "inner": None if self.inner is None else self.inner.get_config()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.inner is None:
            raise ConfigError("head 'patch' is not fitted")
        return {f"inner.{k}": v for k, v in self.inner.to_arrays().items()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> "PatchHead":
        head = cls(**dict(config.get("params", {})), num_classes=config.get("num_classes"), seed=config.get("seed", 0))
        if not config.get("inner"):
            raise BundleError("head 'patch' config lacks its inner classifier")
        head.inner = head_from_arrays({k[6:]: v for k, v in arrays.items() if k.startswith("inner.")}, config["inner"])
        return head


# --------------------------------------------------------------------------- #
# fusion head
# --------------------------------------------------------------------------- #
_BASES = ("global", "patch", "normality")


class FusionHead(Head):
    """Global, patch and normality scores stacked by a logistic regression fitted by cross-fitting.

    Parameters
    ----------
    folds
        Folds of the cross-fitting inside the training split (out-of-fold scores train the stacker),
        grouped by duplicate set / group (``StratifiedGroupKFold``), so no image is scored by a base
        head that saw its near duplicate.
    C
        Inverse L2 strength of the stacker.
    oof
        How the normality base gets its out-of-fold scores: ``one-bank`` (one memory bank of every
        training negative; each image searched without its own group's bank rows,
        :meth:`NormalityHead.oof_decision_function`) or ``refit`` (a bank per fold, ``folds + 1``
        banks: the costlier check it replaces).

    Raises
    ------
    DataError
        With fewer than 2 positive and 2 negative training images, or a fold whose training part lacks
        a class (too few groups of positives).
    """

    name = "fusion"
    PARAMS = FUSION_PARAMS

    def __init__(self, folds: int = 3, C: float = 1.0, oof: str = "one-bank", num_classes: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        v = self._check(folds=folds, C=C, oof=oof)
        self.folds, self.C, self.oof = v["folds"], v["C"], v["oof"]
        self.bases: dict[str, Head] = {}
        self.coef_: np.ndarray | None = None
        self.intercept_ = 0.0
        self.col_mean_ = np.zeros(3)
        self.col_scale_ = np.ones(3)

    @staticmethod
    def _new_bases(seed: int) -> dict[str, Head]:
        return {"global": LogRegHead(C=0.01, seed=seed), "patch": PatchHead(seed=seed),
                "normality": NormalityHead(seed=seed)}

    @staticmethod
    def _base_scores(bases: Mapping[str, Head], feats, which: Sequence[str] = _BASES) -> np.ndarray:
        g = feats.global_ if feats.global_ is not None else None
        if g is None:
            raise DataError("head 'fusion' needs the global embedding beside the patch features (PatchFeatures.global_)")
        score = {"global": lambda: bases["global"].decision_function(g),
                 "patch": lambda: bases["patch"].decision_function(feats),
                 "normality": lambda: bases["normality"].decision_function(feats)}
        return np.stack([score[b]() for b in which], 1)

    def _fit_bases(self, feats, y, masks, seed, loss_name, sampler, which: Sequence[str] = _BASES) -> dict[str, Head]:
        bases = {b: h for b, h in self._new_bases(seed).items() if b in which}
        if "global" in bases:
            bases["global"].fit(feats.global_, y, loss_name=loss_name if LogRegHead.supports(loss_name) else "ce",
                                seed=seed)
        if "patch" in bases:
            bases["patch"].fit(feats, y, loss_name=loss_name, sampler=sampler, seed=seed, masks=masks)
        if "normality" in bases:
            bases["normality"].fit(feats, y, seed=seed)
        return bases

    def _folds(self, yy: np.ndarray, groups: np.ndarray, seed: int):
        """Cross-fitting folds grouped by ``groups``, each with both classes in its training part."""
        from sklearn.model_selection import StratifiedGroupKFold

        pos_groups = len(np.unique(groups[yy == 1]))
        k = max(2, min(self.folds, pos_groups))
        if pos_groups < 2 or len(np.unique(groups[yy == 0])) < 2:
            raise DataError(f"head 'fusion' needs positives and negatives from at least 2 groups (duplicate sets) "
                            f"each for its cross-fitting; the training split has {pos_groups} positive group(s)")
        folds = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(yy)), yy, groups))
        for tr, _ in folds:
            if yy[tr].min() == yy[tr].max():
                raise DataError("head 'fusion': a cross-fitting fold's training part holds one class only (too few "
                                "groups of positives); lower fusion:folds or add positives")
        return folds

    def fit(self, X: Any, y: Any, *, loss: Any = None, sampler: Any = None, sample_weight: Any = None,
            loss_name: str = "ce", seed: int | None = None, masks: Sequence[np.ndarray | None] | None = None
            ) -> "FusionHead":
        """Cross-fit the base heads on duplicate-grouped folds, fit the stacker on their out-of-fold scores.

        The global and patch bases are refitted per fold and once on all rows; the normality base is one
        bank of all training negatives (``oof="one-bank"``).
        """
        from sklearn.linear_model import LogisticRegression

        feats = as_patches(X)
        masks = feats.masks if masks is None else masks
        yy = _check_binary(y, len(feats))
        n_pos = int(yy.sum())
        if n_pos < 2 or (yy == 0).sum() < 2:
            raise DataError(f"head 'fusion' needs at least 2 positive and 2 negative training images (has {n_pos} "
                            "positive); with no positive use 'normality'")
        seed = self.seed if seed is None else int(seed)
        groups = np.arange(len(feats)) if feats.groups is None else np.asarray(feats.groups)
        per_fold = _BASES if self.oof == "refit" else ("global", "patch")
        oof = np.zeros((len(feats), 3))
        cols = [_BASES.index(b) for b in per_fold]
        for tr, te in self._folds(yy, groups, seed):
            sub = [masks[i] for i in tr] if masks is not None else None
            bases = self._fit_bases(feats.take(tr), yy[tr], sub, seed, loss_name, sampler, per_fold)
            oof[np.ix_(te, cols)] = self._base_scores(bases, feats.take(te), per_fold)
        self.bases = self._fit_bases(feats, yy, masks, seed, loss_name, sampler)
        if self.oof == "one-bank":
            oof[:, 2] = self.bases["normality"].oof_decision_function(feats)
        self.col_mean_, self.col_scale_ = oof.mean(0), np.maximum(oof.std(0), 1e-6)
        stack = LogisticRegression(C=self.C, max_iter=1000).fit((oof - self.col_mean_) / self.col_scale_, yy)
        self.coef_, self.intercept_ = stack.coef_[0].astype(np.float64), float(stack.intercept_[0])
        self.num_classes = 2
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Stacker weight per representation (on standardised scores): the larger, the more it counts."""
        if self.coef_ is None:
            return {}
        return {b: float(c) for b, c in zip(_BASES, self.coef_)}

    def decision_function(self, X: Any) -> np.ndarray:
        if self.coef_ is None:
            raise ConfigError("head 'fusion' is not fitted; call fit first")
        s = self._base_scores(self.bases, as_patches(X))
        return ((s - self.col_mean_) / self.col_scale_) @ self.coef_ + self.intercept_

    def patch_scores(self, X: Any) -> np.ndarray:
        """``(N, h, w)``: the patch and normality heads' patch maps, standardised and weighted as in the stacker."""
        feats = as_patches(X)
        out = np.zeros((len(feats), *feats.grid))
        for j, b in ((1, "patch"), (2, "normality")):
            out = out + max(self.coef_[j], 0.0) * (self.bases[b].patch_scores(feats) - self.col_mean_[j]) / self.col_scale_[j]
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bases": {b: h.get_config() for b, h in self.bases.items()},
                "weights": self.weights, "intercept": self.intercept_}

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.coef_ is None:
            raise ConfigError("head 'fusion' is not fitted")
        out = {"coef": self.coef_, "col_mean": self.col_mean_, "col_scale": self.col_scale_}
        for b, h in self.bases.items():
            out.update({f"{b}.{k}": v for k, v in h.to_arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> "FusionHead":
        head = cls(**dict(config.get("params", {})), num_classes=config.get("num_classes"), seed=config.get("seed", 0))
        for key in ("coef", "col_mean", "col_scale"):
            if key not in arrays:
                raise BundleError(f"head 'fusion' arrays lack {key}")
        head.coef_ = np.asarray(arrays["coef"], np.float64)
        head.col_mean_, head.col_scale_ = np.asarray(arrays["col_mean"]), np.asarray(arrays["col_scale"])
        head.intercept_ = float(config["intercept"])
        head.bases = {b: head_from_arrays({k[len(b) + 1:]: v for k, v in arrays.items() if k.startswith(b + ".")},
                                          config["bases"][b]) for b in _BASES}
        return head


# --------------------------------------------------------------------------- #
# registry
# --------------------------------------------------------------------------- #
def _k_in_grid(cfg: Mapping[str, Any], grid: tuple[int, int] | None) -> str | None:
    """A saved ``patch`` head's ``k`` fits the patch grid recorded at training."""
    k = cfg.get("params", {}).get("k")
    if grid is not None and isinstance(k, int) and not isinstance(k, bool) and k > grid[0] * grid[1]:
        return f"params.k: {k} is more than the {grid[0]}x{grid[1]} patches of the grid"
    return None


register_strategy(StrategyRecord(
    name="patch", family="head",
    description="Patch classifier on mid-level patch features: mask-labelled patches where a positive has a mask, "
                "multiple-instance learning (top-k patches) for the rest; image score = mean of the top-k patch scores.",
    reference="Božič et al. 2021, mixed supervision for surface-defect detection; MI-SVM (Andrews et al. 2002)",
    params=PATCH_PARAMS,
    build=_build(PatchHead),
    modes=("head",), representation="patches", heatmaps=True, reads_masks=True, load=PatchHead.from_arrays,
    saved=SavedHead(config=(_k_in_grid,), nested=(("inner", "inner", None, "patch"),)),
))

register_strategy(StrategyRecord(
    name="fusion", family="head",
    description="Stacks the global logreg, patch and normality heads with a logistic regression fitted on "
                "out-of-fold scores inside the training split; the weights show which representation won.",
    reference="stacked generalisation (Wolpert 1992) with cross-fitting",
    params=FUSION_PARAMS,
    build=_build(FusionHead),
    modes=("head",), representation="patches", heatmaps=True, reads_masks=True, load=FusionHead.from_arrays,
    saved=SavedHead({"coef": Arr((3,)), "col_mean": Arr((3,)), "col_scale": Arr((3,), positive=True)},
                    config=(("intercept", finite_number, "a finite number"),),
                    nested=(("bases.global", "global", "logreg", "global"), ("bases.patch", "patch", "patch", "patch"),
                            ("bases.normality", "normality", "normality", "patch"))),
))
