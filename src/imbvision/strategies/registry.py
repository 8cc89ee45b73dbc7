"""The strategy registry: every imbalance remedy as a named, documented record.

A strategy string names one or more strategies joined by ``+``, each with
optional parameters after a colon::

    focal:gamma=2,alpha=0.25+balanced-sampler+copy-paste:ratio=0.5

:func:`parse_strategies` turns such a string into :class:`StrategySpec` items
with validated parameters; :func:`compose` checks that they fit together and
returns a :class:`Recipe` that training code consumes family by family.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..registry import Registry
from .params import Param, resolve_params

__all__ = [
    "FAMILIES",
    "Param",
    "StrategyContext",
    "StrategyRecord",
    "StrategySpec",
    "Recipe",
    "register_strategy",
    "get_strategy",
    "list_strategies",
    "parse_strategies",
    "compose",
    "DoubleCorrectionWarning",
    "TrainingPrior",
    "MODES",
    "keeps_prior",
    "weight_shift",
    "recipe_prior",
    "resolve_params",
    "make_spec",
    "finetune_alternatives",
]

Family = Literal["loss", "sampler", "resampler", "synthesis", "mixing", "head"]
FAMILIES: tuple[str, ...] = ("loss", "sampler", "resampler", "synthesis", "mixing", "head")


class DoubleCorrectionWarning(UserWarning):
    """Several remedies in one recipe each correct the class prior."""


class NoPriorCorrectionWarning(UserWarning):
    """The recipe shifts the class prior by an amount no formula gives, so no prior correction is applied."""


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may know about the training data when it is built.

    Attributes
    ----------
    class_counts
        Number of training samples per class (index = class id; binary: [neg, pos]).
    seed
        Seed for any randomness the strategy owns.
    """

    class_counts: tuple[int, ...] = (1, 1)
    seed: int = 0

    @classmethod
    def from_labels(cls, y: Any, seed: int = 0) -> "StrategyContext":
        """The context of binary labels ``y`` ``(N,)`` (soft labels count as positive from 0.5)."""
        arr = np.asarray(y, dtype=np.float64)
        n1 = int((arr >= 0.5).sum())
        return cls(class_counts=(int(arr.size - n1), n1), seed=seed)

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def prior(self) -> np.ndarray:
        c = np.asarray(self.class_counts, dtype=float)
        return c / c.sum()


@dataclass(frozen=True)
class TrainingPrior:
    """What a remedy's prior shift starts from: the positive share so far and the training rows.

    Attributes
    ----------
    pi
        The effective positive rate so far, in (0, 1).
    counts
        ``(negatives, positives)`` training rows after synthesis and resampling, the counts
        class weights are computed from.
    """

    pi: float
    counts: tuple[int, int]


def keeps_prior(params: Mapping[str, Any], prior: TrainingPrior) -> float | None:
    """The prior shift of a remedy that does not re-weight (or whose rows are already counted)."""
    return prior.pi


def weight_shift(pi: float, w1: float, w0: float = 1.0) -> float:
    """Positive rate after weighting positives by ``w1`` and negatives by ``w0`` (Saerens et al. 2002).

    ``w1 π / (w1 π + w0 (1 - π))``: a model trained with those weights estimates
    the posterior under this prior, which the analytic correction then undoes.
    """
    return w1 * pi / (w1 * pi + w0 * (1.0 - pi))


MODES: tuple[str, ...] = ("head", "finetune")


@dataclass(frozen=True)
class StrategyRecord:
    """A registered remedy: how to build it and what it does to the pipeline (its declared capabilities).

    ``build(ctx, **params)`` returns the working object for its family:

    - loss: an ``nn.Module`` ``(logits, target) -> scalar`` accepting hard or soft targets;
    - sampler: an object with ``make(labels, *, num_samples=None, seed=0) -> torch Sampler``;
    - resampler: an object with ``fit_resample(X, y) -> ResampleResult``;
    - synthesis: an object with ``synthesize(...)`` producing new minority images with masks;
    - mixing: a batch callable ``(x, y, *, generator, masks=None) -> (x, soft_y)``;
    - head: an estimator with ``fit(X, y, *, loss=None, sampler=None, sample_weight=None,
      loss_name="ce", seed=None)``, ``predict_proba(X)`` and ``to_arrays()``/``get_config()``.

    Capabilities (training code and the common test ask these, never a list of names):

    prior_shift
        ``(params, TrainingPrior) -> float | None``: the positive rate the model effectively
        trains at after this remedy, given the rate before it; ``None`` when no analytic form
        exists (e.g. focal's γ > 0). Remedies that change the rows (synthesis, resamplers,
        mixing) keep the prior: the pipeline measures the rows they leave. Composed over a
        recipe by :func:`recipe_prior` (Saerens et al. 2002).
    corrects_prior
        ``params -> bool``: it leans training toward the minority (for the double-correction warning).
    generates_samples
        It makes training rows that have no source image (SMOTE-like): head mode only.
    needs_background
        It pastes onto a training negative (a synthesiser that needs a background image).
    needs_embeddings
        It needs the backbone's embeddings of the training images even in fine-tune mode
        (neighbour-based cleaning).
    modes
        The training modes it works in (``head``, ``finetune``).
    weight_only
        ``params -> bool`` (losses): the loss is cross-entropy with per-class weights, so a
        head that can only express class weights (``logreg``) can minimise it.
    any_loss, takes_sampler
        (Heads) whether it minimises any loss module, and whether it trains in batches a sampler draws.
    representation
        (Heads) the features it consumes: ``"global"`` (one vector per image) or another name
        registered with :func:`imbvision.training.cell.register_representation` (e.g. patch grids).
    heatmaps
        (Heads) it scores patches, so it draws heat maps and its localisation is scored where masks exist.
    needs_positives
        (Heads) it needs positive training images (``False``: it learns from negatives alone).
    variants
        (Heads) other settings of it worth comparing against its defaults (``compare`` with no
        training positive compares these).
    reads_masks
        (Heads) it learns from the positives' object masks where they have them, so a bad mask of a
        training positive stops its fit (a head that does not read masks trains on despite one).
    uses_loss
        (Heads) the recipe's loss and sampler change its fit (``False``: it models the training
        negatives alone and ignores both; the run then says so).
    load
        (Heads) ``(arrays, config) -> head``: rebuilds a fitted head from its ``to_arrays()`` and
        ``get_config()`` (how a bundle's head is read back; :func:`~imbvision.strategies.head_base.head_from_arrays`).
    saved
        (Heads) what its saved arrays and config must satisfy, a
        :class:`~imbvision.strategies.head_base.SavedHead` (checked when a bundle is opened, before
        ``load``; ``None``: only its parameters and finite arrays are checked).

    Parameters are declared once, in ``params`` (see :mod:`imbvision.strategies.params`); a rule
    between parameters is ``constraint``: ``params -> None or the reason they do not fit together``
    (e.g. ``scale_min <= scale_max``), checked when a strategy string is parsed and by the constructor.
    """

    name: str
    family: str
    description: str
    reference: str
    params: Mapping[str, Param]
    build: Callable[..., Any]
    corrects_prior: Callable[[Mapping[str, Any]], bool] = field(default=lambda p: False)
    prior_shift: Callable[[Mapping[str, Any], TrainingPrior], float | None] = keeps_prior
    generates_samples: bool = False
    needs_background: bool = False
    needs_embeddings: bool = False
    modes: tuple[str, ...] = MODES
    weight_only: Callable[[Mapping[str, Any]], bool] = field(default=lambda p: False)
    any_loss: bool = True
    takes_sampler: bool = True
    representation: str = "global"
    heatmaps: bool = False
    needs_positives: bool = True
    variants: tuple[str, ...] = ()
    reads_masks: bool = False
    uses_loss: bool = True
    load: Callable[[Mapping[str, Any], Mapping[str, Any]], Any] | None = None
    saved: Any = None
    constraint: Callable[[Mapping[str, Any]], str | None] | None = None

    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}


_REGISTRY: Registry[StrategyRecord] = Registry("strategy")


def register_strategy(record: StrategyRecord) -> StrategyRecord:
    """Add ``record`` to the registry (names are unique)."""
    if record.family not in FAMILIES:
        raise ValueError(f"family {record.family!r} is not one of {FAMILIES}")
    bad = [m for m in record.modes if m not in MODES]
    if bad or not record.modes:
        raise ValueError(f"strategy {record.name!r}: modes {record.modes!r} invalid; valid: {MODES}")
    if record.family == "head" and record.load is None:
        raise ValueError(f"head {record.name!r} declares no `load` (how a saved head is rebuilt)")
    return _REGISTRY.register(record.name, record)


def get_strategy(name: str) -> StrategyRecord:
    """Return the record named ``name``; unknown names list the valid ones.

    Every built-in strategy is registered by its own module, which the package
    ``imbvision.strategies`` imports before this module can be used (as timm's
    registry, this module never imports its members).
    """
    return _REGISTRY.get(name)


def list_strategies(family: str | None = None) -> list[StrategyRecord]:
    """All registered strategies, optionally of one family."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    return [r for r in _REGISTRY if family is None or r.family == family]


@dataclass(frozen=True)
class StrategySpec:
    """One strategy with validated parameters."""

    name: str
    params: Mapping[str, Any]

    @property
    def record(self) -> StrategyRecord:
        return get_strategy(self.name)

    def build(self, ctx: StrategyContext) -> Any:
        return self.record.build(ctx, **dict(self.params))

    def __str__(self) -> str:
        rec = self.record
        changed = {k: v for k, v in self.params.items() if rec.params[k].default != v}
        if not changed:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in changed.items())


def _fmt(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def make_spec(name: str, params: Mapping[str, Any] | None = None) -> StrategySpec:
    """Validate ``params`` against the record of ``name`` and fill defaults."""
    rec = get_strategy(name)
    given = dict(params or {})
    full = rec.defaults()
    # Defaults are the record's own (trusted) values; only given ones are coerced, as before.
    full.update({k: v for k, v in resolve_params(name, rec.params, given).items() if k in given})
    why = rec.constraint(full) if rec.constraint is not None else None
    if why:
        raise ConfigError(f"strategy {name!r}: {why}")
    return StrategySpec(name, full)


def parse_strategies(text: str | Sequence[str] | Sequence[StrategySpec]) -> list[StrategySpec]:
    """Parse ``"focal:gamma=2+balanced-sampler"`` into validated specs.

    Also accepts a list of such strings or of ready specs.
    """
    if isinstance(text, (list, tuple)):
        out: list[StrategySpec] = []
        for item in text:
            out.extend([item] if isinstance(item, StrategySpec) else parse_strategies(item))
        return out
    assert isinstance(text, str)
    text = text.strip()
    if not text:
        raise ConfigError("empty strategy; give at least one name, e.g. 'ce' (see `imbvision strategies`)")
    specs = []
    for part in text.split("+"):
        part = part.strip()
        if not part:
            raise ConfigError(f"empty name in strategy {text!r}: check for a doubled or trailing '+'")
        name, _, arg = part.partition(":")
        params: dict[str, str] = {}
        if arg:
            for kv in arg.split(","):
                key, eq, val = kv.partition("=")
                if not eq or not key.strip():
                    raise ConfigError(
                        f"bad parameter {kv!r} in strategy {part!r}; write name:key=value,key=value"
                    )
                params[key.strip()] = val.strip()
        specs.append(make_spec(name.strip(), params))
    return specs


@dataclass(frozen=True)
class Recipe:
    """A composed set of strategies, sorted by family.

    At most one loss, sampler, mixing and head; resamplers and synthesis
    steps apply in the order given. ``loss`` defaults to ``ce`` and ``head``
    to ``logreg`` when absent.
    """

    specs: tuple[StrategySpec, ...]
    loss: StrategySpec
    head: StrategySpec
    sampler: StrategySpec | None = None
    mixing: StrategySpec | None = None
    resamplers: tuple[StrategySpec, ...] = ()
    synthesis: tuple[StrategySpec, ...] = ()

    @property
    def name(self) -> str:
        return "+".join(str(s) for s in self.specs) or "ce"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategies": [{"name": s.name, "family": s.record.family, "params": dict(s.params)} for s in self.specs],
        }


_SINGLE = ("loss", "sampler", "mixing", "head")


def compose(specs: str | Sequence[StrategySpec] | Sequence[str]) -> Recipe:
    """Check that ``specs`` fit together and sort them by family.

    Refuses two of a single-valued family (two losses cannot both be minimised
    as "the" objective). Warns with :class:`DoubleCorrectionWarning` when two or
    more remedies each re-weight toward the minority (e.g. a balanced sampler
    plus balanced class weights plus focal alpha): the prior is then corrected
    twice and predictions lean to the minority.
    """
    items = parse_strategies(specs) if not (
        isinstance(specs, (list, tuple)) and all(isinstance(s, StrategySpec) for s in specs)
    ) else list(specs)  # type: ignore[arg-type]
    by_family: dict[str, list[StrategySpec]] = {f: [] for f in FAMILIES}
    for spec in items:
        by_family[spec.record.family].append(spec)
    for fam in _SINGLE:
        if len(by_family[fam]) > 1:
            names = " and ".join(s.name for s in by_family[fam])
            raise ConfigError(
                f"cannot combine {names}: a recipe takes at most one {fam}. "
                f"Pick one {fam} and combine it with other families "
                "(sampler, resampler, synthesis, mixing)."
            )
    names = [s.name for s in items]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"strategy {dup!r} is named twice in {'+'.join(names)}")
    correcting = [s.name for s in items if s.record.corrects_prior(s.params)]
    if len(correcting) > 1:
        warnings.warn(
            f"{' + '.join(correcting)} each shift the class prior toward the minority; "
            "together they correct it more than once and over-predict the rare class. "
            "Keep one, or rely on threshold tuning (it is done on validation anyway).",
            DoubleCorrectionWarning,
            stacklevel=2,
        )
    loss = by_family["loss"][0] if by_family["loss"] else make_spec("ce")
    head = by_family["head"][0] if by_family["head"] else make_spec("logreg")
    return Recipe(
        specs=tuple(items),
        loss=loss,
        head=head,
        sampler=by_family["sampler"][0] if by_family["sampler"] else None,
        mixing=by_family["mixing"][0] if by_family["mixing"] else None,
        resamplers=tuple(by_family["resampler"]),
        synthesis=tuple(by_family["synthesis"]),
    )


#: Pipeline order of the families for the prior: rows first (measured), then the draw, then the objective.
_PRIOR_STAGES = ("synthesis", "mixing", "resampler", "sampler", "loss", "head")


def recipe_prior(recipe: Recipe, counts: tuple[int, int], soft_pos_share: float | None = None) -> float | None:
    """The positive rate a recipe's model effectively trains at, composed from every record's ``prior_shift``.

    Starts from the training rows (after synthesis and resampling; ``soft_pos_share`` is the mean of
    soft labels when mixing made some) and applies each remedy's declared shift in pipeline order:
    a sampler changes the drawn share, a loss re-weights it (Saerens, Latinne & Decaestecker 2002,
    "Adjusting the outputs of a classifier to new a priori probabilities"). E.g. ``weighted-ce``
    (balanced weights ``w_c = n/(2 n_c)``) after a balanced sampler gives
    ``w1·½ / (w1·½ + w0·½) = n0/n``, 0.95 at 5 % positives.

    Parameters
    ----------
    recipe
        The composed strategies (its ``loss`` counts even when it is the default ``ce``).
    counts
        ``(negatives, positives)`` training rows the loss and sampler are built from.
    soft_pos_share
        The mean training label when soft labels are present, else ``None`` (``n1 / n``).

    Returns
    -------
    float or None
        The effective prior clipped to ``[1e-6, 1 - 1e-6]``, or ``None`` when a remedy has no
        analytic shift (then no prior correction is applied; calibration on validation is the remedy).
    """
    n0, n1 = int(counts[0]), int(counts[1])
    pi = soft_pos_share if soft_pos_share is not None else n1 / max(1, n0 + n1)
    specs = list(recipe.specs)
    if recipe.loss not in specs:
        specs.append(recipe.loss)
    specs.sort(key=lambda s: _PRIOR_STAGES.index(s.record.family))
    for spec in specs:
        shifted = spec.record.prior_shift(spec.params, TrainingPrior(float(pi), (n0, n1)))
        if shifted is None:
            return None
        pi = shifted
    return float(min(max(pi, 1e-6), 1 - 1e-6))


def finetune_alternatives() -> str:
    """What a fine-tune run can use instead of a head-mode-only strategy, read from the records."""
    groups = []
    for fam, label in (("resampler", "a selection resampler"), ("synthesis", "a synthesis step"),
                       ("sampler", "a sampler")):
        names = [r.name for r in list_strategies(fam) if "finetune" in r.modes]
        if names:
            groups.append(f"{label} ({', '.join(names)})")
    return ", ".join(groups[:-1]) + " or " + groups[-1] if len(groups) > 1 else "".join(groups)
