"""Tests of the probe cache proving what it serves (gradual.probe.cache): the key covers the tokenizer,
tampered, swapped or malformed entries are recomputed, a moved cache still hits, and a cache folder that
cannot be written costs one warning, not the probe; a hit serves the rows computed, and
another scorer version is a miss. Tiny random model, a handful of items.

Run as: .venv/bin/pytest tests/probe/test_cache.py
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
from pathlib import Path

import pytest

from gradual.categories import HIGHLY
from gradual.config import ProbeConfig
from gradual.data.items import Item, item_from_dict
from gradual.probe import cache as pcache
from gradual.probe import probe
from tests.conftest import items_of

CFG = ProbeConfig(estimator="exact", nex=2, shots=2, max_new_tokens=4)


class _NoEngine:
    def run(self, *a, **k):  # pragma: no cover - must not be reached on a cache hit
        raise AssertionError("engine used despite a cache hit")


def _items(rows: list[dict]) -> list[Item]:
    rows = rows[:5] + rows[8:11]  # both relations
    return [item_from_dict(r, "test", i) for i, r in enumerate(rows, 1)]


def _entry(cache: Path) -> Path:
    (path,) = cache.glob("*.json")
    return path


def _categories(res) -> list[str]:
    return [r.category for r in res.rows]


def _reference(lm, items: list[Item], cfg: ProbeConfig = CFG) -> list[str]:
    return _categories(probe(lm, items, None, ProbeConfig(**{**cfg.__dict__, "cache": False}), progress=False))


def test_entry_is_one_self_proving_json_object(tiny_lm, sample_items: list[dict], tmp_path: Path) -> None:
    items = _items(sample_items)
    first = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path)
    assert first.summary["cache"] == "miss"
    entry = json.loads(_entry(tmp_path).read_text())
    assert set(entry) == {"format", "key", "checksum", "ids", "rows"} and entry["format"] == pcache.FORMAT
    assert _entry(tmp_path).name == f"{entry['key']}.json" and not list(tmp_path.glob("*.jsonl"))
    assert entry["ids"] == [it.id for it in items] and entry["checksum"] == pcache.rows_checksum(entry["rows"])
    # With --repeat the field lists the passes' states when they differ: the main pass is cached now.
    again = probe(tiny_lm, items, None, ProbeConfig(**{**CFG.__dict__, "repeat": 1}), progress=False,
                  cache_dir=tmp_path)
    assert again.summary["cache"] == ["hit", "miss"] and again.summary["passes_cached"] == 1
    assert probe(tiny_lm, items, None, ProbeConfig(**{**CFG.__dict__, "cache": False}),
                 progress=False).summary["cache"] == "off"


def test_key_covers_prompt_version_and_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = {"fingerprint": "x", "seed": 0}
    key = pcache.entry_key(parts)
    assert set(pcache.library_versions()) == {"torch", "transformers"}
    monkeypatch.setattr(pcache, "PROMPT_VERSION", pcache.PROMPT_VERSION + 1)
    assert pcache.entry_key(parts) != key
    monkeypatch.undo()
    monkeypatch.setattr(pcache, "library_versions", lambda: {"torch": "0.0", "transformers": "0.0"})
    assert pcache.entry_key(parts) != key


def test_changed_tokenizer_is_another_fingerprint_and_a_miss(tiny_lm, tiny_model_dir: Path, sample_items: list[dict],
                                                            tmp_path: Path) -> None:
    """(a) Same weights, a tokenizer that splits text otherwise (it lower-cases first): another fingerprint,
    so no entry is shared. (A token beyond the weights' vocabulary is refused at load: test_faults.)"""
    from gradual.lm.load import load_model, model_fingerprint, tokenizer_fingerprint

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    tok = json.loads((folder / "tokenizer.json").read_text())
    assert tok.get("normalizer") != {"type": "Lowercase"}
    tok["normalizer"] = {"type": "Lowercase"}
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    other = load_model(str(folder), device="cpu", dtype="fp32")
    text = "What is the capital of France?"
    assert other.tokenizer(text)["input_ids"] != tiny_lm.tokenizer(text)["input_ids"]  # it does tokenize otherwise
    assert model_fingerprint(other.model) == model_fingerprint(tiny_lm.model)
    assert tokenizer_fingerprint(other.tokenizer) != tokenizer_fingerprint(tiny_lm.tokenizer)
    assert other.fingerprint != tiny_lm.fingerprint

    items = _items(sample_items)
    cache = tmp_path / "cache"
    assert probe(tiny_lm, items, None, CFG, progress=False, cache_dir=cache).summary["cache"] == "miss"
    res = probe(other, items, None, CFG, progress=False, cache_dir=cache)
    assert res.summary["cache"] == "miss" and res.summary["passes_computed"] == 1
    assert len(list(cache.glob("*.json"))) == 2


def test_moved_cache_and_model_folder_still_hit(tiny_lm, tiny_model_dir: Path, sample_items: list[dict],
                                                tmp_path: Path) -> None:
    """(e) The fingerprint is of what was loaded, not where from; the entry holds no path of its own."""
    from gradual.lm.load import load_model

    items = _items(sample_items)
    first = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path / "c1")
    shutil.move(tmp_path / "c1", tmp_path / "c2")
    shutil.copytree(tiny_model_dir, tmp_path / "elsewhere")
    moved = load_model(str(tmp_path / "elsewhere"), device="cpu", dtype="fp32")
    moved.tokenizer(["a", "b c d"], padding=True, truncation=True, max_length=3)  # rewrites padding state
    assert moved.fingerprint == tiny_lm.fingerprint
    again = probe(moved, items, None, CFG, progress=False, cache_dir=tmp_path / "c2",
                  engine=_NoEngine())  # type: ignore[arg-type]
    assert again.summary["cache"] == "hit" and again.summary["passes_cached"] == 1
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in first.rows]


def test_tampered_entry_is_recomputed(tiny_lm, sample_items: list[dict], tmp_path: Path) -> None:
    """(b) Rows edited to all HighlyKnown, checksum left: the checksum catches it."""
    items = _items(sample_items)
    reference = _reference(tiny_lm, items)
    assert set(reference) != {HIGHLY}  # else the edit below would not show
    probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path)
    path = _entry(tmp_path)
    entry = json.loads(path.read_text())
    for row in entry["rows"]:
        row["category"], row["p_greedy"] = HIGHLY, 1.0
    path.write_text(json.dumps(entry))
    res = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path)
    assert _categories(res) == reference
    assert res.summary["cache"].startswith("recomputed (bad entry: checksum")
    assert res.summary["passes_computed"] == 1 and res.summary["passes_cached"] == 0
    # The entry was overwritten with the recomputed rows: the next probe is served from it.
    again = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path,
                  engine=_NoEngine())  # type: ignore[arg-type]
    assert again.summary["cache"] == "hit" and _categories(again) == reference


def test_swapped_entry_is_recomputed(tiny_lm, sample_items: list[dict], tmp_path: Path) -> None:
    """(c) Another probe's entry (valid in itself) copied over this key's file is not served."""
    items = _items(sample_items)
    other_cfg = ProbeConfig(**{**CFG.__dict__, "seed": CFG.seed + 7})
    probe(tiny_lm, items, None, other_cfg, progress=False, cache_dir=tmp_path / "other")
    probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path / "this")
    shutil.copyfile(_entry(tmp_path / "other"), _entry(tmp_path / "this"))
    res = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path / "this")
    assert res.summary["cache"] == "recomputed (bad entry: entry of another probe (key mismatch))"
    assert _categories(res) == _reference(tiny_lm, items)


@pytest.mark.parametrize("damage, reason", [
    (lambda rows: rows.__setitem__(1, 42), "row 2: not an object"),
    (lambda rows: rows[0].pop("category"), "row 1: category None"),
    (lambda rows: rows[0].pop("relation"), "row 1: "),  # a required field: ProbeRow refuses it
    (lambda rows: rows[2].update(category="Known"), "row 3: category 'Known'"),
    # A category edited by hand, numbers left: the rule no longer gives it from the row's own estimates.
    (lambda rows: rows[0].update(category="Unknown" if rows[0]["category"] == "HighlyKnown" else "HighlyKnown"),
     "row 1: category"),
    (lambda rows: rows[0].update(p_sample=1.5), "row 1: p_sample 1.5"),
    (lambda rows: rows[0].update(p_seen=math.nan), "row 1: p_seen nan"),
    (lambda rows: rows[0].update(p_prompts=[2.0, None]), "row 1: p_prompts"),
    (lambda rows: rows.reverse(), "row 1: id"),
    (lambda rows: rows.pop(), "item ids differ"),
])
def test_malformed_rows_are_recomputed(tiny_lm, sample_items: list[dict], tmp_path: Path, damage, reason: str) -> None:
    """(d) A row that is no ProbeRow, with the checksum recomputed so only the row checks can catch it."""
    items = _items(sample_items)
    first = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path)
    path = _entry(tmp_path)
    entry = json.loads(path.read_text())
    damage(entry["rows"])
    entry["checksum"] = pcache.rows_checksum(entry["rows"])
    path.write_text(json.dumps(entry))
    res = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path)
    assert res.summary["cache"].startswith(f"recomputed (bad entry: {reason}"), res.summary["cache"]
    assert [r.to_dict() for r in res.rows] == [r.to_dict() for r in first.rows]


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b"[]", b'{"format": 99}'])
def test_unparseable_entry_is_recomputed(tiny_lm, sample_items: list[dict], tmp_path: Path, content: bytes) -> None:
    items = _items(sample_items)[:4]
    probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path)
    _entry(tmp_path).write_bytes(content)
    res = probe(tiny_lm, items, None, CFG, progress=False, cache_dir=tmp_path)
    assert res.summary["cache"].startswith("recomputed (bad entry: ")


def _read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return folder
    folder.chmod(0o700)
    pytest.skip("chmod does not stop this user from writing (root): the cache-path-is-a-file case covers it")


@pytest.mark.parametrize("kind", ["read-only folder", "a file"])
def test_unwritable_cache_warns_once_and_probe_succeeds(tiny_lm, sample_items: list[dict], tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """(f) Two passes (--repeat 1) that cannot be saved: one warning naming the folder, correct rows."""
    items = _items(sample_items)
    cfg = ProbeConfig(**{**CFG.__dict__, "repeat": 1})
    reference = probe(tiny_lm, items, None, ProbeConfig(**{**cfg.__dict__, "cache": False}), progress=False)
    if kind == "a file":
        cache = tmp_path / "cache"
        cache.write_text("not a folder\n")
    else:
        cache = _read_only_folder(tmp_path)
    try:
        with caplog.at_level(logging.WARNING):
            res = probe(tiny_lm, items, None, cfg, progress=False, cache_dir=cache)
    finally:
        if cache.is_dir():
            cache.chmod(0o700)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(cache) in warnings[0].getMessage()
    assert kind != "a file" or "not a folder" in warnings[0].getMessage()
    assert [r.to_dict() for r in res.rows] == [r.to_dict() for r in reference.rows]
    assert res.summary["cache"] == "unwritable" and res.summary["passes_computed"] == 2
    if kind == "a file":
        assert cache.read_text() == "not a folder\n"
    else:
        assert not any(cache.iterdir())


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_failed_write_of_any_kind_warns_once(tiny_lm, sample_items: list[dict], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                            err: int) -> None:
    """Permission denied, read-only filesystem, disk full (simulated: these hold for root too)."""
    def refuse(path, *a, **k):
        raise OSError(err, os.strerror(err), str(path))

    items = _items(sample_items)[:4]
    monkeypatch.setattr(pcache, "write_json", refuse)
    with caplog.at_level(logging.WARNING):
        res = probe(tiny_lm, items, None, ProbeConfig(**{**CFG.__dict__, "repeat": 1}), progress=False,
                    cache_dir=tmp_path)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(tmp_path) in warnings[0].getMessage()
    assert os.strerror(err) in warnings[0].getMessage()
    assert res.summary["cache"] == "unwritable" and _categories(res) == _reference(tiny_lm, items)


def test_read_error_is_a_miss(tmp_path: Path) -> None:
    """An entry that cannot be read (here: its path is a folder) is a miss, not a crash."""
    (tmp_path / "k.json").mkdir()
    assert pcache.load_entry(tmp_path, "k", ["a"]).state == pcache.MISS
    assert pcache.load_entry(tmp_path / "absent", "k", ["a"]).state == pcache.MISS
    assert pcache.load_entry(tmp_path / "k.json" / "x", "k", ["a"]).state == pcache.MISS  # under a non-folder


def test_cache_hit_returns_identical_rows(tiny_lm, sample_items: list[dict], tmp_path: Path) -> None:
    items = items_of(sample_items)
    cfg = ProbeConfig(estimator="exact", nex=3, shots=2, max_new_tokens=4, repeat=1)
    first = probe(tiny_lm, items, None, cfg, progress=False, cache_dir=tmp_path)
    assert first.summary["passes_computed"] == 2
    again = probe(tiny_lm, items, None, cfg, progress=False, cache_dir=tmp_path, engine=_NoEngine())  # type: ignore[arg-type]
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in first.rows]
    assert again.summary["passes_cached"] == 2
    assert not list(tmp_path.glob(".*.tmp"))  # atomic entries: no temp files left


def test_probe_cache_is_keyed_by_scorer(tiny_lm, sample_items: list[dict], tmp_path, monkeypatch) -> None:
    """Categories cached under another scorer version are recomputed, not reused."""
    import gradual.probe.run as probe_run
    from gradual.config import ProbeConfig
    from gradual.data.items import item_from_dict
    from gradual.probe import probe

    items = [item_from_dict(r, "items.jsonl", i + 1) for i, r in enumerate(sample_items)]
    cfg = ProbeConfig(estimator="exact", nex=2, shots=2, max_new_tokens=4)
    first = probe(tiny_lm, items, None, cfg, progress=False, cache_dir=tmp_path)
    assert first.summary["passes_computed"] == 1 and first.summary["scorer"] == probe_run.SCORER_VERSION
    assert probe(tiny_lm, items, None, cfg, progress=False, cache_dir=tmp_path).summary["passes_cached"] == 1
    monkeypatch.setattr(probe_run, "SCORER_VERSION", "some-older-scorer")
    again = probe(tiny_lm, items, None, cfg, progress=False, cache_dir=tmp_path)
    assert again.summary["passes_cached"] == 0 and again.summary["passes_computed"] == 1
