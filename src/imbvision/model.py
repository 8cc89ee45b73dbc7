"""The saved model: safetensors weights plus a JSON description, never pickle.

``model.json`` records the backbone and its preprocessing, the strategy, the
head, the prior correction, the calibration and the threshold, class names,
library versions and the SHA-256 of ``model.safetensors``. Loading checks the
format, the hash (a tampered or truncated file is refused) and builds the
model back from arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._digest import sha256_file as _sha256
from ._io import atomic_write, write_json
from .errors import BadFileError, BundleError

__all__ = ["Model", "save_bundle", "FORMAT", "FORMAT_VERSION"]

FORMAT = "imbvision-model"
FORMAT_VERSION = 2  # 2: model.json covered by meta_sha256 and validated (bundle_schema)
WEIGHTS = "model.safetensors"
META = "model.json"


def _versions() -> dict[str, str]:
    import sklearn
    import timm
    import torch

    from ._version import __version__
    return {"imbvision": __version__, "torch": torch.__version__, "timm": timm.__version__, "sklearn": sklearn.__version__}


def save_bundle(run_dir: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` then ``model.json`` atomically.

    ``model.json`` gets the weights' SHA-256, the backbone weights file's absolute
    path and SHA-256 (so the bundle works from any folder), and ``meta_sha256``
    over everything else; it is validated against :mod:`imbvision.bundle_schema`
    before it is written, so every saved bundle loads.
    """
    from safetensors.numpy import save

    from .bundle_schema import meta_digest, validate_meta, weights_record

    run_dir = Path(run_dir)
    with atomic_write(run_dir / WEIGHTS, "wb") as fh:
        fh.write(save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
    meta = json.loads(json.dumps(meta, default=_plain))  # plain JSON types, as a reader will see them
    if isinstance(meta.get("backbone"), dict):
        meta["backbone"].update(weights_record(meta["backbone"].get("weights")))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
            "versions": _versions(), "weights_sha256": _sha256(run_dir / WEIGHTS)}
    meta["meta_sha256"] = meta_digest(meta)
    validate_meta(meta, run_dir / META)
    write_json(run_dir / META, meta)
    return run_dir / META


def _plain(obj: Any) -> Any:
    from ._io import _default
    return _default(obj)


@dataclass
class Model:
    """A trained imbvision model, loaded from a run folder.

    Examples
    --------
    >>> model = Model.load("runs/demo/best")            # doctest: +SKIP
    >>> p = model.predict_proba(["a.png", "b.png"])     # doctest: +SKIP
    >>> flags = model.predict(["a.png"])                # at the stored threshold
    """

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    run_dir: Path
    _head: Any = field(default=None, repr=False)
    _backbone: Any = field(default=None, repr=False)
    _post: Any = field(default=None, repr=False)
    _net: Any = field(default=None, repr=False)
    weights_override: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | Path, *, weights: str | Path | None = None) -> "Model":
        """Read and verify a bundle; raises :class:`BundleError` when anything is off.

        ``model.json`` is checked against its ``meta_sha256`` and the schema of
        :mod:`imbvision.bundle_schema`; ``model.safetensors`` against ``weights_sha256``.
        ``weights`` points to the backbone weights file when it has moved since training
        (it must have the SHA-256 recorded at training).
        """
        from safetensors.numpy import load_file

        from .bundle_schema import validate_meta

        run_dir = Path(run_dir)
        meta_path, w_path = run_dir / META, run_dir / WEIGHTS
        if not meta_path.is_file() or not w_path.is_file():
            raise BundleError(f"{run_dir} is not a model folder: expected {META} and {WEIGHTS} (made by `imbvision train`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise BundleError(f"{meta_path} is not valid JSON ({type(exc).__name__}); the bundle is damaged") from None
        validate_meta(meta, meta_path)
        digest = _sha256(w_path)
        if digest != meta.get("weights_sha256"):
            raise BundleError(f"{w_path} does not match the hash in {META}: the weights were changed or truncated; retrain or restore the file")
        try:
            arrays = load_file(str(w_path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a damaged bundle
            raise BundleError(f"{w_path} cannot be read as safetensors ({exc})") from None
        model = cls(meta, arrays, run_dir, weights_override=None if weights is None else str(weights))
        from .bundle_heads import check_arrays_finite, check_feature_versions, check_head_bundle

        if meta["mode"] == "head":  # every head array and config number against its meaning, before rebuilding it
            check_feature_versions(meta, meta_path)
            check_head_bundle({k[5:]: v for k, v in arrays.items() if k.startswith("head.")}, meta["head"]["config"],
                              meta["backbone"], meta["head"].get("representation", "global"), meta_path)
            try:
                model._get_head()  # head parameters are checked (and sized) now, not mid-predict
            except (ValueError, KeyError, TypeError) as exc:  # BundleError and ConfigError are ValueErrors
                raise BundleError(f"{meta_path}: the head cannot be rebuilt from its config and arrays ({exc})") from None
        check_arrays_finite(arrays, w_path)  # the rest (a fine-tuned network's weights): numeric and finite
        # Head mode needs the backbone weights file; a fine-tuned bundle holds every weight itself.
        if meta["mode"] == "head" and (weights is not None or meta["backbone"].get("weights_file_sha256")):
            from .bundle_schema import resolve_weights
            resolve_weights(meta, run_dir, weights)  # a missing or swapped weights file is named now, not mid-predict
        return model

    # -- building blocks -------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return float(self.meta["postprocess"]["threshold"]["threshold"])

    @property
    def postprocess(self):
        if self._post is None:
            from .evaluation.postprocess import Postprocess
            self._post = Postprocess.from_dict(self.meta["postprocess"])
        return self._post

    def _get_backbone(self):
        if self._backbone is None:
            from .backbones import create_backbone
            b = self.meta["backbone"]
            from .bundle_schema import resolve_weights
            self._backbone = create_backbone(b["name"], weights=resolve_weights(self.meta, self.run_dir, self.weights_override))
            if self._backbone.weights_id != b["weights_id"]:
                raise BundleError(
                    f"backbone weights differ from training ({self._backbone.weights_id} vs {b['weights_id']}); "
                    "pass the same --weights file"
                )
        return self._backbone

    def _get_head(self):
        if self._head is None:
            from .strategies.heads import head_from_arrays
            h = self.meta["head"]
            arrays = {k[5:]: v for k, v in self.arrays.items() if k.startswith("head.")}
            self._head = head_from_arrays(arrays, h["config"])
        return self._head

    # -- prediction --------------------------------------------------------------------
    def representation(self) -> str:
        """The features the head consumes: ``"global"`` (one pooled vector per image) or ``"patches"``."""
        if self.meta.get("mode") != "head":
            return "global"
        return self.meta["head"].get("representation", "global")

    def _feature_settings(self):
        from .training.cell import FeatureSettings
        return FeatureSettings.of_bundle(self.meta)  # older bundles migrated (spec.migrate_backbone)

    def raw_scores(self, images: Sequence[np.ndarray], *, global_images: Sequence[np.ndarray] | None = None
                   ) -> np.ndarray:
        """Head probabilities before prior correction and calibration, for uint8 (H, W, 3) images.

        ``images`` are decoded for the head's representation (:meth:`decode`); for a patch-level head,
        ``global_images`` are the same files decoded for the global view (``None``: ``images`` serve both).
        """
        if self.meta["mode"] == "finetune":
            from .training.network import predict_images, rebuild_network
            if self._net is None:
                self._net = rebuild_network(self.meta, self.arrays)
            return predict_images(self._net, images, int(self.meta["backbone"]["image_size"]))
        from .training.cell import get_representation
        # The features the head consumes: one global vector per image unless its record named another.
        name = self.representation()
        rep = get_representation(name)
        extra = {"global_images": list(global_images)} if global_images is not None and name == "patches" else {}
        return self._get_head().predict_proba(rep.from_images(list(images), self._get_backbone(),
                                                              self._feature_settings(), **extra))

    def explain(self, images: Sequence[str | Path | np.ndarray]) -> np.ndarray:
        """``(N, H, W)`` patch-score heat maps at image resolution (patch, normality and fusion heads).

        See :func:`imbvision.explain.explain`; a model whose head sees one pooled vector raises ConfigError.
        """
        from .explain import explain
        return explain(self, images)

    def decode_min_side(self, part: str | None = None) -> int | None:
        """The ``min_side`` training decoded files with for ``part`` (a large JPEG in draft mode), so files are
        scored from the same pixels: see :func:`imbvision.backbones.decoding.min_side` (``part`` ``"global"``:
        the input size times the tiles; ``"patches"``: the input size; ``None``: the head's representation).
        ``None`` (full decode) for fine-tuned models and bundles saved before draft decoding."""
        b = self.meta.get("backbone", {})
        if self.meta.get("mode") != "head" or b.get("preprocess") != "draft":
            return None
        from .backbones.decoding import min_side
        return min_side(part or self.representation(), int(b["image_size"]), int(b.get("tiles") or 0))

    def decode(self, image: str | Path | np.ndarray, part: str | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8 pixels of a file as training decoded it for ``part`` (see :meth:`decode_min_side`);
        an array is returned as it is. Raises :class:`~imbvision.errors.BadFileError` for an unreadable file."""
        if isinstance(image, np.ndarray):
            return image
        from .data.decode import load_image_array
        return load_image_array(image, min_side=self.decode_min_side(part))

    def decode_inputs(self, images: Sequence[str | Path | np.ndarray]
                      ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Every input decoded as training decoded it: ``(arrays for the head's representation, global views)``.

        The global views are ``None`` unless a patch-level head's global view is decoded at another side than its
        patch canvas (``tiles`` >= 2 with draft decoding): then each file is decoded once per part, as in training.
        """
        rep = self.representation()
        arrays = [self.decode(x, rep) for x in images]
        if rep != "patches" or self.decode_min_side("global") == self.decode_min_side("patches"):
            return arrays, None
        return arrays, [self.decode(x, "global") for x in images]

    def _scores(self, images: Sequence[str | Path | np.ndarray]) -> np.ndarray:
        arrays, views = self.decode_inputs(images)
        if not arrays:
            return np.zeros(0)
        return self.postprocess.apply(self.raw_scores(arrays, global_images=views))

    def predict_proba(self, images: Sequence[str | Path | np.ndarray]) -> np.ndarray:
        """Probability of the positive class for each image (paths or uint8 arrays).

        Unreadable files raise :class:`~imbvision.errors.BadFileError`; use
        :meth:`predict_files` to get them listed instead.
        """
        return self._scores(list(images))

    def predict(self, images: Sequence[str | Path | np.ndarray]) -> np.ndarray:
        """Decisions (1 = positive) at the threshold chosen on validation."""
        return (self.predict_proba(images) >= self.threshold).astype(np.int64)

    def predict_files(self, paths: Sequence[str | Path], batch: int = 64, *, raw: dict[str, float] | None = None
                      ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Score files; unreadable ones are returned as (path, reason) instead of raising.

        ``raw``: head probabilities already computed for some paths (by
        :func:`~imbvision.explain.write_heatmaps` from the same features); those are not decoded again.
        """
        raw = dict(raw or {})
        todo = [p for p in paths if str(p) not in raw]
        bad = []
        for s in range(0, len(todo), batch):
            good, arrays, views = [], [], []
            for p in todo[s:s + batch]:
                try:
                    a, v = self.decode_inputs([p])  # every part, as training decoded it
                except BadFileError as exc:
                    bad.append((str(p), exc.reason))
                    continue
                good.append(str(p))
                arrays += a
                views += v or []
            if good:
                raw.update(zip(good, (float(r) for r in self.raw_scores(arrays, global_images=views or None))))
        scored = [str(p) for p in paths if str(p) in raw]
        probs = self.postprocess.apply(np.asarray([raw[p] for p in scored], dtype=np.float64)) if scored else []
        rows = [{"path": p, "probability": float(pr), "decision": int(pr >= self.threshold)}
                for p, pr in zip(scored, probs)]
        return rows, bad
