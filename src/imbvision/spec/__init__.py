"""The run specification: every pipeline setting declared once — its type, default, validator and help.

:class:`RunSpec` holds the settings ``train`` and ``compare`` share (the data and its split, the
backbone, the resolution, the features, the post-processing). Everything else reads it:

* the command-line options of ``imbvision train`` and ``imbvision compare`` are generated from its
  fields (:func:`imbvision._cli_spec.spec_options`): name, default, help, flag;
* a run folder's ``config.json`` and a bundle's ``model.json["config"]`` are
  :meth:`RunSpec.to_dict` of the run's config, read back with ``from_dict`` (one validation);
* a comparison's fingerprint (``compare``'s ``config.json``, the key of its cells) is
  :meth:`RunSpec.fingerprint`: the fields that change results, those added after folders existed
  only when set (so older folders still match);
* the bundle schema (:mod:`imbvision.bundle_schema`) types its backbone section with the same
  annotated types (:data:`ImageSize`, :data:`Tiles`, :data:`Resize`, :data:`PatchLayers`);
* library functions that take one of these settings directly (``embed_dataset(resize=...)``)
  check it with :func:`check_setting`, the field's own validator;
* old bundles and run folders are read through one migration, :func:`migrate_config` /
  :func:`migrate_backbone`, which fills what they lack with the value they were made with.

Adding a pipeline setting is one field here plus its use. The pattern follows timm's
``PretrainedCfg`` (a declared config that travels with the model and is read back from it) and
imbalanced-learn's ``_parameter_constraints`` (declared once, checked once); pydantic gives the
types, bounds and one error format, which :class:`RunSpec` turns into one line naming the option,
the value and what is valid (:class:`~imbvision.errors.ConfigError`).

This module imports only pydantic (the command line reads it at start-up, before torch).
"""

from __future__ import annotations

from ._declared import flag_of
from .compare import BASELINE, EXECUTORS, CompareConfig
from .run import (CALIBRATIONS, FEATURES, RESIZE_MODES, SPLIT_RULES, TILES, FeatureKind, ImageSize, PatchLayers,
                  Resize, RunSpec, Tiles, check_setting, migrate_backbone, migrate_config)
from .train import MODES, TrainConfig

__all__ = ["RunSpec", "TrainConfig", "CompareConfig", "ImageSize", "Tiles", "Resize", "PatchLayers", "FeatureKind",
           "TILES", "RESIZE_MODES", "FEATURES", "CALIBRATIONS", "SPLIT_RULES", "MODES", "EXECUTORS", "BASELINE",
           "check_setting", "migrate_config", "migrate_backbone", "flag_of"]
