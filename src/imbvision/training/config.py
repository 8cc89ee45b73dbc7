"""The resolved configuration of a training run, written into every run folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["TrainConfig", "PipelineOptions"]

MODES = ("head", "finetune")
FEATURES = ("auto", "global", "tiles", "both")
CALIBRATIONS = ("none", "intercept", "platt", "isotonic")


@dataclass
class PipelineOptions:
    """Options shared by ``train`` and ``compare``: the data, its split, the features and the post-processing."""

    data: str = "demo"
    positive: str | None = None
    backbone: str = "efficientnet_lite0"
    weights: str | None = None
    #: ``None``: chosen from the images by the resolution policy (:mod:`imbvision.backbones.resolution`).
    image_size: int | None = None
    tiles: int = 0
    features: str = "auto"
    threshold: str = "max-f1"
    calibration: str = "intercept"
    prior_correction: bool = True
    val: float = 0.2
    test: float = 0.2
    train_positive_rate: float | None = None
    skip_bad: bool = False
    group_duplicates: bool = True
    cache_dir: str | None = None
    max_synthetic: int = 600
    #: ``None``: chosen from the images by the resolution policy (``keep-aspect`` for tall or wide images).
    resize: str | None = None
    patch_layers: str = "s16+s32"
    #: The test set: ``random`` (drawn per seed) or ``official`` (the layout's own test part, mvtec:PATH).
    split: str = "random"
    #: A CSV ``path,split`` fixing the test set (train/val are drawn from its other rows per seed).
    split_file: str | None = None

    def __post_init__(self) -> None:
        from ..data.split_file import SPLIT_RULES
        if self.split not in SPLIT_RULES:
            raise ConfigError(f"--split {self.split!r} invalid; valid: {', '.join(SPLIT_RULES)}")
        if self.split_file is not None and self.split != "random":
            raise ConfigError("--split official and --split-file both give the test set; use one of them")
        if self.resize is not None and self.resize not in ("stretch", "keep-aspect"):
            raise ConfigError(f"--resize {self.resize!r} invalid; valid: stretch, keep-aspect (or leave it unset: "
                              "the resolution policy chooses)")
        if self.patch_layers not in ("s16+s32", "s8+s16"):
            raise ConfigError(f"--patch-layers {self.patch_layers!r} invalid; valid: s16+s32, s8+s16")
        if self.features not in FEATURES:
            raise ConfigError(f"--features {self.features!r} invalid; valid: {', '.join(FEATURES)}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"--calibration {self.calibration!r} invalid; valid: {', '.join(CALIBRATIONS)}")
        if self.train_positive_rate is not None and not 0 <= self.train_positive_rate < 1:
            raise ConfigError(f"--train-positive-rate {self.train_positive_rate} invalid; use a value in [0, 1) "
                              "(0: no training positive, for --strategy normality)")
        from ..evaluation import parse_threshold_rule
        parse_threshold_rule(self.threshold)

    @property
    def feature_kind(self) -> str:
        if self.features != "auto":
            if self.features in ("tiles", "both") and self.tiles < 2:
                raise ConfigError(f"--features {self.features} needs --tiles 2 or more")
            return self.features
        return "both" if self.tiles >= 2 else "global"

    def with_resolution(self, paths: Any, *, policy: bool = True) -> tuple[Any, Any]:
        """A copy with ``image_size`` and ``resize`` filled (given values kept), and the
        :class:`~imbvision.backbones.resolution.Resolution` saying how; ``policy=False`` fills
        them with 224 px ``stretch`` (fine-tuning) instead of reading the images ``paths``."""
        from dataclasses import replace

        from ..backbones.resolution import DEFAULT_IMAGE_SIZE, Resolution, resolve_resolution

        if policy:
            res = resolve_resolution(paths, self.image_size, self.resize)
        else:
            res = Resolution(self.image_size or DEFAULT_IMAGE_SIZE, self.resize or "stretch",
                             {"image_size": "given" if self.image_size else "default",
                              "resize": "given" if self.resize else "default"})
        return replace(self, image_size=res.image_size, resize=res.resize), res

    def resolved_cache_dir(self) -> Path:
        from ..data.sources import cache_root
        return Path(self.cache_dir) if self.cache_dir else cache_root()


@dataclass
class TrainConfig(PipelineOptions):
    """Everything a run needs; ``to_dict`` is what ``config.json`` holds.

    Attributes mirror the ``imbvision train`` options (the shared ones are :class:`PipelineOptions`).
    """

    strategy: str = "ce"
    mode: str = "head"
    seed: int = 0
    n_boot: int = 1000
    # fine-tuning
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    head_lr: float = 3e-3
    weight_decay: float = 1e-4
    unfreeze: str = "all"
    patience: int = 5
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    dist_strategy: str = "auto"
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode!r} invalid; valid: {', '.join(MODES)}")
        super().__post_init__()
        if self.epochs < 1:
            raise ConfigError(f"--epochs {self.epochs} invalid; use 1 or more")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size {self.batch_size} invalid; use 2 or more")
        if self.n_boot < 0:
            raise ConfigError(f"n_boot {self.n_boot} invalid; use 0 or more")
        _check_sizes(self)
        u = str(self.unfreeze)
        if u != "all" and not (u.isdigit() and int(u) >= 0):
            raise ConfigError(f"--unfreeze {u!r} invalid; use 'all' or a number of last blocks (0 = head only)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid: {sorted(names)}")
        return cls(**d)


def _check_sizes(cfg: "TrainConfig") -> None:
    from .._limits import RANGES, check_range

    for name in RANGES:
        if hasattr(cfg, name) and not (name == "image_size" and cfg.image_size is None):  # None: the policy's
            check_range(name, getattr(cfg, name))
    if cfg.tiles not in (0, 2, 3, 4, 5, 6) or isinstance(cfg.tiles, bool):
        raise ConfigError(f"--tiles {cfg.tiles!r} invalid; use 0 (whole image only) or 2..6")
    for name in ("val", "test"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ConfigError(f"--{name} {v!r} invalid; use a fraction in (0, 1)")
    if cfg.val + cfg.test >= 1:
        raise ConfigError(f"--val {cfg.val} + --test {cfg.test} leave no training images; keep their sum below 1")
