"""SliCK (gradual.probe.slick): the category rules, the exact estimator's p_seen, and the exemplar sets
each item is probed with."""

from __future__ import annotations

import pytest

from gradual.data.items import Item, item_from_dict
from gradual.errors import UserError
from gradual.probe import CATEGORIES, categorize
from gradual.probe.slick import ANY_RELATION, assign_exemplar_sets, p_seen_from_prompts
from tests.conftest import items_of


# -- rules -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("greedy_ok,sample_ok,expected", [
    (10, 0, "HighlyKnown"), (10, 160, "HighlyKnown"), (9, 0, "MaybeKnown"), (1, 0, "MaybeKnown"),
    (0, 1, "WeaklyKnown"), (0, 160, "WeaklyKnown"), (0, 0, "Unknown"),
])
def test_categorize_counts(greedy_ok: int, sample_ok: int, expected: str) -> None:
    assert categorize(greedy_ok / 10, sample_ok / 160) == expected


def test_categorize_exact_rule() -> None:
    # p_seen = 1 - prod (1 - p_i)^16 must reach 0.5 for WeaklyKnown under the exact estimator.
    low = p_seen_from_prompts([0.001] * 10, 16)
    high = p_seen_from_prompts([0.01] * 10, 16)
    assert low == pytest.approx(1 - 0.999 ** 160)
    assert categorize(0.0, 0.001, p_seen=low) == "Unknown"
    assert categorize(0.0, 0.01, p_seen=high) == "WeaklyKnown"
    assert categorize(0.3, 0.0, p_seen=0.0) == "MaybeKnown"
    assert categorize(1.0, 0.0, p_seen=0.0) == "HighlyKnown"
    assert set(CATEGORIES) == {"HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown"}


# -- exemplar sets -----------------------------------------------------------------------------------

def test_exemplars_exclude_self_and_respect_relations(sample_items: list[dict]) -> None:
    items = items_of(sample_items)
    rare = item_from_dict({"id": "r1", "question": "Who wrote Hamlet?", "answers": ["Shakespeare"],
                           "relation": "author"}, "t", 1)
    items.append(rare)
    a = assign_exemplar_sets(items, items, nex=10, shots=4, seed=3)
    for it in items:
        sets = a.sets[it.id]
        assert len(sets) == 10
        for es in sets:
            assert len(es.items) == 4
            assert all(e.id != it.id and e.question != it.question for e in es.items)
            if it.relation != "author":  # capital: 8 items, continent: 6: enough of their own relation
                assert all(e.relation == it.relation for e in es.items)
    # "author" has one item (itself): it falls back to the whole pool, still never itself.
    assert a.fallback == {"r1"}
    assert all(es.group == ANY_RELATION for es in a.sets["r1"])
    # Deterministic for a seed, different for another.
    b = assign_exemplar_sets(items, items, nex=10, shots=4, seed=3)
    c = assign_exemplar_sets(items, items, nex=10, shots=4, seed=4)
    ids = lambda x: {k: [[e.id for e in es.items] for es in v] for k, v in x.sets.items()}  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_exemplars_separate_pool_same_question_excluded(sample_items: list[dict]) -> None:
    items = items_of(sample_items)
    # The pool holds the probed question under another id: it must still never be shown.
    pool = [Item("dev-" + it.id, it.question, it.answers, it.relation) for it in items]
    a = assign_exemplar_sets(items, pool, nex=5, shots=3, seed=0)
    for it in items:
        assert all(e.question != it.question for es in a.sets[it.id] for e in es.items)


def test_exemplars_too_few_is_user_error() -> None:
    items = items_of([{"id": "a", "question": "Q1?", "answers": ["x"]}, {"id": "b", "question": "Q2?", "answers": ["y"]}])
    with pytest.raises(UserError, match="--exemplars"):
        assign_exemplar_sets(items, items, nex=2, shots=4, seed=0)
