"""The strategy registry: every imbalance remedy as a named, documented record.

A strategy string names one or more strategies joined by ``+``, each with
optional parameters after a colon::

    focal:gamma=2,alpha=0.25+balanced-sampler+copy-paste:ratio=0.5

:func:`parse_strategies` turns such a string into :class:`StrategySpec` items
with validated parameters; :func:`compose` checks that they fit together and
returns a :class:`Recipe` that training code consumes family by family.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..registry import Registry

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
]

Family = Literal["loss", "sampler", "resampler", "synthesis", "mixing", "head"]
FAMILIES: tuple[str, ...] = ("loss", "sampler", "resampler", "synthesis", "mixing", "head")


class DoubleCorrectionWarning(UserWarning):
    """Several remedies in one recipe each correct the class prior."""


@dataclass(frozen=True)
class Param:
    """One parameter of a strategy with its default and valid range.

    ``kind`` is ``"float"``, ``"int"``, ``"bool"``, ``"str"`` or ``"float|none"``
    (a float or the word ``none``). ``choices`` restricts a string parameter;
    ``low``/``high`` bound a number (``low_open`` excludes the bound itself).
    A string parameter may accept free numbers too when ``numeric_ok``.
    """

    default: Any
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None
    numeric_ok: bool = False
    doc: str = ""

    def describe(self) -> str:
        if self.choices:
            extra = " or a positive number" if self.numeric_ok else ""
            return f"one of {', '.join(self.choices)}{extra}"
        if self.kind in ("float", "int", "float|none"):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            left = "(" if self.low_open or self.low is None else "["
            rng = f"{self.kind.split('|')[0]} in {left}{lo}, {hi}]"
            return rng + (" or none" if self.kind == "float|none" else "")
        if self.kind == "bool":
            return "true or false"
        return "a string"

    def coerce(self, strategy: str, name: str, value: Any) -> Any:
        """Convert ``value`` (str from the CLI or a Python value) and check its range."""
        bad = ConfigError(
            f"strategy {strategy!r}: parameter {name}={value!r} is invalid; "
            f"valid: {self.describe()}"
        )
        if isinstance(value, str):
            text = value.strip()
            if self.kind == "float|none" and text.lower() in ("none", "null", ""):
                return None
            if self.kind == "bool":
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise bad
            if self.kind == "str":
                if self.choices and text in self.choices:
                    return text
                if self.numeric_ok:
                    try:
                        value = float(text)
                    except ValueError:
                        raise bad from None
                elif self.choices:
                    raise bad
                else:
                    return text
            else:
                try:
                    value = int(text) if self.kind == "int" else float(text)
                except ValueError:
                    raise bad from None
        if value is None:
            if self.kind == "float|none":
                return None
            raise bad
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise bad
        if self.kind == "str" and isinstance(value, str):
            if self.choices and value not in self.choices:
                raise bad
            return value
        if isinstance(value, (list, tuple)) and self.kind == "str" and self.numeric_ok:
            return tuple(float(v) for v in value)
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if math.isnan(num):
            raise bad
        if self.low is not None and (num < self.low or (self.low_open and num <= self.low)):
            raise bad
        if self.high is not None and num > self.high:
            raise bad
        if self.kind == "int":
            if num != int(num):
                raise bad
            return int(num)
        return num


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

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def prior(self) -> np.ndarray:
        c = np.asarray(self.class_counts, dtype=float)
        return c / c.sum()


@dataclass(frozen=True)
class StrategyRecord:
    """A registered remedy.

    ``build(ctx, **params)`` returns the working object for its family:

    - loss: an ``nn.Module`` ``(logits, target) -> scalar`` accepting hard or soft targets;
    - sampler: an object with ``make(labels, *, num_samples=None, seed=0) -> torch Sampler``;
    - resampler: an object with ``fit_resample(X, y) -> ResampleResult``;
    - synthesis: an object with ``synthesize(...)`` producing new minority images with masks;
    - mixing: a batch callable ``(x, y, *, generator, masks=None) -> (x, soft_y)``;
    - head: an estimator with ``fit(X, y, *, loss=None, sampler=None, sample_weight=None,
      loss_name="ce", seed=None)``, ``predict_proba(X)`` and ``to_arrays()``/``get_config()``.
    """

    name: str
    family: str
    description: str
    reference: str
    params: Mapping[str, Param]
    build: Callable[..., Any]
    corrects_prior: Callable[[Mapping[str, Any]], bool] = field(default=lambda p: False)

    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}


_REGISTRY: Registry[StrategyRecord] = Registry("strategy")


def register_strategy(record: StrategyRecord) -> StrategyRecord:
    """Add ``record`` to the registry (names are unique)."""
    if record.family not in FAMILIES:
        raise ValueError(f"family {record.family!r} is not one of {FAMILIES}")
    return _REGISTRY.register(record.name, record)


def get_strategy(name: str) -> StrategyRecord:
    """Return the record named ``name``; unknown names list the valid ones."""
    _ensure_loaded()
    return _REGISTRY.get(name)


def list_strategies(family: str | None = None) -> list[StrategyRecord]:
    """All registered strategies, optionally of one family."""
    _ensure_loaded()
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    return [r for r in _REGISTRY if family is None or r.family == family]


def _ensure_loaded() -> None:
    # Importing the package registers every built-in strategy.
    from . import _builtin  # noqa: F401


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
    params = dict(params or {})
    unknown = [k for k in params if k not in rec.params]
    if unknown:
        valid = ", ".join(rec.params) or "none"
        raise ConfigError(
            f"strategy {name!r} has no parameter {unknown[0]!r}; valid parameters: {valid}"
        )
    full = rec.defaults()
    for key, value in params.items():
        full[key] = rec.params[key].coerce(name, key, value)
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
