"""Errors that the CLI turns into exit code 2 with one clear message (no traceback)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a line, a flag or a config value.

    The message must name what is wrong and where (file and line, or flag), because the CLI
    prints only the message.
    """


def where(path: object, line: int | None = None) -> str:
    """Render a location as `path` or `path:line`, the form every error message uses."""
    return f"{path}:{line}" if line is not None else str(path)
