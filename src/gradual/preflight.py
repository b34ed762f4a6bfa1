"""Refuse, before any work, an output that could not be written when the work is done.

Run as: used by the commands that write (probe, eval, export, data, train, model merge) and by
gradual.runlock (run and compare folders).

A probe of hours that ends in IsADirectoryError, or in a read-only folder, loses its result; these
checks cost a stat or two. They cannot promise the write (a disk can fill meanwhile: gradual.atomic
then names the file and the CLI says so in one line), only that nothing known to fail is started.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gradual.errors import UserError


def _can_write(folder: Path) -> bool:
    """Whether a folder can be made in `folder`, found by making one and removing it: permission bits
    say nothing for root, and /proc or a read-only mount refuse what os.access allows."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gradual-preflight-", dir=folder))
        return True
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_can_create_in(path: Path, flag: str) -> None:
    parent = _nearest_existing(path)
    if not parent.is_dir():
        raise UserError(f"{flag}: {path}: {parent} is a file, not a folder")
    if not _can_write(parent):
        raise UserError(f"{flag}: {path}: cannot write in {parent} (read-only or no permission)")


def writable_file(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """`path` can be written as a file: it is not a folder, and its folder exists or can be made and
    is writable."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag}: {p} is a folder; give a file path")
    if p.exists() and not _can_write(p.parent):
        raise UserError(f"{flag}: {p}: cannot replace it in {p.parent} (read-only or no permission)")
    _check_can_create_in(p, flag)
    return p


def writable_folder(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """`path` can be a folder we write in: not a file, and writable (or creatable)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag}: {p} is a file, not a folder")
    if p.is_dir():
        if not _can_write(p):
            raise UserError(f"{flag}: cannot write in {p} (read-only or no permission)")
    else:
        _check_can_create_in(p, flag)
    return p
