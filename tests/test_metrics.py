"""Category movement and intervals on crafted categories with known answers."""

from __future__ import annotations

import pytest

from gradual import metrics
from gradual.categories import CATEGORIES as CATS
from gradual.categories import parse_categories

HK, MK, WK, UK = CATS


BEFORE = {"a": HK, "b": HK, "c": HK, "d": MK, "e": MK, "f": WK, "g": UK, "h": UK, "only_before": HK}
AFTER = {"a": HK, "b": HK, "c": MK, "d": HK, "e": MK, "f": HK, "g": UK, "h": WK, "only_after": UK}


def test_categories_are_the_papers_in_order_and_the_probe_uses_them() -> None:
    from gradual.probe.slick import CATEGORIES, categorize

    assert CATS == ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown") and CATEGORIES is CATS
    assert [categorize(1.0, 0.0), categorize(0.5, 0.0), categorize(0.0, 0.1), categorize(0.0, 0.0)] == list(CATS)
    assert parse_categories("weaklyknown, MaybeKnown") == (MK, WK) and parse_categories("all") == CATS
    with pytest.raises(ValueError, match="--categories: 'Known' is not a category"):
        parse_categories("Known")


def test_transitions_counts_only_shared_ids() -> None:
    m = metrics.transitions(BEFORE, AFTER)
    assert m == [
        [2, 1, 0, 0],  # HK -> HK (a, b), HK -> MK (c)
        [1, 1, 0, 0],  # MK -> HK (d), MK -> MK (e)
        [1, 0, 0, 0],  # WK -> HK (f)
        [0, 0, 1, 1],  # UK -> WK (h), UK -> UK (g)
    ]
    assert sum(map(sum, m)) == 8  # only_before / only_after are left out


def test_acquired_forgotten_retention() -> None:
    assert metrics.acquired(BEFORE, AFTER) == 2  # d, f
    assert metrics.forgotten(BEFORE, AFTER) == 1  # c
    assert metrics.retention(BEFORE, AFTER) == pytest.approx(1 - 1 / 3)
    assert metrics.retention({"x": MK}, {"x": HK}) is None  # nothing HighlyKnown before
    assert metrics.retention({"x": HK}, {"x": HK}) == 1.0
    # Consistency with the matrix: acquired = HK column minus its diagonal, forgotten = HK row off-diagonal.
    m = metrics.transitions(BEFORE, AFTER)
    assert metrics.acquired(BEFORE, AFTER) == sum(m[r][0] for r in range(1, 4))
    assert metrics.forgotten(BEFORE, AFTER) == sum(m[0][1:])


def test_category_counts_always_has_every_key() -> None:
    assert metrics.category_counts({"a": MK, "b": MK}) == {HK: 0, MK: 2, WK: 0, UK: 0}
    assert metrics.category_counts({}) == dict.fromkeys(CATS, 0)
    with pytest.raises(ValueError):
        metrics.category_counts({"a": "Known"})


def test_t_quantile_matches_table() -> None:
    # Two-sided 95% critical values from any t table.
    for df, want in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (1000, 1.962)]:
        assert metrics.t_quantile(0.975, df) == pytest.approx(want, abs=1e-3)
    assert metrics.t_quantile(0.025, 4) == pytest.approx(-2.776, abs=1e-3)


def test_mean_ci_known_values() -> None:
    r = metrics.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert r["mean"] == 2.5 and r["n"] == 4
    assert r["sd"] == pytest.approx(1.2909944, rel=1e-6)
    half = 3.182446 * 1.2909944 / 2  # t(0.975, 3) * sd / sqrt(4)
    assert r["lo"] == pytest.approx(2.5 - half, rel=1e-5)
    assert r["hi"] == pytest.approx(2.5 + half, rel=1e-5)
    one = metrics.mean_ci([0.4])
    assert one == {"mean": 0.4, "lo": 0.4, "hi": 0.4, "n": 1, "sd": None}
    assert metrics.mean_ci([])["mean"] is None
    assert metrics.mean_ci([3.0, None, 3.0]) == {"mean": 3.0, "lo": 3.0, "hi": 3.0, "n": 2, "sd": 0.0}
    wider = metrics.mean_ci([1.0, 2.0, 3.0, 4.0], level=0.99)
    assert wider["hi"] - wider["lo"] > r["hi"] - r["lo"]


def test_mean_ci_bounds_clip_the_interval() -> None:
    r = metrics.mean_ci([0.9, 1.0, 1.0], bounds=(0.0, 1.0))
    assert r["hi"] == 1.0 and r["lo"] < r["mean"] < 1.0
    assert metrics.mean_ci([0.9, 1.0, 1.0])["hi"] > 1.0  # unclipped, the t-interval overshoots
