"""The probe's rows, summary and files (gradual.probe.result): what probe() returns, saved and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

from gradual.config import ProbeConfig
from gradual.probe import CATEGORIES, ProbeResult, categorize, load_probe, probe, save_probe
from gradual.probe.result import summary_path
from tests.conftest import items_of


def test_probe_rows_summary_and_roundtrip(tiny_lm, sample_items: list[dict], tmp_path: Path) -> None:
    items = items_of(sample_items)
    for est in ("sample", "exact"):
        cfg = ProbeConfig(estimator=est, nex=3, shots=2, samples=4, max_new_tokens=4, repeat=2, cache=False)
        res = probe(tiny_lm, items, None, cfg, progress=False)
        assert [r.id for r in res.rows] == [it.id for it in items]
        for r in res.rows:
            assert r.category in CATEGORIES and len(r.repeat_categories) == 2
            assert 1 <= r.n_prompts == len(r.greedy_answers) <= 3
            assert r.category == categorize(r.p_greedy, r.p_sample, p_seen=r.p_seen)
        s = res.summary
        assert sum(s["counts"].values()) == len(items) and s["estimator"] == est
        assert set(s["by_relation"]) == {"capital", "continent"}
        assert s["model"]["fingerprint"] == tiny_lm.fingerprint and s["config"]["nex"] == 3
        assert len(s["noise"]["per_repeat"]) == 2 and 0 <= s["noise"]["changed_share"] <= 1
        out = tmp_path / f"{est}.jsonl"
        save_probe(res, out)
        assert summary_path(out).name == f"{est}.summary.json"
        back = load_probe(out)
        assert isinstance(back, ProbeResult) and back.categories() == res.categories()
        assert back.summary == json.loads(json.dumps(res.summary))
