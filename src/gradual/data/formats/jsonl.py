"""Line-per-item JSON readers: our own item JSONL and NQ-open.

Run as: gradual data import --format nq-open nq.jsonl --out data/nq
"""

from __future__ import annotations

from pathlib import Path

from gradual.data.formats.common import (
    Collector,
    ImportOptions,
    Loaded,
    jsonl_rows,
    need_list,
    need_object,
    opt_str,
)
from gradual.errors import where


def read_jsonl(path: Path, opts: ImportOptions) -> Loaded:
    """Our item JSONL; `id` is optional (default <stem>:<line>), `answer` (str) is accepted."""
    col = Collector()
    for obj, line in jsonl_rows(path):
        loc = where(path, line)
        obj = dict(need_object(obj, loc))
        if "answers" not in obj and isinstance(obj.get("answer"), str):
            obj["answers"] = [obj.pop("answer")]
        obj.setdefault("id", f"{path.stem}:{line}")
        col.add(obj, path, line)
    return Loaded(col.result(path))


def read_nq_open(path: Path, opts: ImportOptions) -> Loaded:
    """NQ-open JSONL: {"question": str, "answer": [str, ...]} per line (an `id` if present)."""
    col = Collector()
    for obj, line in jsonl_rows(path):
        loc = where(path, line)
        obj = need_object(obj, loc)
        answers = need_list(obj, "answer", loc)
        col.add({"id": opt_str(obj.get("id")) or f"{path.stem}:{line}", "question": obj.get("question"), "answers": answers}, path, line)
    return Loaded(col.result(path))
