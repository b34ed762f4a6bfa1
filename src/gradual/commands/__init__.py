"""CLI command groups, one module each; `gradual.cli` registers them."""

from __future__ import annotations

from typing import Iterable, Mapping


def one_of(choices: Iterable[str], note: str = "", lead: str = "One of") -> str:
    """Help text for a choice flag, built from the registry that defines the choices (a tuple, or a
    dict's keys), so it cannot drift from what the flag accepts: "One of: a, b. <note>"."""
    return f"{lead}: {', '.join(choices)}." + (f" {note}" if note else "")


def one_of_described(choices: Mapping[str, str]) -> str:
    """Like `one_of`, each choice with its description: "One of: a (does x); b (does y)."."""
    return "One of: " + "; ".join(f"{k} ({v})" for k, v in choices.items()) + "."
