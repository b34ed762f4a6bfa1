"""Strategies pick exactly the right items from crafted probe histories (no model involved)."""

from __future__ import annotations

import dataclasses

import pytest

from gradual.config import RunConfig
from gradual.data.items import Item
from gradual.errors import UserError
from gradual.strategies import STRATEGIES, plan_stage

H, M, W, U = "HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown"
IDS = "abcdefgh"
ITEMS = [Item(i, f"Question {i}?", (f"answer {i}",)) for i in IDS]

# base probe, then after stage 1, 2, 3
H0 = dict(zip(IDS, [H, H, M, M, W, W, U, U]))
H1 = dict(zip(IDS, [H, M, H, W, M, W, H, U]))  # e: W->M, g: U->H moved up; d (stage-1 item) forgot
H2 = dict(zip(IDS, [H, M, H, M, H, M, H, W]))  # f: W->M new; d: W->M again but trained in stage 1
H3 = dict(zip(IDS, [H, M, H, M, H, M, H, W]))  # nothing moved


def ids(plan) -> list[str]:
    return [it.id for it in plan.items]


def test_categories_match_the_probe() -> None:
    from gradual.probe.slick import CATEGORIES

    assert (H, M, W, U) == tuple(CATEGORIES)


def test_gradual_stages() -> None:
    cfg = RunConfig(seed=3)
    p1 = plan_stage("gradual", 1, ITEMS, [H0], cfg)
    assert ids(p1) == ["c", "d"] and p1.replay == [] and p1.name == "stage1"
    assert p1.train == dataclasses.replace(cfg.train, seed=3)
    p2 = plan_stage("gradual", 2, ITEMS, [H0, H1], cfg)
    assert ids(p2) == ["e", "g"]
    assert [it.id for it in p2.replay] == ["a", "b"]
    assert p2.train.lr == pytest.approx(cfg.train.lr * cfg.stage2.lr_scale)
    assert p2.train.weight_decay == cfg.stage2.weight_decay == 0.01
    assert p2.train.replay_ratio == cfg.stage2.replay_ratio == 0.2
    assert p2.train.epochs == cfg.stage2.epochs and p2.train.seed == 3
    assert "2 of 8" in p2.note
    assert plan_stage("gradual", 3, ITEMS, [H0, H1, H2], cfg) is None


def test_gradual_mk_trains_everything_maybeknown_after_stage1() -> None:
    """Reading (b): MaybeKnown after stage 1 (b forgot from H, e moved up from W) plus moved-up items
    (g: U -> H), in item order; same stage-2 settings and replay pool as gradual."""
    cfg = RunConfig(seed=1)
    assert ids(plan_stage("gradual-mk", 1, ITEMS, [H0], cfg)) == ["c", "d"]
    p2 = plan_stage("gradual-mk", 2, ITEMS, [H0, H1], cfg)
    assert ids(p2) == ["b", "e", "g"]
    assert [it.id for it in p2.replay] == ["a", "b"]
    assert p2.train == plan_stage("gradual", 2, ITEMS, [H0, H1], cfg).train
    assert "3 of 8" in p2.note
    assert plan_stage("gradual-mk", 3, ITEMS, [H0, H1, H2], cfg) is None
    stayed = dict(H0)  # nothing moved: stage 2 is the items still MaybeKnown
    assert ids(plan_stage("gradual-mk", 2, ITEMS, [H0, stayed], cfg)) == ["c", "d"]


@pytest.mark.parametrize("after", [H1, H2, dict(H0), {i: M for i in IDS}, {i: H for i in IDS}])
def test_random_stage2_matches_gradual_mk_stage2_size(after: dict) -> None:
    """The control: stage 1 as gradual; stage 2 a seeded random sample of all train items, exactly as
    many as gradual-mk's stage 2 after the same stage 1, with the same replay pool and settings."""
    picks = set()
    for seed in range(6):
        cfg = RunConfig(seed=seed)
        assert ids(plan_stage("random-stage2", 1, ITEMS, [H0], cfg)) == ids(plan_stage("gradual", 1, ITEMS, [H0], cfg))
        mk = plan_stage("gradual-mk", 2, ITEMS, [H0, after], cfg)
        p2 = plan_stage("random-stage2", 2, ITEMS, [H0, after], cfg)
        assert len(p2.items) == len(mk.items)
        assert p2.replay == mk.replay and p2.train == mk.train
        assert ids(p2) == ids(plan_stage("random-stage2", 2, ITEMS, [H0, after], cfg))  # seeded
        assert set(ids(p2)) <= set(IDS)
        picks.add(tuple(ids(p2)))
        assert plan_stage("random-stage2", 3, ITEMS, [H0, after, after], cfg) is None
    if 0 < len(mk.items) < len(ITEMS):
        assert len(picks) > 1  # a sample, not gradual-mk's own items under another name


def test_gradual_empty_cases() -> None:
    cfg = RunConfig()
    none_maybe = {i: H for i in IDS}
    p = plan_stage("gradual", 1, ITEMS, [none_maybe], cfg)
    assert p is not None and p.items == [] and "no items" in p.note and "MaybeKnown" in p.note
    p2 = plan_stage("gradual", 2, ITEMS, [H0, H0], cfg)
    assert p2 is not None and p2.items == [] and "nothing moved up" in p2.note


def test_frontier_stages_and_stops() -> None:
    cfg = RunConfig(max_stages=4)
    assert ids(plan_stage("frontier", 1, ITEMS, [H0], cfg)) == ["c", "d"]
    p2 = plan_stage("frontier", 2, ITEMS, [H0, H1], cfg)
    assert ids(p2) == ["e", "g"] and [it.id for it in p2.replay] == ["a", "b"]
    p3 = plan_stage("frontier", 3, ITEMS, [H0, H1, H2], cfg)
    assert ids(p3) == ["f"]  # d moved up too but was trained in stage 1
    assert p3.name == "stage3" and p3.train.lr == pytest.approx(cfg.train.lr * cfg.stage2.lr_scale)
    assert plan_stage("frontier", 4, ITEMS, [H0, H1, H2, H3], cfg) is None  # nothing moved up
    # nothing moved up after stage 1
    assert plan_stage("frontier", 2, ITEMS, [H0, H0], cfg) is None
    # the stage cap
    assert plan_stage("frontier", 3, ITEMS, [H0, H1, H2], dataclasses.replace(cfg, max_stages=2)) is None


def test_frontier_excludes_items_of_earlier_later_stages() -> None:
    # g moves up in stage 1 (trained in stage 2), drops, and moves up again during stage 2: not new.
    h1 = dict(zip(IDS, [H, H, M, M, W, W, M, U]))
    h2 = dict(zip(IDS, [H, H, M, M, W, M, U, U]))
    h3 = dict(zip(IDS, [H, H, M, M, W, M, M, U]))
    cfg = RunConfig(max_stages=5)
    assert ids(plan_stage("frontier", 2, ITEMS, [H0, h1], cfg)) == ["g"]
    assert ids(plan_stage("frontier", 3, ITEMS, [H0, h1, h2], cfg)) == ["f"]
    assert plan_stage("frontier", 4, ITEMS, [H0, h1, h2, h3], cfg) is None


@pytest.mark.parametrize("name,expected", [
    ("all", list(IDS)),
    ("maybeknown", ["c", "d"]),
    ("known", ["a", "b", "c", "d"]),
    ("no-unknown", ["a", "b", "c", "d", "e", "f"]),
])
def test_one_stage_baselines(name: str, expected: list[str]) -> None:
    cfg = RunConfig()
    p = plan_stage(name, 1, ITEMS, [H0], cfg)
    assert ids(p) == expected and p.replay == [] and p.train.lr == cfg.train.lr
    assert plan_stage(name, 2, ITEMS, [H0, H1], cfg) is None


def test_random_baseline() -> None:
    picks = {}
    for seed in range(6):
        p = plan_stage("random", 1, ITEMS, [H0], RunConfig(seed=seed))
        assert len(p.items) == 2 and set(ids(p)) <= set(IDS)
        assert ids(p) == [i for i in IDS if i in ids(p)]  # input order kept
        assert ids(p) == ids(plan_stage("random", 1, ITEMS, [H0], RunConfig(seed=seed)))  # seeded
        picks[seed] = tuple(ids(p))
    assert len(set(picks.values())) > 1  # the seed matters
    assert plan_stage("random", 2, ITEMS, [H0, H1], RunConfig()) is None
    empty = plan_stage("random", 1, ITEMS, [{i: H for i in IDS}], RunConfig())
    assert empty.items == [] and "no items" in empty.note


def test_registry_and_errors() -> None:
    assert set(STRATEGIES) == {"gradual", "gradual-mk", "random-stage2", "frontier", "all", "maybeknown", "known",
                               "no-unknown", "random"}
    with pytest.raises(UserError, match="--strategy"):
        plan_stage("nope", 1, ITEMS, [H0], RunConfig())
    with pytest.raises(ValueError, match="no category"):
        plan_stage("all", 1, ITEMS, [{"a": H}], RunConfig())
    with pytest.raises(ValueError, match="not a category"):
        plan_stage("all", 1, ITEMS, [{**H0, "a": "Known"}], RunConfig())
    with pytest.raises(ValueError, match="need 2"):
        plan_stage("gradual", 2, ITEMS, [H0], RunConfig())


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_probe_free_strategies_are_the_ones_that_read_no_probe(name: str) -> None:
    """compare counts a PROBE_FREE strategy's runs under different exemplar seeds as one training: that
    is only honest if its plans ignore the categories, and only complete if no other strategy does."""
    from gradual.strategies import PROBE_FREE

    other0 = dict(zip(IDS, [M, U, H, W, M, H, W, M]))  # another base categorization of the same items
    other1 = dict(zip(IDS, [M, H, H, M, H, U, W, H]))
    cfg = RunConfig(seed=1)

    def plans(history: list[dict[str, str]]) -> list[object]:
        out = []
        for stage in (1, 2):
            p = plan_stage(name, stage, ITEMS, history[:stage], cfg)
            if p is None:
                break
            out.append(p)  # the whole plan: items, replay pool, resolved settings and note
        return out

    same = plans([H0, H1]) == plans([other0, other1])
    assert same == (name in PROBE_FREE)
