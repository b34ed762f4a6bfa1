"""The Hugging Face `datasets` reader: a folder saved with save_to_disk (or a hub id when online).

Run as: gradual data import --format hf saved_dataset/ --out data/mine
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from gradual.data.formats.common import (
    Collector,
    ImportOptions,
    Loaded,
    answers_from_cell,
    opt_str,
)
from gradual.data.items import (
    SPLITS,
    Item,
)
from gradual.errors import UserError

_HF_SPLITS = {"train": "train", "validation": "dev", "dev": "dev", "test": "test"}


def _hf_answers(val: Any, loc: str, col: str) -> Any:
    """Common answer shapes on the hub: a string (maybe a JSON-encoded list), a list,
    {"value", "aliases"}, {"text": [...]}. Other shapes are returned as they are, for the caller to reject."""
    if isinstance(val, str):
        return answers_from_cell(val, loc, col)
    if isinstance(val, dict):
        if "value" in val:
            aliases = val.get("aliases") or []
            return [val["value"], *aliases] if isinstance(aliases, list) else val
        if "text" in val:
            return val["text"] if isinstance(val["text"], list) else [val["text"]]
    return val


def read_hf(path: Path, opts: ImportOptions) -> Loaded:
    """A `datasets` dataset saved with save_to_disk (or a hub id, when online)."""
    import datasets

    src = str(path)
    if path.exists():
        try:
            ds = datasets.load_from_disk(src)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise UserError(f"{path}: not a dataset saved with datasets.save_to_disk ({exc})") from None
    else:
        offline = any(os.environ.get(v, "") not in ("", "0", "false", "False") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
        if offline or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", src):
            raise UserError(
                f"{path}: no such folder, and hub ids need network access"
                + (" (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set)" if offline else "")
                + "; pass a folder saved with datasets.save_to_disk"
            )
        try:
            ds = datasets.load_dataset(src)
        except Exception as exc:  # network, auth, missing dataset: all the user's to fix
            raise UserError(f"{path}: could not load from the hub ({type(exc).__name__}: {exc})") from None
    parts: dict[str, Any] = dict(ds) if isinstance(ds, datasets.DatasetDict) else {"train": ds}
    col = Collector()
    by_split: dict[str, list[Item]] = {s: [] for s in SPLITS}
    kept = set(parts) >= {"train", "test"} and bool(set(parts) & {"dev", "validation"})
    for name in sorted(parts, key=lambda n: (list(_HF_SPLITS).index(n) if n in _HF_SPLITS else 9, n)):
        part = parts[name]
        cols = list(part.column_names)
        loc0 = f"{path}[{name}]"
        qcol = opts.question_col if opts.question_col in cols else None
        if qcol is None:
            raise UserError(f"{loc0}: no column {opts.question_col!r} (--question-col); columns are: {', '.join(cols)}")
        acol = opts.answer_col or next((c for c in ("answers", "answer") if c in cols), None)
        if acol is None or acol not in cols:
            raise UserError(f"{loc0}: no column {acol or 'answers'!r} (--answer-col); columns are: {', '.join(cols)}")
        rcol = opts.relation_col or ("relation" if "relation" in cols else None)
        scol = opts.subject_col or ("subject" if "subject" in cols else None)
        icol = opts.id_col or ("id" if "id" in cols else None)
        for flag, c in (("--relation-col", rcol), ("--subject-col", scol), ("--id-col", icol)):
            if c is not None and c not in cols:
                raise UserError(f"{loc0}: no column {c!r} ({flag}); columns are: {', '.join(cols)}")
        for i, row in enumerate(part):
            loc = f"{loc0} row {i}"
            answers = _hf_answers(row[acol], loc, acol)
            if not isinstance(answers, list):
                raise UserError(f"{loc}: '{acol}' must be a list of strings, got {type(answers).__name__}")
            if not answers:
                raise UserError(f"{loc}: '{acol}' is empty")
            col.add(
                {
                    "id": opt_str(row[icol]) if icol else f"{name}:{i}",
                    "question": row[qcol],
                    "answers": answers,
                    "relation": opt_str(row[rcol]) if rcol else None,
                    "subject": opt_str(row[scol]) if scol else None,
                },
                loc,
                None,
            )
            if kept:
                by_split[_HF_SPLITS.get(name, "train")].append(col.items[-1])
    return Loaded(col.result(path), by_split if kept else None)
