"""On-disk cache of probe passes: the same probe again returns at once with identical rows.

Run as: used by gradual.probe.run (default folder gradual.lm.load.cache_dir()/"probe"; --no-cache skips it).

One entry is one probe pass (one exemplar seed), keyed by a hash of everything its rows depend on:
the model fingerprint (weights and tokenizer), its device type and dtype, the items, the exemplar pool,
the probe settings that change results, ENGINE_VERSION (bumped whenever the engine's numbers would
change), gradual.prompts.PROMPT_VERSION (the text format) and the torch and transformers major.minor
versions (kernels and tokenizers can change numbers between them). Batch size is left out: it changes
speed, not results (up to floating-point noise of batched kernels).

An entry proves what it serves. It is one JSON object, `<key>.json`:
    {"format": 1, "key": <key>, "checksum": <sha256 of the rows' canonical JSON>, "ids": [...], "rows": [...]}
written atomically (temp file + rename), so a killed probe never leaves a half entry. load_entry serves
it only if it parses, names the requested key (a copied-in entry of another probe does not), its
checksum matches its rows (hand-edited rows do not), its ids are the probed items' ids in order, and
every row is a valid ProbeRow: required fields present, every probability finite and in [0, 1], and a
known category that SliCK's rule gives for the row's own p_greedy / p_sample / p_seen. Anything else is a bad entry: the pass is recomputed and the entry overwritten. An entry
that cannot be read (OSError) is a plain miss. Entries of older formats (`<key>.jsonl`) are never read.

probe() records what the cache did in its summary's "cache" field, one state per pass:
    "off"                                 caching disabled (--no-cache)
    "hit"                                 the pass was served from its entry
    "miss"                                no entry (or an unreadable one): computed and saved
    "recomputed (bad entry: <reason>)"    an entry was there but failed a check: computed and overwritten
    "unwritable"                          computed, but the folder could not take the entry (read-only,
                                          full, not a folder); one warning names the folder, the probe
                                          goes on without writing
The field is a single string when every pass (the main one and each --repeat) has the same state,
else a list of the states in pass order (main pass first, then repeat 1, 2, ...).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from gradual.atomic import write_json
from gradual.categories import CATEGORIES
from gradual.probe.slick import categorize
from gradual.data.items import Item
from gradual.prompts import PROMPT_VERSION

log = logging.getLogger(__name__)

ENGINE_VERSION = 2  # 2: early exit (rows record the prompts they used)
FORMAT = 1  # the entry file's layout (see the module docstring)

HIT, MISS, OFF, UNWRITABLE = "hit", "miss", "off", "unwritable"
_UNIT_FIELDS = ("p_greedy", "p_sample")  # required probabilities
_COUNT_FIELDS = ("n_greedy_correct", "n_samples", "n_sample_correct", "n_prompts", "n_scored")


@lru_cache(maxsize=4)
def library_versions(names: tuple[str, ...] = ("torch", "transformers")) -> dict[str, str]:
    """major.minor of the libraries whose upgrades can change a probe's numbers (kernels, tokenizers);
    the stage cache (gradual.train.cache) names more."""
    out = {}
    for name in names:
        try:
            out[name] = ".".join(importlib.metadata.version(name).split("+")[0].split(".")[:2])
        except importlib.metadata.PackageNotFoundError:
            out[name] = "none"
    return out


def items_hash(items: Sequence[Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps(it.to_dict(), ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def entry_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"engine_version": ENGINE_VERSION, "prompt_version": PROMPT_VERSION,
                       "libraries": library_versions(), **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def entry_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.json"


def rows_checksum(rows: Sequence[Any]) -> str:
    """sha256 of the rows' canonical JSON (sorted keys, no whitespace): the same after a JSON round trip."""
    blob = json.dumps(list(rows), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Lookup:
    """What load_entry found: state HIT (rows parsed), MISS (no readable entry) or "bad" (reason says why)."""

    state: str
    rows: list[Any] | None = None
    reason: str = ""

    @property
    def hit(self) -> bool:
        return self.state == HIT

    def describe(self) -> str:
        """This pass's summary state when the entry was not served (the pass was computed)."""
        return f"recomputed (bad entry: {self.reason})" if self.state == "bad" else MISS


def _unit(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1


def row_problem(d: Any) -> str | None:
    """Why a cached row dict is not a row this probe could have written (None: it is)."""
    if not isinstance(d, dict):
        return f"not an object ({json.dumps(d)[:40]})"
    if not isinstance(d.get("id"), str):
        return "id missing or not a string"
    if d.get("category") not in CATEGORIES:
        return f"category {d.get('category')!r} is not one of {', '.join(CATEGORIES)}"
    for name in _UNIT_FIELDS:
        if not _unit(d.get(name)):
            return f"{name} {d.get(name)!r} is not a number in [0, 1]"
    if d.get("p_seen") is not None and not _unit(d["p_seen"]):
        return f"p_seen {d['p_seen']!r} is not a number in [0, 1]"
    pp = d.get("p_prompts")
    if pp is not None and (not isinstance(pp, list) or not all(p is None or _unit(p) for p in pp)):
        return "p_prompts is not a list of numbers in [0, 1]"
    ga = d.get("greedy_answers")
    if not isinstance(ga, list) or not all(isinstance(a, str) for a in ga):
        return "greedy_answers is not a list of strings"
    for name in _COUNT_FIELDS:
        v = d.get(name, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return f"{name} {v!r} is not a count"
    if d.get("repeat_categories", []) != []:
        return "repeat_categories is not empty"  # a pass's rows are saved before repeats are added
    # The category follows from the row's own estimates by SliCK's rule: a category edited by hand (and
    # the checksum recomputed) must also agree with the numbers beside it.
    if categorize(d["p_greedy"], d["p_sample"], p_seen=d.get("p_seen")) != d["category"]:
        return f"category {d['category']} disagrees with the row's p_greedy / p_sample / p_seen"
    return None


def load_entry(cache_dir: Path, key: str, ids: Sequence[str],
               parse: Callable[[dict[str, Any]], Any] = lambda d: d) -> Lookup:
    """The entry for `key`, served only if it proves itself for items `ids` (see the module docstring).

    `parse` turns a checked row dict into the caller's row object (ProbeRow.from_dict); an exception it
    raises (a required field missing) makes the entry bad."""
    path = entry_path(cache_dir, key)
    try:
        raw = path.read_bytes()
    except OSError:  # absent, unreadable, or the cache folder is not a folder
        return Lookup(MISS)
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Lookup("bad", reason="not valid JSON")
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return Lookup("bad", reason="unknown entry format")
    if entry.get("key") != key:
        return Lookup("bad", reason="entry of another probe (key mismatch)")
    rows, stored_ids = entry.get("rows"), entry.get("ids")
    if not isinstance(rows, list) or not isinstance(stored_ids, list):
        return Lookup("bad", reason="rows or ids missing")
    if entry.get("checksum") != rows_checksum(rows):
        return Lookup("bad", reason="checksum mismatch (rows changed)")
    want = list(ids)
    if stored_ids != want or len(rows) != len(want):
        return Lookup("bad", reason=f"item ids differ ({len(rows)} rows for {len(want)} items)")
    parsed = []
    for i, d in enumerate(rows):
        problem = row_problem(d)
        if problem is None and d["id"] != want[i]:
            problem = f"id {d['id']!r}, expected {want[i]!r}"
        if problem is None:
            try:
                parsed.append(parse(d))
            except (TypeError, ValueError) as exc:
                problem = str(exc)
        if problem is not None:
            return Lookup("bad", reason=f"row {i + 1}: {problem}")
    return Lookup(HIT, rows=parsed)


def save_entry(cache_dir: Path, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Write the entry for `key` atomically; raises OSError when the folder cannot take it."""
    rows = list(rows)
    write_json(entry_path(cache_dir, key),
               {"format": FORMAT, "key": key, "checksum": rows_checksum(rows), "ids": [r["id"] for r in rows],
                "rows": rows}, indent=None)


def warn_unwritable(cache_dir: Path, exc: OSError) -> None:
    """The one warning of a probe whose cache folder cannot take entries."""
    why = "a file, not a folder" if Path(cache_dir).is_file() else exc.strerror or type(exc).__name__
    log.warning("warning: probe cache folder %s is not writable (%s); continuing without caching", cache_dir, why)


def summary_state(states: Sequence[str]) -> str | list[str]:
    """The summary's "cache" field: one string when every pass agrees, else the per-pass list."""
    return states[0] if len(set(states)) == 1 else list(states)
