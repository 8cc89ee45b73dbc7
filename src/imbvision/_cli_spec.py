"""Command-line options generated from a run specification's fields (:mod:`imbvision.spec`).

``imbvision train`` and ``imbvision compare`` declare only what is theirs alone (``--data``,
``--out``, ``--from``, ``--json`` …); every other option is a field of
:class:`~imbvision.training.config.TrainConfig` or
:class:`~imbvision.experiments.config.CompareConfig`, turned into a typer option here: the same
name, default and help, the declared flag (``--prior-correction/--no-prior-correction``). The
command receives them as ``**settings`` and passes them to the config, whose validators check them
(one line naming the option and what is valid). Written by hand because typer builds options from
a function signature only; this builds that signature from the pydantic fields.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable, Literal, Optional, Union

import typer
from pydantic import BaseModel

__all__ = ["spec_options", "cli_fields"]


def cli_fields(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    """The fields of ``model`` that are command-line options (declared ``cli=True``), minus ``skip``."""
    return [n for n, f in model.model_fields.items()
            if (f.json_schema_extra or {}).get("cli", True) and n not in skip]


def _option_type(annotation: Any) -> Any:
    """The type typer parses an option as: a ``Literal`` by its values' type, bounds dropped (the
    config's validator checks them, with its own message), ``Optional`` kept."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _option_type(typing.get_args(annotation)[0])
    if origin is Literal:
        return type(typing.get_args(annotation)[0])
    if origin is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            inner = _option_type(args[0])
            return Optional[inner] if type(None) in typing.get_args(annotation) else inner
        return str  # e.g. str | int (--unfreeze), str | list (--strategies): given as text
    return annotation


def _lenient(kind: type) -> Callable[[Any], Any]:
    """A number option's parser that passes text it cannot parse through unchanged, so the config's
    validator refuses it in the same one line as every other bad value (``--tiles '2.5' invalid; use 0 …
    or 2..6``) instead of click's usage block."""
    def parse(value: Any) -> Any:
        if value is None or isinstance(value, kind) and not isinstance(value, bool):
            return value
        try:
            return float(value) if kind is float else int(str(value), 10)
        except (TypeError, ValueError):
            return value

    parse.__name__ = kind.__name__
    return parse


def _parser(annotation: Any) -> Any:
    base = _option_type(annotation)
    if typing.get_origin(base) is Union:
        base = next(a for a in typing.get_args(base) if a is not type(None))
    return _lenient(base) if base in (int, float) else None


def spec_options(model: type[BaseModel], *, skip: tuple[str, ...] = (), first: tuple[str, ...] = (),
                 only: tuple[str, ...] | None = None) -> Callable[[Callable], Callable]:
    """Decorator: add one keyword-only typer option per command-line field of ``model``.

    The decorated command takes them as ``**settings``; in ``--help`` its own parameters come first,
    then the fields named in ``first``, then the others in declaration order. ``only``: just these
    fields (a command that takes a few of the pipeline settings, e.g. ``audit``, ``embed``).
    """
    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own}
        added = []
        names = [n for n in cli_fields(model, skip) if only is None or n in only]
        for name in [n for n in first if n in names] + [n for n in names if n not in first]:
            if name in taken:
                continue
            f = model.model_fields[name]
            extra = f.json_schema_extra or {}
            decls = list(extra.get("flag") or [])
            parser = _parser(f.annotation)
            opt = typer.Option(f.default, *decls, help=f.description, **({"parser": parser} if parser else {}))
            added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt,
                                           annotation=_option_type(f.annotation)))

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        params = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        params += [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY] + added
        command.__signature__ = sig.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                                        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                                                        else p for p in params])
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer reads the signature above, not the wrapped function's
        return command

    return wrap
