"""Readers of public benchmark layouts: TriviaQA's JSON and EntityQuestions' folder of relations.

Run as: gradual data import --format entityquestions dataset/ --out data/eq
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradual.data.formats.common import (
    Collector,
    ImportOptions,
    Loaded,
    json_array_with_lines,
    load_json,
    need_list,
    need_object,
    opt_str,
)
from gradual.data.items import (
    SPLITS,
    Item,
)
from gradual.errors import UserError, where


def read_triviaqa(path: Path, opts: ImportOptions) -> Loaded:
    """TriviaQA JSON: {"Data": [{"Question", "Answer": {"Value", "Aliases"}, "QuestionId"}]}."""
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("Data"), list):
        raise UserError(f"{path}: expected a JSON object with a 'Data' list (a TriviaQA file)")
    col = Collector()
    for i, rec in enumerate(doc["Data"]):
        loc = f"{path}: Data[{i}]"
        rec = need_object(rec, loc)
        ans = rec.get("Answer")
        if not isinstance(ans, dict):
            raise UserError(f"{loc}: missing 'Answer' object")
        value = ans.get("Value")
        aliases = ans.get("Aliases", [])
        if not isinstance(aliases, list):
            raise UserError(f"{loc}: 'Answer.Aliases' must be a list of strings")
        answers = ([value] if isinstance(value, str) and value.strip() else []) + aliases
        if not answers:
            raise UserError(f"{loc}: empty answers (no 'Answer.Value' or 'Answer.Aliases')")
        q = rec.get("Question")
        if not isinstance(q, str) or not q.strip():
            raise UserError(f"{loc}: missing or blank 'Question'")
        col.add({"id": opt_str(rec.get("QuestionId")) or f"{path.stem}:{i}", "question": q, "answers": answers}, loc, None)
    return Loaded(col.result(path))


_EQ_SPLIT_DIRS = {"train": "train", "dev": "dev", "test": "test"}


def _template_subjects(questions: list[str]) -> list[str | None]:
    """Subjects from one relation's questions, by stripping the prefix and suffix they all share.

    EntityQuestions writes each relation from one template ("Which country is [X] located in?"),
    so the shared prefix/suffix, cut back to word boundaries, is the template and what is left
    is the subject. With fewer than 3 distinct questions the template is not trustworthy: None.
    """
    distinct = sorted(set(questions))
    if len(distinct) < 3:
        return [None] * len(questions)
    pre = os.path.commonprefix(distinct)
    suf = os.path.commonprefix([q[::-1] for q in distinct])[::-1]
    # The prefix must end after a space; the suffix must start at a non-word character.
    pre = pre[: pre.rfind(" ") + 1] if " " in pre else ""
    k = 0
    while k < len(suf) and (suf[k].isalnum() or suf[k] == "_"):
        k += 1
    suf = suf[k:]
    out: list[str | None] = []
    for q in questions:
        end = len(q) - len(suf)
        subj = q[len(pre) : end].strip() if end > len(pre) else ""
        out.append(subj or None)
    return out


def read_entityquestions(path: Path, opts: ImportOptions) -> Loaded:
    """EntityQuestions folder: <split>/<relation>.<split>.json, each a list of {question, answers}."""
    if not path.exists():
        raise UserError(f"{path}: no such folder")
    if not path.is_dir():
        raise UserError(f"{path}: expected the EntityQuestions folder (with train/, dev/, test/)")
    files: dict[str, list[Path]] = {}
    for split, dirname in _EQ_SPLIT_DIRS.items():
        d = path / dirname
        found = sorted(d.glob(f"*.{dirname}.json")) if d.is_dir() else []
        if not found:
            raise UserError(f"{d}: no <relation>.{dirname}.json files (expected the EntityQuestions layout)")
        files[split] = found
    # Read every file first: subjects are derived per relation across all its splits.
    raw: list[tuple[str, str, int, Path, dict[str, Any]]] = []
    for split, paths in files.items():
        for f in paths:
            relation = f.name[: -len(f".{_EQ_SPLIT_DIRS[split]}.json")]
            n = 0
            for n, (obj, line) in enumerate(json_array_with_lines(f), start=1):
                loc = where(f, line)
                obj = need_object(obj, loc)
                need_list(obj, "answers", loc)
                raw.append((split, relation, line, f, obj))
            if n == 0:
                raise UserError(f"{f}: empty list (no items)")
    by_rel: dict[str, list[int]] = {}
    for k, (_, relation, _, _, obj) in enumerate(raw):
        by_rel.setdefault(relation, []).append(k)
    subjects: dict[int, str | None] = {}
    for relation, ks in by_rel.items():
        qs = [q if isinstance(q := raw[k][4].get("question"), str) else "" for k in ks]
        for k, s in zip(ks, _template_subjects(qs)):
            subjects[k] = s
    col = Collector()
    splits: dict[str, list[Item]] = {s: [] for s in SPLITS}
    counters: dict[tuple[str, str], int] = {}
    for k, (split, relation, line, f, obj) in enumerate(raw):
        n = counters[(split, relation)] = counters.get((split, relation), 0) + 1
        col.add(
            {
                "id": opt_str(obj.get("id")) or f"{relation}.{split}.{n}",
                "question": obj.get("question"),
                "answers": obj["answers"],
                "relation": relation,
                "subject": subjects[k],
            },
            f,
            line,
        )
        splits[split].append(col.items[-1])
    return Loaded(col.items, splits)
