"""Validate a JSONL file or a dataset folder, and summarize it (counts, answer lengths, aliases).

Run as: gradual data validate data/world && gradual data stats data/world
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Sequence

from gradual.data.items import SPLITS, Item, load_dataset_dir, read_items
from gradual.data.splits import subject_overlap
from gradual.errors import UserError, where


@dataclass
class Loaded:
    """A validated file (one part named "file") or dataset folder (train/dev/test)."""

    path: Path
    parts: dict[str, list[Item]]
    is_dataset: bool


def load_path(path: Path) -> Loaded:
    """Read and validate a JSONL file or dataset folder; every problem is a UserError naming it.

    Beyond each file's own checks (items.read_items), a folder must not repeat an id across
    splits, and its meta.json counts, when present, must match the files.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_file():
        return Loaded(path, {"file": read_items(path)}, is_dataset=False)
    ds = load_dataset_dir(path)
    seen: dict[str, str] = {}
    for s in SPLITS:
        for line, it in enumerate(ds.split(s), start=1):
            # read_items skips blank lines, so the line is exact only for files we wrote.
            if it.id in seen:
                raise UserError(f"{where(path / f'{s}.jsonl', line)}: duplicate id {it.id!r} (also in {seen[it.id]})")
            seen[it.id] = f"{s}.jsonl"
    counts = ds.meta.get("counts") if isinstance(ds.meta, dict) else None
    if isinstance(counts, dict):
        for s in SPLITS:
            if s in counts and counts[s] != len(ds.split(s)):
                raise UserError(f"{path / 'meta.json'}: counts.{s} is {counts[s]} but {s}.jsonl has {len(ds.split(s))} items")
    return Loaded(path, {s: ds.split(s) for s in SPLITS}, is_dataset=True)


@dataclass
class PartStats:
    items: int
    answer_words_mean: float
    answer_words_max: int
    answer_chars_mean: float
    answer_chars_max: int
    share_with_aliases: float
    mean_aliases: float


@dataclass
class Stats:
    path: Path
    parts: dict[str, PartStats]  # per split (or "file"), plus "all"
    by_relation: dict[str, dict[str, int]]  # relation -> part -> count
    train_test_subject_overlap: int | None = None
    meta: dict[str, object] = field(default_factory=dict)


def part_stats(items: Sequence[Item]) -> PartStats:
    """Answer length is the canonical answer's (the fine-tuning target); aliases are the rest."""
    if not items:
        return PartStats(0, 0.0, 0, 0.0, 0, 0.0, 0.0)
    words = [len(it.answer.split()) for it in items]
    chars = [len(it.answer) for it in items]
    aliases = [len(it.answers) - 1 for it in items]
    return PartStats(
        items=len(items),
        answer_words_mean=mean(words),
        answer_words_max=max(words),
        answer_chars_mean=mean(chars),
        answer_chars_max=max(chars),
        share_with_aliases=sum(a > 0 for a in aliases) / len(items),
        mean_aliases=mean(aliases),
    )


def dataset_stats(path: Path) -> Stats:
    loaded = load_path(path)
    parts = {name: part_stats(items) for name, items in loaded.parts.items()}
    parts["all"] = part_stats([it for items in loaded.parts.values() for it in items])
    by_rel: dict[str, dict[str, int]] = {}
    for name, items in loaded.parts.items():
        for it in items:
            row = by_rel.setdefault(it.relation or "(none)", {})
            row[name] = row.get(name, 0) + 1
    overlap = len(subject_overlap(loaded.parts)) if loaded.is_dataset else None
    return Stats(loaded.path, parts, dict(sorted(by_rel.items())), overlap)
