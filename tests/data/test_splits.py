"""Splits (gradual.data.splits): subjects never cross splits, shares are stratified, input order is kept."""

from __future__ import annotations

from gradual.data.items import SPLITS, Item
from gradual.data.splits import split_items, subject_overlap


def _synthetic(n_subjects: int = 60) -> list[Item]:
    items = []
    for s in range(n_subjects):
        for r in range(s % 3 + 1):  # subjects with 1 to 3 facts
            items.append(Item(f"{s}-{r}", f"Q{s} r{r}?", ("a",), f"rel{r}", f"subj{s}"))
    items += [Item(f"n{i}", f"N{i}?", ("b",), "rel0", None) for i in range(30)]
    return items


def test_split_groups_subjects_and_stratifies() -> None:
    items = _synthetic()
    splits = split_items(items, seed=5, dev_frac=0.1, test_frac=0.2)
    assert sorted(it.id for s in SPLITS for it in splits[s]) == sorted(it.id for it in items)
    for a, b in (("train", "test"), ("train", "dev"), ("dev", "test")):
        assert not subject_overlap(splits, a, b)
    n = len(items)
    assert abs(len(splits["test"]) - 0.2 * n) <= 4 and abs(len(splits["dev"]) - 0.1 * n) <= 4
    # Null-subject items are spread too (each its own group), not all in one split.
    nulls = {s: sum(it.subject is None for it in splits[s]) for s in SPLITS}
    assert nulls["train"] > 0 and nulls["test"] > 0
    # Same seed, same split; another seed, another split.
    assert split_items(items, 5, 0.1, 0.2) == splits
    assert split_items(items, 6, 0.1, 0.2) != splits


def test_split_keeps_input_order() -> None:
    items = _synthetic(20)
    splits = split_items(items, seed=0)
    pos = {it.id: i for i, it in enumerate(items)}
    for s in SPLITS:
        assert [pos[it.id] for it in splits[s]] == sorted(pos[it.id] for it in splits[s])
