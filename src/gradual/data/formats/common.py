"""What every importer shares: options, reading user files with locations, answer cells, and the
item collector that rejects duplicate ids.

Run as: used by the readers in gradual.data.formats; no command of its own.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gradual.answers import normalize
from gradual.data.items import (
    Item,
    item_from_dict,
    iter_json_lines,
    read_user_text,
)
from gradual.errors import UserError, where


@dataclass(frozen=True)
class ImportOptions:
    """Column choices for csv/tsv (and the hf format): None means "use the usual name if present"."""

    question_col: str = "question"
    answer_col: str | None = None  # default: "answers", else "answer"
    alias_sep: str = "|"
    relation_col: str | None = None  # default: "relation" if present
    subject_col: str | None = None  # default: "subject" if present
    id_col: str | None = None  # default: "id" if present, else <file stem>:<line>


@dataclass
class Loaded:
    """What a reader returns: either its own splits (kept) or one pool of items (split by seed)."""

    items: list[Item] = field(default_factory=list)
    splits: dict[str, list[Item]] | None = None


def read_text(path: Path) -> str:
    return read_user_text(path)


def json_error(path: Path, exc: json.JSONDecodeError) -> UserError:
    return UserError(f"{where(path, exc.lineno)}: malformed JSON ({exc.msg})")


def load_json(path: Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise json_error(path, exc) from None


def json_array_with_lines(path: Path) -> Iterator[tuple[Any, int]]:
    """Yield (element, line) for a file holding one JSON array, so errors can name the line."""
    text = read_text(path)
    dec = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", pos):
        raise UserError(f"{where(path, text.count(chr(10), 0, pos) + 1)}: expected a JSON list")
    pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        return
    line, counted = 1, 0  # lines counted incrementally: files run to many MB

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    while True:
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise json_error(path, exc) from None
        yield obj, line_at(pos)
        pos = ws.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith(",", pos):
            pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
            continue
        if text.startswith("]", pos) and not text[pos + 1 :].strip():
            return
        raise UserError(f"{where(path, line_at(pos))}: malformed JSON (expected ',' or ']' in the list)")


def jsonl_rows(path: Path) -> Iterator[tuple[Any, int]]:
    """(object, line) per JSONL line, through the one JSONL reader; an empty file is an error here."""
    empty = True
    for lineno, obj in iter_json_lines(path):
        empty = False
        yield obj, lineno
    if empty:
        raise UserError(f"{path}: empty file")


def table_rows(path: Path, delimiter: str) -> tuple[list[str], Iterator[tuple[dict[str, str], int]]]:
    """Header and (row dict, line) pairs of a CSV/TSV file."""
    text = read_text(path)
    csv.field_size_limit(1 << 24)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise UserError(f"{where(path, 1)}: {exc}") from None

    def rows() -> Iterator[tuple[dict[str, str], int]]:
        start = reader.line_num + 1
        try:
            for row in reader:
                line = start
                start = reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise UserError(f"{where(path, line)}: {len(row)} fields, the header has {len(header)}")
                yield dict(zip(header, row)), line
        except csv.Error as exc:
            raise UserError(f"{where(path, reader.line_num)}: {exc}") from None

    return header, rows()


def dedupe_answers(answers: list[Any]) -> list[Any]:
    """Drop aliases equal to an earlier answer after normalization (keeps the canonical first).

    Non-strings pass through untouched so item validation reports them.
    """
    out: list[Any] = []
    seen: set[str] = set()
    for a in answers:
        if isinstance(a, str) and a.strip():
            key = normalize(a) or a.strip()
            if key in seen:
                continue
            seen.add(key)
        out.append(a)
    return out


class Collector:
    """Builds validated items, rejecting duplicate ids with both locations."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._seen: dict[str, str] = {}

    def add(self, obj: dict[str, Any], path: Path | str, line: int | None) -> None:
        if isinstance(obj.get("answers"), list):
            obj = {**obj, "answers": dedupe_answers(obj["answers"])}
        item = item_from_dict(obj, path, line)
        loc = where(path, line)
        if item.id in self._seen:
            raise UserError(f"{loc}: duplicate id {item.id!r} (first at {self._seen[item.id]})")
        self._seen[item.id] = loc
        self.items.append(item)

    def result(self, path: Path) -> list[Item]:
        if not self.items:
            raise UserError(f"{path}: no items")
        return self.items


def need_list(obj: dict[str, Any], key: str, loc: str) -> list[Any]:
    val = obj.get(key)
    if val is None:
        raise UserError(f"{loc}: missing '{key}'")
    if not isinstance(val, list):
        raise UserError(f"{loc}: '{key}' must be a list of strings, got {type(val).__name__}")
    if not val:
        raise UserError(f"{loc}: '{key}' is empty")
    return val


def need_object(obj: Any, loc: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UserError(f"{loc}: expected a JSON object, got {type(obj).__name__}")
    return obj


def opt_str(val: Any) -> str | None:
    if val is None:
        return None
    s = str(val).strip()
    return s or None


# Shown with a malformed JSON-looking cell: the escape hatch for an answer that really starts with "[".
_LITERAL_HINT = "a cell starting with '[' is read as a JSON list of answers; write a literal answer as [\"...\"]"


def json_string_list(text: str, loc: str, col: str, hint: str = "") -> list[str]:
    """`text` parsed as a JSON list of strings (blank items dropped); a UserError naming loc and col else."""
    tail = f"; {hint}" if hint else ""
    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{loc}: '{col}' is not a JSON list ({exc.msg}){tail}") from None
    if not isinstance(val, list):
        raise UserError(f"{loc}: '{col}' must be a JSON list, got {type(val).__name__}")
    bad = next((k for k, a in enumerate(val) if not isinstance(a, str)), None)
    if bad is not None:
        raise UserError(f"{loc}: '{col}' must be a JSON list of strings, item {bad} is {type(val[bad]).__name__}")
    answers = [a for a in val if a.strip()]
    if not answers:
        raise UserError(f"{loc}: '{col}' is empty")
    return answers


def answers_from_cell(cell: str, loc: str, col: str, sep: str = "") -> list[str]:
    """The answers in one string cell (csv, tsv, or a string column of an hf dataset).

    Hub and spreadsheet exports often store the alias list JSON-encoded inside a string, e.g.
    PopQA's '["Paris", "City of Light"]', so a cell starting with "[" is read as that list. A
    malformed one ('[Paris') is an error, not a literal answer: it is almost always a broken
    export, and kept as-is it would be an answer no model output can ever match. Any other cell
    is split on `sep` (when given); blank parts are dropped.
    """
    text = cell.strip()
    if text.startswith("["):
        return json_string_list(text, loc, col, _LITERAL_HINT)
    answers = [a.strip() for a in text.split(sep)] if sep else [text]
    answers = [a for a in answers if a]
    if not answers:
        raise UserError(f"{loc}: empty answer in column {col!r}")
    return answers


def pick_column(header: list[str], given: str | None, flag: str, path: Path, *defaults: str) -> str | None:
    """The column to use: the one named by the flag (must exist) or the first default present."""
    if given is not None:
        if given not in header:
            raise UserError(f"{where(path, 1)}: no column {given!r} ({flag}); columns are: {', '.join(header)}")
        return given
    return next((d for d in defaults if d in header), None)
