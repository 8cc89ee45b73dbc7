"""The schema of ``model.json`` and the checks a bundle passes before anything in it is used.

A saved model is ``model.safetensors`` plus ``model.json``. Loading trusts
neither until checked:

* ``meta_sha256``, a SHA-256 over the canonical JSON of every other key, covers
  the description itself (a threshold of 0, an image size of 100000 or an
  unknown key edited in by hand is caught before validation even starts);
* the description is validated with pydantic (types, ranges, known keys only),
  and every size it can set is bounded, so no value in it can make loading
  allocate gigabytes; the first problem is reported in one line;
* ``weights_sha256`` covers the arrays (checked in :mod:`imbvision.model`);
* a backbone weights *file* is recorded by absolute path and SHA-256, so the
  bundle works from any folder and a swapped file is refused; ``predict
  --weights`` points to the file where it has moved.

pydantic is used rather than hand-written checks: one declarative model, one
error format, strict types.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import BundleError
from .spec import CALIBRATIONS, MODES, FeatureKind, ImageSize, PatchLayers, Resize, Tiles

__all__ = ["BundleMeta", "validate_meta", "meta_digest", "weights_record", "resolve_weights"]

_HEX64 = r"^[0-9a-f]{64}$"
_MAX_KNOTS = 1_000_000  # isotonic calibration knots (at most one per validation image)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Resolution(_Strict):
    """How ``image_size`` and ``resize`` were chosen (:mod:`imbvision.backbones.resolution`); informative:
    the model is always read back with the recorded ``image_size`` and ``resize``, never with the rule."""
    image_size: ImageSize
    resize: Resize
    source: dict[str, Literal["policy", "given", "default"]]
    policy: Optional[str] = Field(default=None, max_length=200)
    median_long_side: Optional[float] = Field(default=None, ge=0)
    median_aspect: Optional[float] = Field(default=None, ge=1)
    images_read: int = Field(ge=0)


class _Backbone(_Strict):
    name: str = Field(min_length=1, max_length=200)
    weights: Optional[str] = Field(default=None, max_length=4096)
    weights_id: str = Field(min_length=1, max_length=500)
    # The run specification's own types (imbvision.spec): one declaration of what is valid
    image_size: ImageSize
    tiles: Tiles
    features: FeatureKind
    resize: Resize = "stretch"  # bundles saved before this field stretched
    patch_layers: Optional[PatchLayers] = None  # patch-level heads; bundles saved before this field used s8+s16
    preprocess: Optional[Literal["draft"]] = None  # "draft": large JPEGs were decoded in draft mode (head mode)
    # Recorded since issue 19 (absent in older bundles): the widths the head's arrays must match and the
    # versions of the features they were fitted on (imbvision.bundle_heads checks them at load).
    feature_dim: Optional[int] = Field(default=None, ge=1, le=1_000_000)
    patch_dim: Optional[int] = Field(default=None, ge=1, le=1_000_000)
    patch_grid: Optional[list[int]] = Field(default=None, min_length=2, max_length=2)
    patch_version: Optional[str] = Field(default=None, max_length=200)
    preprocess_version: Optional[str] = Field(default=None, max_length=200)
    resolution: Optional[_Resolution] = None  # absent in bundles saved before the resolution policy
    weights_path: Optional[str] = Field(default=None, max_length=4096)
    weights_file_sha256: Optional[str] = Field(default=None, pattern=_HEX64)


class _Head(_Strict):
    name: str = Field(min_length=1, max_length=100)
    params: dict[str, Any]
    config: Optional[dict[str, Any]] = None
    representation: Optional[Literal["patches"]] = None  # absent: the global embedding


class _Spec(_Strict):
    name: str = Field(min_length=1, max_length=100)
    family: str = Field(min_length=1, max_length=50)
    params: dict[str, Any]


class _Strategy(_Strict):
    name: str = Field(min_length=1, max_length=1000)
    strategies: list[_Spec] = Field(max_length=50)


class _Calibration(_Strict):
    method: Literal[CALIBRATIONS]  # type: ignore[valid-type]
    params: dict[str, Any]

    @model_validator(mode="after")
    def _params(self) -> "_Calibration":
        p = self.params
        if self.method in ("platt", "intercept"):
            for k in ("a", "b") if self.method == "platt" else ("b",):
                v = p.get(k)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"{self.method} calibration needs a finite number {k!r}, got {v!r}")
        if self.method == "isotonic":
            x, y = p.get("x"), p.get("y")
            if not isinstance(x, list) or not isinstance(y, list) or not 1 <= len(x) == len(y) <= _MAX_KNOTS:
                raise ValueError(f"isotonic calibration needs equal-length lists x, y of 1..{_MAX_KNOTS} numbers")
            for v in x + y:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"isotonic calibration knots must be finite numbers, got {v!r}")
            if any(not 0.0 <= v <= 1.0 for v in y):
                raise ValueError("isotonic calibration outputs y must lie in [0, 1]")
        extra = set(p) - {"none": set(), "intercept": {"b"}, "platt": {"a", "b"}, "isotonic": {"x", "y"}}[self.method]
        if extra:
            raise ValueError(f"unknown calibration parameter(s) {sorted(extra)}")
        return self


class _Threshold(_Strict):
    threshold: float = Field(gt=0.0, le=1.0)
    rule: str = Field(min_length=1, max_length=100)
    achieved: dict[str, Any]
    feasible: bool
    note: str = Field(max_length=10_000)


class _Postprocess(_Strict):
    train_prior: Optional[float] = Field(gt=0.0, lt=1.0)
    true_prior: Optional[float] = Field(gt=0.0, lt=1.0)
    prior_correction: bool
    calibration: _Calibration
    threshold: _Threshold


class _ClassNames(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    negative: str = Field(alias="0", max_length=1000)
    positive: str = Field(alias="1", max_length=1000)


class BundleMeta(_Strict):
    """Every key ``model.json`` may hold, with its type and range."""

    format: Literal["imbvision-model"]
    format_version: Literal[2]
    mode: Literal[MODES]  # type: ignore[valid-type]
    backbone: _Backbone
    head: _Head
    strategy: _Strategy
    postprocess: _Postprocess
    class_names: _ClassNames
    config: dict[str, Any]
    versions: dict[str, str]
    weights_sha256: str = Field(pattern=_HEX64)
    meta_sha256: str = Field(pattern=_HEX64)

    @model_validator(mode="after")
    def _consistent(self) -> "BundleMeta":
        if self.mode == "head" and self.head.config is None:
            raise ValueError("head mode needs head.config")
        if self.backbone.features != "global" and self.backbone.tiles < 2:
            raise ValueError(f"features {self.backbone.features!r} need tiles >= 2")
        return self


def meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``meta`` without its ``meta_sha256`` key."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _where(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err.get("loc", ())) or "(top level)"


def validate_meta(meta: Any, path: str | Path) -> dict[str, Any]:
    """Check a parsed ``model.json``: checksum, schema and the training configuration.

    Raises
    ------
    BundleError
        One line naming the file, the key and what is valid.
    """
    if not isinstance(meta, dict):
        raise BundleError(f"{path} is not an imbvision model description (a JSON object is expected)")
    if meta.get("format") != "imbvision-model":
        raise BundleError(f"{path} is not an imbvision model description (format {meta.get('format')!r})")
    if meta.get("format_version") != 2:
        raise BundleError(f"{path} has format_version {meta.get('format_version')!r}; this imbvision reads 2 "
                          "(retrain the model with this version)")
    if meta.get("meta_sha256") != meta_digest(meta):
        raise BundleError(f"{path} does not match its meta_sha256: the model description was edited or damaged; "
                          "retrain or restore the bundle")
    try:
        BundleMeta.model_validate(meta)
    except ValidationError as exc:
        e = exc.errors()[0]
        got = repr(e.get("input"))
        got = got if len(got) <= 80 else got[:77] + "..."
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BundleError(f"{path}: invalid {_where(e)}: {e.get('msg')} (got {got}){more}") from None
    from .training.config import TrainConfig

    try:
        TrainConfig.from_dict(meta["config"])
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: invalid config: {exc}") from None
    return meta


def weights_record(weights: str | None) -> dict[str, str]:
    """For a backbone weights *file*: its absolute path and SHA-256 (empty for ``none`` or a hub name)."""
    if not weights or weights == "none":
        return {}
    p = Path(weights).expanduser()
    if not p.is_file():
        return {}
    from ._fingerprint import content_digest
    return {"weights_path": str(p.resolve()), "weights_file_sha256": content_digest(p)}


def resolve_weights(meta: dict[str, Any], run_dir: Path, override: str | Path | None = None) -> str | None:
    """The backbone weights to load: ``override`` (``--weights``), else the recorded file, checked by hash.

    Tried in order: the override; the absolute path recorded at training; the path as given, relative
    to the run folder and to the working folder. A file whose SHA-256 differs from the recorded one is refused.

    Raises
    ------
    BundleError
        No candidate exists, or the file found is not the one the model was trained with.
    """
    b = meta["backbone"]
    want = b.get("weights_file_sha256")
    given = b.get("weights")
    if override is None and not want:
        return given  # "none", a hub name, or an old bundle
    from ._fingerprint import content_digest

    cands = [Path(override)] if override is not None else [
        Path(p) for p in (b.get("weights_path"), Path(run_dir) / given if given else None, given) if p]
    for c in cands:
        if c.is_file():
            if want and content_digest(c) != want:
                raise BundleError(f"weights file {c} is not the one this model was trained with (SHA-256 differs "
                                  f"from model.json); pass --weights with the training file")
            return str(c)
    if override is not None:
        raise BundleError(f"--weights {override} not found")
    raise BundleError(f"backbone weights {given!r} not found (looked in {', '.join(map(str, cands))}); "
                      "pass --weights FILE with the file used for training")
