"""On-disk cache of probe passes: the same probe again returns at once with identical rows.

Run as: used by gradual.probe.run (default folder gradual.models.cache_dir()/"probe"; --no-cache skips it).

One entry is one probe pass (one exemplar seed), keyed by a hash of everything its rows depend on:
the model fingerprint, its device type and dtype, the items, the exemplar pool, the probe settings
that change results, and ENGINE_VERSION (bumped whenever the engine's numbers would change). Batch
size is left out: it changes speed, not results (up to floating-point noise of batched kernels).
Entries are written atomically (temp file + rename), so a killed probe never leaves a bad entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from gradual.atomic import read_jsonl, write_jsonl
from gradual.data.items import Item

ENGINE_VERSION = 2  # 2: early exit (rows record the prompts they used)


def items_hash(items: Sequence[Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps(it.to_dict(), ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def entry_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"engine_version": ENGINE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_entry(cache_dir: Path, key: str) -> list[dict[str, Any]] | None:
    path = cache_dir / f"{key}.jsonl"
    if not path.exists():
        return None
    try:
        rows = read_jsonl(path)
    except (OSError, ValueError):
        return None  # unreadable entry: recompute and overwrite
    return rows


def save_entry(cache_dir: Path, key: str, rows: Sequence[dict[str, Any]]) -> None:
    write_jsonl(cache_dir / f"{key}.jsonl", rows)
