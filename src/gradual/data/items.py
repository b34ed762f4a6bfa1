"""The item schema and JSONL io: the one place that defines and validates a QA item.

Item: {"id": str, "question": str, "answers": [str, ...], "relation": str|null, "subject": str|null}.
answers is non-empty; the first answer is canonical, the rest are aliases.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from gradual.atomic import atomic_open
from gradual.errors import UserError, where

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    answers: tuple[str, ...]
    relation: str | None = None
    subject: str | None = None

    @property
    def answer(self) -> str:
        """The canonical answer (used as the fine-tuning target and in exemplars)."""
        return self.answers[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["answers"] = list(self.answers)
        return d


def item_from_dict(obj: Any, path: str | os.PathLike[str], line: int | None) -> Item:
    """Validate one decoded JSON object as an item; errors name the file and line."""
    loc = where(path, line)
    if not isinstance(obj, dict):
        raise UserError(f"{loc}: expected a JSON object, got {type(obj).__name__}")
    ident = obj.get("id")
    if ident is None or (isinstance(ident, str) and not ident.strip()):
        raise UserError(f"{loc}: missing 'id'")
    # A whole number is read as its digits (many QA files number their items); true, 7.5 or a list
    # would each become some other string, so they are refused.
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        raise UserError(f"{loc}: 'id' must be a string (or a whole number), got {_json_text(ident)}")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{loc}: missing or blank 'question'")
    answers = obj.get("answers")
    if not isinstance(answers, list):
        raise UserError(f"{loc}: 'answers' must be a list of strings")
    if not answers:
        raise UserError(f"{loc}: 'answers' is empty")
    if not all(isinstance(a, str) and a.strip() for a in answers):
        raise UserError(f"{loc}: every answer must be a non-blank string")
    for key in ("relation", "subject"):
        val = obj.get(key)
        if val is not None and not isinstance(val, str):
            raise UserError(f"{loc}: '{key}' must be a string or null")
    # De-duplicate aliases but keep the canonical answer first.
    seen: dict[str, None] = {}
    for a in answers:
        seen.setdefault(a.strip(), None)
    return Item(
        id=str(ident),
        question=question.strip(),
        answers=tuple(seen),
        relation=obj.get("relation"),
        subject=obj.get("subject"),
    )


def _json_text(value: Any) -> str:
    """A value as the user wrote it in JSON (`true`, `7`, `[1]`), for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_user_text(path: str | os.PathLike[str], *, allow_empty: bool = False) -> str:
    """A user file's text: missing, folder, non-UTF-8 (and, unless allowed, empty) files are UserErrors
    naming the file (and line)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, expected a file")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{where(p, line)}: not valid UTF-8 (byte {exc.start})") from None
    text = text.removeprefix("\ufeff")  # a BOM from Windows editors is not content
    if not allow_empty and not text.strip():
        raise UserError(f"{p}: empty file")
    return text


def iter_json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object) for each non-blank line of a user's JSONL file.

    The one reader of user JSONL (items, probe files, importers, export): a missing file, a folder,
    non-UTF-8 bytes and malformed JSON all raise UserError naming the file and line. An empty file
    yields nothing; callers that need rows say so in their own words.
    """
    p = Path(path)
    for lineno, raw in enumerate(read_user_text(p, allow_empty=True).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield lineno, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where(p, lineno)}: malformed JSON ({exc.msg})") from None


def read_items(path: str | os.PathLike[str]) -> list[Item]:
    """Read and validate a JSONL file of items. Raises UserError naming file and line."""
    p = Path(path)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_json_lines(p):
        item = item_from_dict(obj, p, lineno)
        if item.id in seen:
            raise UserError(f"{where(p, lineno)}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise UserError(f"{p}: no items (empty file)")
    return items


def seeded_subset(items: Sequence[Any], k: int, seed: int) -> list[Any]:
    """k of `items` drawn without replacement by `random.Random(seed)`, kept in their original order
    (so files stay readable and diffs small). k >= len(items) returns them all."""
    import random

    if k >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), max(k, 0)))
    return [it for i, it in enumerate(items) if i in keep]


def write_items(path: str | os.PathLike[str], items: Iterable[Item]) -> None:
    with atomic_open(path) as fh:
        for it in items:
            fh.write(json.dumps(it.to_dict(), ensure_ascii=False))
            fh.write("\n")


@dataclass
class DatasetDir:
    """A dataset folder: train/dev/test JSONL files and meta.json."""

    path: Path
    train: list[Item]
    dev: list[Item]
    test: list[Item]
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Item]:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A dataset's meta.json: a JSON object. Empty, truncated, non-UTF-8 or non-object files are
    UserErrors naming the file (and line)."""
    p = Path(path)
    text = read_user_text(p)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where(p, exc.lineno)}: malformed JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{p}: expected a JSON object, got {_json_text(meta)}")
    return meta


def load_dataset_dir(path: str | os.PathLike[str]) -> DatasetDir:
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{p}: not a dataset folder (expected train.jsonl, dev.jsonl, test.jsonl)")
    missing = [s for s in SPLITS if not (p / f"{s}.jsonl").exists()]
    if missing:
        raise UserError(f"{p}: missing {', '.join(s + '.jsonl' for s in missing)}")
    meta = read_meta(p / "meta.json") if (p / "meta.json").exists() else {}
    return DatasetDir(p, *(read_items(p / f"{s}.jsonl") for s in SPLITS), meta=meta)


def by_relation(items: Sequence[Item]) -> dict[str | None, list[Item]]:
    out: dict[str | None, list[Item]] = {}
    for it in items:
        out.setdefault(it.relation, []).append(it)
    return out
