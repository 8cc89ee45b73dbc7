"""From leaderboard to model: train the strategy a comparison recommends.

``imbvision train --from CMP_DIR`` and ``imbvision compare --save-best`` call
:func:`settings_from_compare`, then train one run with the returned settings.

The rules (also in the README):

- **Which strategy.** Among the strategies whose test AP beats the plain
  ``ce`` baseline beyond noise (ΔAP > 0 with Holm-adjusted p < 0.05 over the
  paired splits), the one with the largest ΔAP -- the one the comparison's
  recommendation names. When none does, ``ce``: a remedy that does not beat
  the baseline is not worth its extra moving parts.
- **Which settings.** Everything the comparison fixed: data, positive class,
  backbone, weights, image size, tiles, features, threshold rule,
  calibration, prior correction, validation/test fractions, training
  positive rate and synthetic-image cap; head mode.
- **Which data.** As in every comparison cell: the seed-0 split, the
  strategy fitted on its training part, threshold and calibration tuned on
  its validation part, and the test part reported -- the saved model is one
  of the cells the leaderboard averaged, re-run with a full report and a
  saved bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._text import plural
from ..errors import ConfigError
from ..experiments.config import BASELINE
from ..experiments.stats import ALPHA

__all__ = ["settings_from_compare", "pick_strategy", "why_trained"]

def _compared_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run-specification settings a comparison's ``config.json`` fixed, as ``train`` takes them.

    Every field that enters the comparison key (:meth:`~imbvision.spec.RunSpec.fingerprint`); one
    recorded only when not its earlier value (``when-set``) and absent takes that value; the image size
    and resize are the resolved ones (``resolution``), so the model sees the cells' input exactly.
    """
    from ..spec import RunSpec

    out: dict[str, Any] = {}
    for name, f in RunSpec.model_fields.items():
        x = f.json_schema_extra or {}
        key = x.get("key", "always")
        if key == "never":
            continue
        if name in cfg:
            out[name] = cfg[name]
        elif key == "when-set":
            out[name] = x.get("unset", f.default)
    res = cfg.get("resolution") or {}
    for name in ("image_size", "resize"):
        if res.get(name) is not None:
            out[name] = res[name]
    if isinstance(out.get("split_file"), dict):  # kept with its digest in the comparison's config.json
        out["split_file"] = out["split_file"]["path"]
    if "n_boot" in cfg:
        out["n_boot"] = cfg["n_boot"]
    return out


def _anchored(source: str | None, workdir: str | None) -> str | None:
    """``source`` (a data source or a file) with a relative path made absolute against ``workdir``, the
    folder the comparison ran in, when it does not exist from here but does from there."""
    if not source or not workdir:
        return source
    from ..data.sources import SOURCES

    prefix, sep, rest = source.partition(":")
    if sep and prefix in SOURCES:
        if prefix.startswith("demo"):
            return source  # generated, no path
        path, head = rest, f"{prefix}:"
    else:
        path, head = source, ""
    p = Path(path)
    if p.is_absolute() or p.exists() or not (Path(workdir) / p).exists():
        return source
    return head + str(Path(workdir) / p)


def pick_strategy(leaderboard: list[dict[str, Any]]) -> tuple[str, str]:
    """The strategy to ship from leaderboard rows, and why (one sentence).

    Rows need ``strategy``, ``ap_mean`` and, except the baseline, ``delta_ap``,
    ``delta_ci`` and ``p_holm`` (as ``leaderboard.json`` holds them).
    """
    if not leaderboard:
        raise ConfigError("the leaderboard is empty: run `imbvision compare` to the end first")
    base = next((r["strategy"] for r in leaderboard if "delta_ap" not in r), BASELINE)  # normality with no positive
    better = [r for r in leaderboard if r.get("strategy") != base and r.get("p_holm") is not None
              and r["p_holm"] < ALPHA and r.get("delta_ap", 0) > 0]
    cells = leaderboard[0].get("cells", "?")
    if better:
        b = max(better, key=lambda r: r["delta_ap"])
        lo, hi = b.get("delta_ci") or (float("nan"), float("nan"))
        return b["strategy"], (
            f"{b['strategy']} beats the plain baseline beyond noise: ΔAP {b['delta_ap']:+.3f} "
            f"(95% CI {lo:+.3f} to {hi:+.3f}, "
            + (f"p = {b['p_holm']:.3g} as the declared primary comparison" if b.get("gate") == "primary"
               else f"Holm-adjusted p = {b['p_holm']:.3g}")
            + f", {plural(cells, 'paired split')}), "
            f"the largest gain among {len(better)} such strateg{'y' if len(better) == 1 else 'ies'}."
        )
    return base, (
        f"no remedy beats the plain baseline {base} beyond noise over {plural(cells, 'paired split')} "
        f"(Holm-adjusted p < {ALPHA} and ΔAP > 0), so the simplest model is kept."
    )


def settings_from_compare(cmp_dir: str | Path) -> tuple[dict[str, Any], str]:
    """Training settings for the recommended strategy of the comparison in ``cmp_dir``.

    Returns
    -------
    (dict, str)
        Keyword arguments for :class:`~imbvision.training.config.TrainConfig`
        (``strategy``, ``mode="head"``, ``seed=0`` and the compared settings), and
        the sentence saying which strategy and why.

    Raises
    ------
    ConfigError
        When ``cmp_dir`` holds no finished comparison (``leaderboard.json``).
    """
    path = Path(cmp_dir) / "leaderboard.json"
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
        cfg, rows = board["config"], board["leaderboard"]
    except FileNotFoundError:
        raise ConfigError(f"{cmp_dir} holds no finished comparison ({path} is missing); "
                          "run `imbvision compare --out DIR` first, or rerun it to finish") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a leaderboard written by `imbvision compare` ({exc})") from None
    name, why = pick_strategy(rows)
    settings = _compared_settings(cfg)
    for k in ("data", "split_file"):  # relative paths are relative to the folder the comparison ran in
        if k in settings:
            settings[k] = _anchored(settings[k], cfg.get("workdir"))
    settings.update(strategy=name, mode="head", seed=0)
    return settings, why


def why_trained(recommended: str, why: str, trained: str) -> str:
    """What ``config.json`` says about the strategy ``train --from`` trained.

    The comparison's reason when the recommended strategy is trained; when ``--strategy``
    asked for another one, that this one was asked for -- never "the simplest model is kept"
    beside a model that is not the simplest.

    Parameters
    ----------
    recommended
        The strategy :func:`pick_strategy` chose.
    why
        Its sentence.
    trained
        The strategy actually trained (``--strategy`` given on the command line, else ``recommended``).
    """
    if trained == recommended:
        return why
    return (f"{trained} was asked for with --strategy; the comparison recommends {recommended} "
            f"(its reason: {why})")
