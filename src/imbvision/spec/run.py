"""The run specification shared by ``train`` and ``compare``: :class:`RunSpec`, its types and migration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from .._choices import (CALIBRATIONS, DEFAULT_PATCH_LAYERS, FEATURES, LEGACY_PATCH_LAYERS, PATCH_LAYERS, RESIZE_MODES,
                        SPLIT_RULES, TILES)
from .._limits import RANGES
from ..errors import ConfigError
from ._declared import _Declared, _field, flag_of, migrate_config

__all__ = ["RunSpec", "ImageSize", "Tiles", "Resize", "PatchLayers", "FeatureKind", "TILES", "RESIZE_MODES",
           "FEATURES", "CALIBRATIONS", "SPLIT_RULES", "check_setting", "migrate_config", "migrate_backbone",
           "flag_of"]

_IMG_LO, _IMG_HI = RANGES["image_size"]
_SYN_LO, _SYN_HI = RANGES["max_synthetic"]

#: A square canvas side in px (bounded: one value may not allocate gigabytes).
ImageSize = Annotated[int, Field(ge=_IMG_LO, le=_IMG_HI)]
Tiles = Literal[TILES]  # type: ignore[valid-type]
Resize = Literal[RESIZE_MODES]  # type: ignore[valid-type]
PatchLayers = Literal[tuple(PATCH_LAYERS)]  # type: ignore[valid-type]
#: A resolved feature kind (``auto`` resolved).
FeatureKind = Literal["global", "tiles", "both"]


class RunSpec(_Declared):
    """The settings shared by ``train`` and ``compare`` (one field each: type, default, validator, help).

    Raises
    ------
    ConfigError
        On construction, for the first invalid value: the option (``--name``), the value and what is
        valid; for contradictory settings, which ones and how to resolve them.
    """

    data: str = _field("demo", "Data source: magnetic-tile:PATH, mvtec:PATH (benchmark layout), csv:PATH or "
                       "PATH.csv, folder:PATH or a folder (with --positive), demo[:N[:RATE[:SEED[:SIZE]]]], "
                       "demo-tall[:N[:RATE[:SEED]]]", valid="a data source", cli=False, min_length=1)
    positive: Optional[str] = _field(None, "Name of the positive (rare) class: a class folder name or a label "
                                     "value in the CSV", valid="a class name")
    backbone: str = _field("efficientnet_lite0", "Backbone: an embedded one (`imbvision backbones`) or any timm "
                           "model name", valid="a backbone name", min_length=1)
    weights: Optional[str] = _field(None, "Local backbone weights file, or 'none' for random init",
                                    valid="a weights file or 'none'")
    image_size: Optional[ImageSize] = _field(
        None, "Square canvas side in px; default: chosen from the images' sizes (resolution policy: half the "
        "native long side, 224..448)", valid=f"use an integer in {_IMG_LO}..{_IMG_HI} (or leave it unset: the "
        "resolution policy chooses)")
    resize: Optional[Resize] = _field(
        None, "stretch (to a square) or keep-aspect (long side = image size, short side edge-padded); default: "
        "keep-aspect when the images' median aspect is 1.5 or more, else stretch",
        valid=f"valid: {', '.join(RESIZE_MODES)} (or leave it unset: the resolution policy chooses)", key="when-set",
        unset="stretch")
    tiles: Tiles = _field(0, "Head mode: add N×N tile features (small objects)",
                          valid="use 0 (whole image only) or 2..6")
    features: Literal[FEATURES] = _field("auto", "Head-mode embedding: auto (both with --tiles, else global), "  # type: ignore[valid-type]
                                         "global, tiles or both", valid=f"valid: {', '.join(FEATURES)}")
    patch_layers: PatchLayers = _field(
        DEFAULT_PATCH_LAYERS, "Patch heads: backbone strides of the patch features: s16+s32 (default) or s8+s16 "
        "(finer grid, for objects of a few pixels)", valid=f"valid: {', '.join(PATCH_LAYERS)}", key="when-set")
    threshold: str = _field("max-f1", "Threshold rule, chosen on validation: max-f1 | recall>=0.95 | precision>=0.9 "
                            "| fbeta:2 | fixed:0.5 | fpr<=0.01 (false-alarm rate from the validation negatives "
                            "alone: needs no positive)", valid="a threshold rule")
    calibration: Literal[CALIBRATIONS] = _field(  # type: ignore[valid-type]
        "intercept", "intercept (mean probability = validation prevalence) | none | platt | isotonic (fitted on "
        "validation)", valid=f"valid: {', '.join(CALIBRATIONS)}")
    prior_correction: bool = _field(True, "Undo the prior shift of resampling/weighting analytically",
                                    valid="true or false", flag=("--prior-correction/--no-prior-correction",))
    val: float = _field(0.2, "Validation fraction", valid="use a fraction in (0, 1)", gt=0, lt=1)
    test: float = _field(0.2, "Test fraction", valid="use a fraction in (0, 1)", gt=0, lt=1)
    train_positive_rate: Optional[float] = _field(
        None, "Keep only enough training positives for this rate (val/test untouched; 0: none, for normality)",
        valid="use a value in [0, 1) (0: no training positive, for --strategy normality)", ge=0, lt=1)
    split: Literal[SPLIT_RULES] = _field(  # type: ignore[valid-type]
        "random", "random (drawn per seed) or official (the benchmark layout's own train/test, mvtec:PATH)",
        valid=f"valid: {', '.join(SPLIT_RULES)}", key="when-set", flag=("--split",))
    split_file: Optional[str] = _field(
        None, "CSV path,split (train/val/test): its test rows are the fixed test set; train/val are drawn per "
        "seed from the others", valid="a CSV file", key="when-set", flag=("--split-file",))
    group_duplicates: bool = _field(True, "Keep exact and near duplicates on one side of every split",
                                    valid="true or false", flag=("--group-duplicates/--no-group-duplicates",))
    max_synthetic: int = _field(600, "Most synthetic training images a synthesiser adds per split",
                                valid=f"use an integer in {_SYN_LO}..{_SYN_HI}", ge=_SYN_LO, le=_SYN_HI)
    skip_bad: bool = _field(False, "List bad files in bad_files.csv and go on", valid="true or false",
                            key="never", flag=("--skip-bad",))
    cache_dir: Optional[str] = _field(None, "Cache folder (embeddings, ONNX exports, image checks; default "
                                      "$IMBVISION_CACHE or ~/.cache/imbvision)", valid="a folder", key="never")

    #: Fields whose value ``None`` means "chosen from the images" (the resolution policy).
    RESOLVED_FROM_DATA: ClassVar[tuple[str, ...]] = ("image_size", "resize")

    @field_validator("threshold")
    @classmethod
    def _threshold_rule(cls, v: str) -> str:
        from ..evaluation.threshold_rule import parse_threshold_rule

        parse_threshold_rule(v)  # ConfigError naming the rule and the valid forms
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "RunSpec":
        if self.split_file is not None and self.split != "random":
            raise ConfigError("--split official and --split-file both give the test set; use one of them")
        if self.val + self.test >= 1:
            raise ConfigError(f"--val {self.val} + --test {self.test} leave no training images; keep their sum "
                              "below 1")
        if self.features in ("tiles", "both") and self.tiles < 2:
            raise ConfigError(f"--features {self.features} needs --tiles 2 or more")
        return self

    @property
    def feature_kind(self) -> str:
        """The head-mode embedding, ``auto`` resolved: ``both`` with tiles, else ``global``."""
        if self.features != "auto":
            return self.features
        return "both" if self.tiles >= 2 else "global"

    def fingerprint(self) -> dict[str, Any]:
        """The settings results depend on, as a comparison records them (its ``config.json`` and cell key).

        ``features`` is the resolved kind; ``when-set`` fields are present only when not the value runs
        had before they existed (so folders made before them match); ``never`` fields are absent; a split file enters with
        its SHA-256 (its content, not its name, decides the cells).
        """
        out: dict[str, Any] = {}
        for name, f in RunSpec.model_fields.items():  # a subclass's own fields are its own business
            extra = f.json_schema_extra or {}
            key = extra.get("key", "always")
            value = getattr(self, name)
            if key == "never" or (key == "when-set" and value == extra.get("unset", f.default)):
                continue
            out[name] = value
        out["features"] = self.feature_kind
        if self.split_file is not None:
            out["split_file"] = _split_file_record(self.split_file)
        return out

    def backbone_record(self, representation: str) -> dict[str, Any]:
        """The input settings a bundle's ``backbone`` section records (``model.json``), read back by
        :func:`migrate_backbone`: the weights, the resolved size and resize, the tiles and feature kind,
        the patch layers of a patch-level head (``representation == "patches"``), and how the
        resolution was chosen (``extra["resolution"]`` of a :class:`~imbvision.training.config.TrainConfig`)."""
        rec: dict[str, Any] = {"weights": self.weights, "image_size": self.image_size, "tiles": self.tiles,
                               "features": self.feature_kind, "resize": self.resize}
        if representation == "patches":
            rec["patch_layers"] = self.patch_layers
        rec["resolution"] = (getattr(self, "extra", None) or {}).get("resolution")
        return rec

    def resolved_cache_dir(self) -> Path:
        from ..data.sources import cache_root
        return Path(self.cache_dir) if self.cache_dir else cache_root()


def _split_file_record(path: str) -> dict[str, str]:
    from .._digest import sha256_file
    from ..errors import DataError

    try:
        return {"path": str(path), "sha256": sha256_file(path)}
    except OSError as exc:
        raise DataError(f"split file {path} cannot be read ({exc.strerror or exc}); give a CSV with columns "
                        "path,split") from None


def check_setting(name: str, value: Any) -> Any:
    """Check one value against the :class:`RunSpec` field ``name`` (its type, bounds and choices).

    For library functions that take a setting directly (e.g. ``embed_dataset(resize=...)``), so they
    check it by the same declaration as the command line: it is :class:`RunSpec` with this one
    setting given.

    Raises
    ------
    ConfigError
        Naming the option, the value and what is valid.
    """
    if name not in RunSpec.model_fields:
        raise KeyError(f"no run setting {name!r}")
    RunSpec(**{name: value})  # the field's own validators, with every other setting at its default
    return value


def migrate_backbone(b: dict[str, Any], representation: str | None = None) -> dict[str, Any]:
    """A bundle's ``backbone`` section with what older bundles lack filled: ``resize`` (``stretch``) and,
    for patch-level heads (``representation == "patches"``), ``patch_layers`` (``s8+s16``)."""
    out = dict(b)
    out.setdefault("resize", "stretch")
    if representation == "patches" and out.get("patch_layers") is None:
        out["patch_layers"] = LEGACY_PATCH_LAYERS
    return out
