"""Strategy parameters: :class:`Param` declares a value's kind and range, and is the one place it is checked.

Each strategy declares one table ``{name: Param}``, its record's ``params``; the
registry (:func:`~imbvision.strategies.registry.make_spec`) checks a strategy
string against it, and the public constructors (``MLPHead(dropout=...)``,
``FocalLoss(alpha=...)``, ``MixUp(alpha=...)``...) check their arguments against
the same table (:func:`check_params`, :func:`resolve_params`), as
imbalanced-learn's ``_parameter_constraints`` do for its estimators. A value the
record accepts therefore builds the object, and one it refuses is refused when the
strategy string is parsed, before any data is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError

__all__ = ["Param", "resolve_params", "check_params"]


class _Invalid(Exception):
    """A value outside a :class:`Param`'s declared range (turned into a ConfigError by the caller)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a strategy with its default and valid range: the one place values are checked.

    ``kind`` is ``"float"``, ``"int"``, ``"bool"``, ``"str"`` or ``"float|none"``
    (a float or the word ``none``). ``choices`` restricts a string parameter;
    ``low``/``high`` bound a number (``low_open``/``high_open`` exclude the bound
    itself). A string parameter may accept free numbers too when ``numeric_ok``.
    Numbers must be finite.

    The registry (:func:`make_spec`) and the public constructors
    (``ClassBalancedLoss(beta=...)``, ``MixUp(alpha=...)``...) both check through
    the same record's ``Param``, so the two can never disagree: :meth:`coerce`
    words the error for a strategy string, :meth:`check` for a constructor.
    """

    default: Any
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None
    numeric_ok: bool = False
    doc: str = ""
    high_open: bool = False

    def describe(self, open_inf: bool = False) -> str:
        """The valid values in words (``open_inf``: write an unbounded range as ``[0, inf)``)."""
        if self.choices:
            extra = " or a positive number" if self.numeric_ok else ""
            return f"one of {', '.join(self.choices)}{extra}"
        if self.kind in ("float", "int", "float|none"):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            left = "(" if self.low_open or self.low is None else "["
            right = ")" if self.high_open or (open_inf and self.high is None) else "]"
            rng = f"{self.kind.split('|')[0]} in {left}{lo}, {hi}{right}"
            return rng + (" or none" if self.kind == "float|none" else "")
        if self.kind == "bool":
            return "true or false"
        return "a string"

    def coerce(self, strategy: str, name: str, value: Any) -> Any:
        """Convert ``value`` (str from the CLI or a Python value) and check its range (strategy-string wording)."""
        try:
            return self._resolve(value)
        except _Invalid:
            raise ConfigError(
                f"strategy {strategy!r}: parameter {name}={value!r} is invalid; valid: {self.describe()}"
            ) from None

    def check(self, owner: str, name: str, value: Any) -> Any:
        """As :meth:`coerce`, worded for a public constructor: ``"{owner}: {name}=... is invalid; valid: ..."``."""
        try:
            return self._resolve(value)
        except _Invalid:
            raise ConfigError(f"{owner}: {name}={value!r} is invalid; valid: {self.describe(open_inf=True)}") from None

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if self.kind == "float|none" and text.lower() in ("none", "null", ""):
                return None
            if self.kind == "bool":
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise _Invalid
            if self.kind == "str":
                if self.choices and text in self.choices:
                    return text
                if self.numeric_ok:
                    try:
                        value = float(text)
                    except ValueError:
                        raise _Invalid from None
                elif self.choices:
                    raise _Invalid
                else:
                    return text
            else:
                try:
                    value = int(text) if self.kind == "int" else float(text)
                except ValueError:
                    raise _Invalid from None
        if value is None:
            if self.kind == "float|none":
                return None
            raise _Invalid
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise _Invalid
        if self.kind == "str" and isinstance(value, str):
            if self.choices and value not in self.choices:
                raise _Invalid
            return value
        if isinstance(value, (list, tuple)) and self.kind == "str" and self.numeric_ok:
            return tuple(float(v) for v in value)
        if isinstance(value, bool) and self.kind in ("int", "float", "float|none"):
            raise _Invalid
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise _Invalid from None
        if not math.isfinite(num):
            raise _Invalid
        if self.low is not None and (num < self.low or (self.low_open and num <= self.low)):
            raise _Invalid
        if self.high is not None and (num > self.high or (self.high_open and num >= self.high)):
            raise _Invalid
        if self.kind == "int":
            if num != int(num):
                raise _Invalid
            return int(num)
        return num


def resolve_params(owner: str, spec: Mapping[str, Param], params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, unknown names refused, every value checked by its :class:`Param` (strategy wording).

    The one parameter resolver behind :func:`make_spec` and the constructors of
    the synthesis and mixing strategies.
    """
    unknown = [k for k in params if k not in spec]
    if unknown:
        valid = ", ".join(spec) or "none"
        raise ConfigError(f"strategy {owner!r} has no parameter {unknown[0]!r}; valid parameters: {valid}")
    full = {k: p.default for k, p in spec.items()}
    full.update(params)
    return {k: spec[k].coerce(owner, k, v) for k, v in full.items()}


def check_params(owner: str, spec: Mapping[str, Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """Each of ``values`` checked by its :class:`Param` in ``spec`` (a public constructor's wording).

    The constructors' half of the one parameter table: ``MLPHead(dropout=1)`` is refused by the
    ``mlp`` record's own ``dropout`` entry, with the range it declares.

    Parameters
    ----------
    owner
        Named in the error (the strategy's name).
    spec
        The strategy record's parameter table.
    values
        ``{name: value}``; every name must be in ``spec``.

    Returns
    -------
    dict
        The checked values (ints as ``int``, floats as ``float``).

    Raises
    ------
    ConfigError
        ``"{owner}: {name}={value!r} is invalid; valid: ..."`` for the first value outside its range.
    """
    return {k: spec[k].check(owner, k, v) for k, v in values.items()}
