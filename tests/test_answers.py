"""Exact match: every pair the SQuAD/TriviaQA scorer accepts is accepted, plus our accent and punctuation
folding; nothing looser than that."""

from __future__ import annotations

import pytest

from gradual.answers import is_correct, normalize, normalize_squad

ACCEPT = [
    # (prediction, accepted answer): the standard scorer's cases
    ("U.S.A.", "USA"),
    ("USA", "U.S.A."),
    ("Washington, D.C.", "Washington DC"),
    ("1,000", "1000"),
    ("O'Brien", "OBrien"),
    ("the United Kingdom", "United Kingdom"),
    ("The Hague", "Hague"),
    ("  Paris.  ", "Paris"),
    # our folding: accents and punctuation as a space
    ("Cote d'Ivoire", "Côte d'Ivoire"),
    ("Cote d Ivoire", "Côte d'Ivoire"),
    ("Guinea Bissau", "Guinea-Bissau"),
    ("São Tomé", "Sao Tome"),
    # an answer made only of articles keeps them
    ("The The", "the the"),
]

REJECT = [
    ("U.S.", "U.S.A."),  # the old bug: "u s a" lost its "a" as an article and equalled "u s"
    ("U S", "USA"),
    ("Paris", "Parish"),
    ("York", "New York"),
    ("Georgia", "Georgia (country)"),
    ("1,000", "100"),
    ("", "Paris"),
    ("the", "Paris"),
    ("Lyon", "Paris"),
]


@pytest.mark.parametrize("pred,answer", ACCEPT)
def test_accepts(pred: str, answer: str) -> None:
    assert is_correct(pred, [answer])
    assert is_correct(pred + "\nQ: the next question", ["Something else", answer])  # aliases, first line only


@pytest.mark.parametrize("pred,answer", REJECT)
def test_rejects(pred: str, answer: str) -> None:
    assert not is_correct(pred, [answer])


def test_empty_first_line_is_no_answer() -> None:
    assert not is_correct("\nParis", ["Paris"])


def test_normalizations_are_the_documented_ones() -> None:
    assert normalize_squad("Washington, D.C.") == "washington dc"  # punctuation deleted
    assert normalize("Washington, D.C.") == "washington d c"  # punctuation as a space
    assert normalize("U.S.A.") == "u s a"  # "a" is not a word of the original text: kept
    assert normalize("  The  Côte d'Ivoire! ") == "cote d ivoire"
    assert normalize_squad("A") == "a" and normalize("A") == "a"  # nothing left: articles kept


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
