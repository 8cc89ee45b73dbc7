"""What a saved head's arrays and config must satisfy before the head is rebuilt from them.

``model.json`` and ``model.safetensors`` are covered by checksums (:mod:`imbvision.bundle_schema`), but a
script that edits and re-saves a bundle (or a half-migrated file) recomputes them. So every head array
and config number is also checked against its *meaning*: shapes that agree with each other and with the
feature width recorded at training, floating dtype, finite values, positive scales, parameters within the
ranges of the head's strategy record, ``k`` within the patch grid, and the patch-feature and
preprocessing versions the features were made with. The first problem is one :class:`BundleError`
naming the field (``head.arrays.bank``, ``head.config.params.k``...).

The rules are declared by each head's strategy record (``StrategyRecord.saved``, a
:class:`~imbvision.strategies.head_base.SavedHead` beside ``load``), so a new head brings its own;
:func:`check_head_bundle` applies them, recursing into the heads a head holds (``patch.inner``,
``fusion.bases``).
Hand-written: pydantic validates the JSON description, but no library checks arrays against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import BundleError

__all__ = ["check_head_bundle", "check_feature_versions", "check_arrays_finite"]


def _rules(name: str, ctx: "_Ctx", field: str):
    """The saved-head rules of head ``name``, from its strategy record (unknown names list the valid ones)."""
    from .strategies.head_base import SavedHead
    from .strategies.registry import list_strategies

    heads = {r.name: r for r in list_strategies("head")}
    if name not in heads:
        raise _fail(ctx, f"{field}.head", f"unknown head {name!r}; valid: {', '.join(heads)}")
    return heads[name].saved or SavedHead()


@dataclass
class _Ctx:
    where: str
    widths: dict[str, int | None]  # "global", "patch"
    grid: tuple[int, int] | None


def _fail(ctx: _Ctx, field: str, why: str) -> BundleError:
    return BundleError(f"{ctx.where}: invalid {field}: {why}; retrain the model (or restore the bundle)")


def check_arrays_finite(arrays: Mapping[str, np.ndarray], where: str, prefix: str = "") -> None:
    """Every array floating (or integer) and finite: one :class:`BundleError` naming the first that is not."""
    for k, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "fiu":
            raise BundleError(f"{where}: invalid {prefix}{k}: dtype {a.dtype} (a numeric array is expected)")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise BundleError(f"{where}: invalid {prefix}{k}: {int((~np.isfinite(a)).sum())} value(s) are NaN or "
                              "infinite; retrain the model (or restore the bundle)")


def _check_params(name: str, cfg: Mapping[str, Any], ctx: _Ctx, field: str) -> None:
    from .errors import ConfigError
    from .strategies.params import resolve_params
    from .strategies.registry import get_strategy

    params = cfg.get("params", {})
    if not isinstance(params, Mapping):
        raise _fail(ctx, f"{field}.params", f"{params!r} is not an object")
    try:
        resolve_params(name, get_strategy(name).params, params)  # the head's own strategy record: one set of ranges
    except (ConfigError, KeyError) as exc:
        raise _fail(ctx, f"{field}.params", str(exc).split("; retrain")[0]) from None


def _check_one(name: str, arrays: Mapping[str, np.ndarray], cfg: Mapping[str, Any], ctx: _Ctx, width: str,
               field: str, prefix: str) -> None:
    saved = _rules(name, ctx, field)
    if cfg.get("head") != name:
        raise _fail(ctx, f"{field}.head", f"{cfg.get('head')!r}, expected {name!r}")
    _check_params(name, cfg, ctx, field)
    sizes: dict[Any, int] = {}
    if ctx.widths.get(width):
        sizes["D"] = int(ctx.widths[width])  # type: ignore[arg-type]
    for key, spec in saved.arrays.items():
        full = f"head.arrays.{prefix}{key}"
        if key not in arrays:
            if spec.optional:
                continue
            raise _fail(ctx, full, "missing")
        a = np.asarray(arrays[key])
        if a.dtype.kind != "f":
            raise _fail(ctx, full, f"dtype {a.dtype} (a floating array is expected)")
        if a.ndim != len(spec.shape):
            raise _fail(ctx, full, f"shape {a.shape}: {len(spec.shape)} dimension(s) {spec.shape} expected")
        for n, sym in zip(a.shape, spec.shape):
            if sym == "n+":
                if n < 1:
                    raise _fail(ctx, full, f"shape {a.shape}: at least 1 row expected")
            elif isinstance(sym, int):
                if n != sym:
                    raise _fail(ctx, full, f"shape {a.shape}: size {sym} expected, not {n}")
            elif sizes.setdefault(sym, n) != n:
                what = "the feature width recorded at training" if sym == "D" else "the other arrays"
                raise _fail(ctx, full, f"shape {a.shape}: {sym} = {n} disagrees with {what} ({sizes[sym]})")
        if not np.isfinite(a).all():
            raise _fail(ctx, full, f"{int((~np.isfinite(a)).sum())} value(s) are NaN or infinite")
        if spec.positive and not (a > 0).all():
            raise _fail(ctx, full, "every value must be > 0")
    for rule in saved.config:
        if callable(rule):
            why = rule(cfg, ctx.grid)
            if why:
                raise _fail(ctx, f"{field}.{why.split(':')[0]}", why.split(": ", 1)[1])
            continue
        key, test, valid = rule
        if not test(cfg.get(key)):
            raise _fail(ctx, f"{field}.{key}", f"{cfg.get(key)!r}; valid: {valid}")
    for ckey, apre, fixed, w in saved.nested:
        sub = cfg
        for part in ckey.split("."):
            sub = sub.get(part) if isinstance(sub, Mapping) else None
        if not isinstance(sub, Mapping):
            raise _fail(ctx, f"{field}.{ckey}", "missing")
        inner = {k[len(apre) + 1:]: v for k, v in arrays.items() if k.startswith(apre + ".")}
        _check_one(fixed or str(sub.get("head")), inner, sub, ctx, w, f"{field}.{ckey}", f"{prefix}{apre}.")


def check_head_bundle(arrays: Mapping[str, np.ndarray], config: Mapping[str, Any], backbone: Mapping[str, Any],
                      representation: str, where: str) -> None:
    """Check a saved head's arrays and config against its record's ``saved`` rules (before the head is rebuilt).

    Parameters
    ----------
    arrays
        The head's arrays (``model.safetensors`` keys without ``head.``).
    config
        ``model.json``'s ``head.config``.
    backbone
        ``model.json``'s ``backbone``: its recorded ``feature_dim``, ``patch_dim`` and ``patch_grid`` are the
        widths the arrays must match (absent in older bundles: then only the arrays' mutual agreement counts).
    representation
        ``"global"`` or ``"patches"``: the width the top-level head sees.
    where
        The file named in errors.

    Raises
    ------
    BundleError
        One line naming the first invalid field and what is valid.
    """
    grid = backbone.get("patch_grid")
    ctx = _Ctx(where, {"global": backbone.get("feature_dim"), "patch": backbone.get("patch_dim")},
               tuple(grid) if isinstance(grid, list) and len(grid) == 2 else None)
    if not isinstance(config, Mapping):
        raise _fail(ctx, "head.config", "not an object")
    _check_one(str(config.get("head")), arrays, config, ctx, "patch" if representation == "patches" else "global",
               "head.config", "")


def check_feature_versions(meta: Mapping[str, Any], where: str) -> None:
    """Refuse a head-mode bundle whose features were made by another patch-feature or preprocessing version.

    A patch-level bundle must record ``backbone.patch_version`` (bundles saved before it was recorded cannot
    show which features their bank or classifier was fitted on); a recorded ``backbone.preprocess_version``
    must equal the current one.

    Raises
    ------
    BundleError
        The recorded version differs from what this imbvision computes, or a patch bundle records none.
    """
    if meta.get("mode") != "head":
        return
    from .backbones.embed import PREPROCESS_VERSION
    from .backbones.patches import PATCH_VERSION

    b = meta.get("backbone", {})
    pre = b.get("preprocess_version")
    if pre is not None and pre != PREPROCESS_VERSION:
        raise BundleError(f"{where}: backbone.preprocess_version {pre!r} differs from this imbvision's "
                          f"{PREPROCESS_VERSION!r}: its images would be preprocessed otherwise than in training; "
                          "retrain the model with this version")
    if meta.get("head", {}).get("representation") == "patches":
        got = b.get("patch_version")
        if got != PATCH_VERSION:
            said = f"records patch features {got!r}" if got else "records no patch-feature version (saved before it was recorded)"
            raise BundleError(f"{where}: backbone.patch_version: the bundle {said}, this imbvision computes "
                              f"{PATCH_VERSION!r}, so its scores would differ from training; retrain the model")
