"""The declaration machinery of the run specification: a field's metadata and one-line errors."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .._choices import LEGACY_PATCH_LAYERS
from ..errors import ConfigError

__all__ = ["_field", "_Declared", "flag_of", "migrate_config"]

_NO_UNSET = object()


def _field(default: Any, help: str, *, valid: str, key: str = "always", flag: tuple[str, ...] = (),
           cli: bool = True, unset: Any = _NO_UNSET, **constraints: Any) -> Any:
    """A declared setting.

    ``valid`` says in words what is valid (the error message); ``key`` whether it enters a comparison's
    fingerprint (``always``; ``when-set``: only when not ``unset`` — the value every run had before the
    setting existed, by default its default — so folders made before it match; ``never``: where results
    do not depend on it); ``flag`` the option's declarations when not ``--name``; ``cli=False`` for a
    setting the commands take as an argument of their own.
    """
    extra = {"valid": valid, "key": key, "flag": list(flag), "cli": cli}
    if unset is not _NO_UNSET:
        extra["unset"] = unset
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def _takes_int(annotation: Any) -> bool:
    """Whether a field holds integers only (``int``, a ``Literal`` of integers, bounded or optional)."""
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _takes_int(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return all(isinstance(a, int) and not isinstance(a, bool) for a in typing.get_args(annotation))
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_takes_int(a) for a in args)
    return annotation is int


class _Declared(BaseModel):
    """Strict fields, unknown keys refused, one-line errors (:class:`~imbvision.errors.ConfigError`)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_one_line(type(self), exc)) from None

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: Any) -> Any:
        # strict mode still takes True/False for a Literal of numbers (True == 1): refuse them
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(v, bool) and annotation not in (bool, Optional[bool]):
            raise ValueError("a number is expected, not a boolean")
        if isinstance(v, float) and _takes_int(annotation):  # 2.0 == 2 would pass a Literal of integers
            raise ValueError("an integer is expected")
        if isinstance(v, PurePath):  # paths are kept as text (config.json), a pathlib.Path is welcome
            return str(v)
        return v

    @classmethod
    def field_names(cls) -> set[str]:
        return set(cls.model_fields)

    def to_dict(self) -> dict[str, Any]:
        """Every field (JSON types): what ``config.json`` holds."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Read back :meth:`to_dict` (of this or an older version: see :func:`migrate_config`)."""
        return cls(**migrate_config(d, cls))

    def replace(self, **changes: Any) -> Any:
        """A validated copy with ``changes``."""
        return type(self)(**{**self.model_dump(), **changes})


#: Fields the commands take as their own required argument (``--data``, ``--out``), not generated.
COMMAND_ARGS = ("data", "out")


def flag_of(model: type[BaseModel], name: str) -> str:
    """The option a field is given by, e.g. ``--image-size``; a Python-only field by its name (``n_boot``)."""
    f = model.model_fields.get(name)
    extra = (f.json_schema_extra or {}) if f is not None else {}
    if f is not None and not extra.get("cli", True) and name not in COMMAND_ARGS:
        return name
    decl = extra.get("flag") or []
    return decl[0].split("/")[0] if decl else "--" + name.replace("_", "-")


def _one_line(model: type[BaseModel], exc: ValidationError) -> str:
    e = exc.errors()[0]
    loc = [str(p) for p in e.get("loc", ())]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if not loc:  # a model validator: its own message
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        return msg + more
    name = loc[0]
    own = (e.get("ctx") or {}).get("error")
    if isinstance(own, ConfigError):  # a validator that has its own one-line message (the threshold rule parser)
        return f"{flag_of(model, name)}: {own}{more}"
    if e.get("type") == "extra_forbidden":
        return f"unknown setting {name!r}; valid: {', '.join(sorted(model.model_fields))}"
    f = model.model_fields.get(name)
    valid = (f.json_schema_extra or {}).get("valid") if f is not None else None
    got = e.get("input")
    why = str(e.get("msg", "")).removeprefix("Value error, ")
    return f"{flag_of(model, name)} {got!r} invalid; {valid or why}{more}"


#: What settings added over time were before they existed (read back from older files).
_LEGACY_CONFIG = {"resize": "stretch", "split": "random", "split_file": None, "patch_layers": LEGACY_PATCH_LAYERS}


def migrate_config(d: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """A config dict of any earlier version, with what it lacks filled as it was when it was made.

    The one migration for run folders' ``config.json`` and bundles' ``model.json["config"]``: settings
    added after the file was written take the value every run had before (patch features of
    ``s8+s16`` strides, ``stretch`` resizing, a random split); keys only read by people
    (``recipe``, ``split_realised``) are dropped. Unknown keys stay, so validation refuses them.
    """
    out = {k: v for k, v in d.items() if k not in ("recipe", "split_realised")}
    names = set(model.model_fields)
    for k, v in _LEGACY_CONFIG.items():
        if k in names and k not in out:
            out[k] = v
    return out
