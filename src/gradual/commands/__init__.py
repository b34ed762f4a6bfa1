"""CLI command groups, one module each; `gradual.cli` registers them."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence, TypeVar, get_args, get_origin

_F = TypeVar("_F", bound=Callable[..., Any])


def one_of(choices: Iterable[str], note: str = "", lead: str = "One of") -> str:
    """Help text for a choice flag, built from the registry that defines the choices (a tuple, or a
    dict's keys), so it cannot drift from what the flag accepts: "One of: a, b. <note>"."""
    return f"{lead}: {', '.join(choices)}." + (f" {note}" if note else "")


def one_of_described(choices: Mapping[str, str]) -> str:
    """Like `one_of`, each choice with its description: "One of: a (does x); b (does y)."."""
    return "One of: " + "; ".join(f"{k} ({v})" for k, v in choices.items()) + "."


def _fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _negated(f: dataclasses.Field[Any]) -> bool:
    """A bool field spelled as one --no-NAME flag (probe.cache as --no-cache): the flag turns it off."""
    flag = f.metadata.get("flag", "")
    return f.default is True and "/" not in flag and flag.startswith("--no-")


def options_from(cls: type, names: Iterable[str]) -> list[inspect.Parameter]:
    """typer options for the fields `names` of dataclass `cls`, built from the fields, the one source of
    each fact (gradual.config): the flag is the field's metadata "flag" or --field-name, its default the
    field's, its help the field's "help" (after "One of: ..." for a Literal, from the Literal itself).

    The option's name is the field's; a command gets their values as keyword arguments (with_options),
    and a config from them with config_from. A bool field whose flag is a lone --no-NAME (probe.cache as
    --no-cache) is that flag, off by default, with the field's "flag_help". A Literal is taken as a str
    and checked where the config is validated, as hand-written choice flags are (gradual.probe.run).
    """
    from rich.markup import escape  # typer renders help as rich markup: 'gradual[vllm]' must not vanish

    import typer

    fields, hints = _fields(cls), typing.get_type_hints(cls)
    params = []
    for name in names:
        f, tp = fields[name], hints[name]
        help_text = f.metadata["help"]
        default = f.default
        if get_origin(tp) is Literal:
            help_text, tp = one_of(get_args(tp), help_text), str
        if _negated(f):
            help_text, default = f.metadata.get("flag_help", help_text), False
        flag = f.metadata.get("flag", "--" + name.replace("_", "-"))
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=tp,
                                        default=typer.Option(default, flag, help=escape(help_text))))
    return params


def with_options(cls: type, order: Sequence[str]) -> Callable[[_F], _F]:
    """Decorator: a typer command whose flags are its own parameters and the fields of `cls` (options_from),
    in `order` (names of either: the order of --help). The command takes the fields' values in its
    `**fields`; config_from(cls, fields) makes the config."""

    def wrap(func: _F) -> _F:
        own = {name: p for name, p in inspect.signature(func, eval_str=True).parameters.items()
               if p.kind is not p.VAR_KEYWORD}
        generated = {p.name: p for p in options_from(cls, [n for n in order if n not in own])}
        missing = set(own) - set(order)
        if missing:
            raise TypeError(f"{func.__name__}: parameters not placed in the order: {', '.join(sorted(missing))}")
        params = [(own.get(n) or generated[n]).replace(kind=inspect.Parameter.KEYWORD_ONLY) for n in order]
        func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # what typer reads
        return func

    return wrap


def config_from(cls: type, values: Mapping[str, Any], **more: Any) -> Any:
    """An instance of dataclass `cls` from the values of its generated flags (with_options), a --no-NAME
    flag turned back into its field (--no-cache given: cache False), and `more`; fields not given keep
    their defaults."""
    fields = _fields(cls)
    kwargs = {name: (not value if _negated(fields[name]) else value) for name, value in values.items()}
    return cls(**{**kwargs, **more})
