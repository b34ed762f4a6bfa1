"""Strategies: which items each stage trains on, decided from probe results.

Run as: gradual run --strategy gradual   (or any name in STRATEGIES: gradual-mk, random-stage2, frontier, ...)

A strategy is one small function `(stage, items, history, cfg) -> StagePlan | None`, registered in
STRATEGIES; adding one is a function and an entry. `stage` is 1-based; `history[j]` maps every train
item's id to its category after stage j (history[0] is the base model's probe), so stage k sees
history[0..k-1]. None means the strategy is done.

    gradual     (PAPER.md §2) stage 1: base MaybeKnown. Stage 2: items that were WeaklyKnown or
                Unknown in the base probe and are MaybeKnown or HighlyKnown after stage 1
                ("upgraded"), plus replay of base-HighlyKnown items, stage-2 settings. Then done.
    gradual-mk  (PAPER.md §2, reading (b)) stage 1 like gradual. Stage 2: every item that is
                MaybeKnown after stage 1 (whether it was MaybeKnown before and stayed so, or came
                from any other category), plus the items that moved up from WeaklyKnown/Unknown
                (into MaybeKnown or HighlyKnown), plus replay of base-HighlyKnown items (ratio
                stage2.replay_ratio, 0.2, per stage-2 item), stage-2 settings. Then done.
                The paper's words it rests on: a reviewer summarizes stage 2 as training on data
                that "demonstrates improved mastery after the first stage, including knowledge
                initially classified as less well-understood"; its stage-2 ablation (Table 8)
                defines a variant fine-tuned on data "that remained classified as MaybeKnown after
                fine-tuning and was initially HighlyKnown or MaybeKnown", and the full method adds
                the items that moved up, plus HighlyKnown replay (0.2).
                `gradual` is reading (a): only what moved up, which leaves a 135M model a handful
                of items; `gradual-mk` is reading (b). `compare` runs both side by side.
    random-stage2  the control for gradual-mk: stage 1 like gradual; stage 2 on a random sample
                (seed cfg.seed) of all train items, as many as gradual-mk's stage 2 would take after
                this same stage 1, with the same replay and stage-2 settings. gradual-mk beating it
                says stage 2's *selection* helps; gradual-mk only matching it says a second stage
                of that size helps whatever it trains on ("more training", not "the right items").
    frontier    stage 1 like gradual. Stage k >= 2: items that moved up from WeaklyKnown/Unknown
                (probe after stage k-2) to MaybeKnown/HighlyKnown (probe after stage k-1) and were
                not selected by an earlier stage, plus replay of base HighlyKnown, stage-2
                settings. Done (None) when nothing new moved up, or after cfg.max_stages stages.
    all         one stage on every item. It reads no probe (PROBE_FREE): under every exemplar seed a
                training seed trains the same model.
    maybeknown  one stage on base MaybeKnown (the paper's one-stage baseline).
    known       one stage on base HighlyKnown + MaybeKnown.
    no-unknown  one stage on every item except base Unknown.
    random      one stage on a random subset (seeded by cfg.seed) as large as base MaybeKnown,
                the control for "MaybeKnown is special" versus "fewer items".

Settings: stage 1 uses cfg.train as is; stages 2+ use lr * stage2.lr_scale, stage2.weight_decay,
stage2.replay_ratio and stage2.epochs. Every stage's seed is the run seed (cfg.seed). The replay pool
is the base-HighlyKnown items; train_stage samples round(replay_ratio * len(items)) of them.

Edge cases:
- An empty selection (no base MaybeKnown for stage 1; nothing upgraded for gradual's stage 2; an
  empty `random` subset) is a StagePlan with items=[] and a note saying why: the pipeline records
  the note and stops there. There is deliberately no silent fallback to another item set, which
  would make the strategy's name lie about what was trained.
- frontier returns None rather than an empty plan when nothing new moved up: that is its normal end.
- "Not selected by an earlier stage" counts the stages' own items, not replay (replay is a random
  sample drawn inside the trainer, and an item replayed as HighlyKnown cannot be moving up then).
- Items missing from a history entry, or unknown category names, raise ValueError (a pipeline bug,
  not user input); an unknown strategy name raises UserError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

from gradual.categories import CATEGORIES, HIGH, HIGHLY, LOW, MAYBE, WEAKLY
from gradual.data.items import Item, seeded_subset
from gradual.errors import UserError

if TYPE_CHECKING:  # types only: config validates strategy names against STRATEGIES, so no import cycle
    from gradual.config import RunConfig, TrainConfig

History = Sequence[Mapping[str, str]]


@dataclass
class StagePlan:
    name: str  # "stage1", "stage2", ...
    items: list[Item]
    replay: list[Item]  # the replay pool; train_stage samples train.replay_ratio * len(items) of it
    train: TrainConfig  # resolved settings for this stage
    note: str  # why these items, in words (goes into summary.json and the run's output)


def _check_categories(history: History, upto: int, items: Sequence[Item]) -> None:
    if len(history) < upto:
        raise ValueError(f"need {upto} probe results (history), got {len(history)}")
    for j in range(upto):
        for it in items:
            cat = history[j].get(it.id)
            if cat is None:
                raise ValueError(f"history[{j}] has no category for item {it.id!r}")
            if cat not in CATEGORIES:
                raise ValueError(f"history[{j}][{it.id!r}] = {cat!r} is not a category")


def _config(cfg: RunConfig, stage: int) -> TrainConfig:
    if stage == 1:
        return dataclasses.replace(cfg.train, seed=cfg.seed)
    s2 = cfg.stage2
    return dataclasses.replace(cfg.train, lr=cfg.train.lr * s2.lr_scale, weight_decay=s2.weight_decay,
                               replay_ratio=s2.replay_ratio, epochs=s2.epochs, seed=cfg.seed)


def _base(items: Sequence[Item], history: History, cats: set[str] | frozenset[str]) -> list[Item]:
    return [it for it in items if history[0][it.id] in cats]


def _moved_up(items: Sequence[Item], history: History, before: int, after: int) -> list[Item]:
    return [it for it in items if history[before][it.id] in LOW and history[after][it.id] in HIGH]


def _one_stage(items: list[Item], cfg: RunConfig, what: str, n_all: int) -> StagePlan:
    note = f"{len(items)} of {n_all} items: {what}"
    if not items:
        note = f"no items: {what} is empty"
    return StagePlan("stage1", items, [], _config(cfg, 1), note)


def _stage1_maybeknown(items: Sequence[Item], history: History, cfg: RunConfig) -> StagePlan:
    return _one_stage(_base(items, history, {MAYBE}), cfg, "base MaybeKnown", len(items))


def _later_stage(stage: int, items: Sequence[Item], history: History, cfg: RunConfig,
                 chosen: list[Item], what: str) -> StagePlan:
    replay = _base(items, history, {HIGHLY})
    note = (f"{len(chosen)} of {len(items)} items: {what}; replay pool {len(replay)} base HighlyKnown "
            f"(ratio {cfg.stage2.replay_ratio})")
    if not chosen:
        note = f"no items: nothing {what.split(' (')[0]}"
    return StagePlan(f"stage{stage}", chosen, replay, _config(cfg, stage), note)


def gradual(stage: int, items: Sequence[Item], history: History, cfg: RunConfig) -> Optional[StagePlan]:
    if stage == 1:
        return _stage1_maybeknown(items, history, cfg)
    if stage == 2:
        up = _moved_up(items, history, 0, 1)
        return _later_stage(2, items, history, cfg, up,
                            "moved up after stage 1 (base WeaklyKnown/Unknown -> MaybeKnown/HighlyKnown)")
    return None


def _gradual_mk_stage2(items: Sequence[Item], history: History) -> list[Item]:
    up = {it.id for it in _moved_up(items, history, 0, 1)}
    return [it for it in items if history[1][it.id] == MAYBE or it.id in up]


def gradual_mk(stage: int, items: Sequence[Item], history: History, cfg: RunConfig) -> Optional[StagePlan]:
    if stage == 1:
        return _stage1_maybeknown(items, history, cfg)
    if stage == 2:
        return _later_stage(2, items, history, cfg, _gradual_mk_stage2(items, history),
                            "MaybeKnown after stage 1 or moved up from WeaklyKnown/Unknown (reading (b) of the paper)")
    return None


def random_stage2(stage: int, items: Sequence[Item], history: History, cfg: RunConfig) -> Optional[StagePlan]:
    if stage == 1:
        return _stage1_maybeknown(items, history, cfg)
    if stage == 2:
        # The size gradual-mk's stage 2 would have after this very stage 1 (same seed, same history).
        n = len(_gradual_mk_stage2(items, history))
        return _later_stage(2, items, history, cfg, seeded_subset(items, n, cfg.seed),
                            f"random train items, as many as gradual-mk's stage 2 ({n}; the control)")
    return None


def frontier(stage: int, items: Sequence[Item], history: History, cfg: RunConfig) -> Optional[StagePlan]:
    if stage == 1:
        return _stage1_maybeknown(items, history, cfg)
    if stage > cfg.max_stages:
        return None
    # Replay the earlier stages' choices from the history (deterministic), to exclude them now.
    seen = {it.id for it in _base(items, history, {MAYBE})}
    for k in range(2, stage):
        seen |= {it.id for it in _moved_up(items, history, k - 2, k - 1)}
    new = [it for it in _moved_up(items, history, stage - 2, stage - 1) if it.id not in seen]
    if not new:
        return None
    return _later_stage(stage, items, history, cfg, new,
                        f"moved up during stage {stage - 1} (WeaklyKnown/Unknown -> MaybeKnown/HighlyKnown), "
                        "not trained on before")


def _baseline(select: Callable[[Sequence[Item], History, RunConfig], tuple[list[Item], str]]) -> Callable[..., Optional[StagePlan]]:
    """A one-stage strategy from a selection rule."""

    def strategy(stage: int, items: Sequence[Item], history: History, cfg: RunConfig) -> Optional[StagePlan]:
        if stage > 1:
            return None
        chosen, what = select(items, history, cfg)
        return _one_stage(chosen, cfg, what, len(items))

    strategy.__doc__ = select.__doc__
    return strategy


def _all(items: Sequence[Item], history: History, cfg: RunConfig) -> tuple[list[Item], str]:
    """Every train item."""
    return list(items), "every item"


def _maybeknown(items: Sequence[Item], history: History, cfg: RunConfig) -> tuple[list[Item], str]:
    """Base MaybeKnown items."""
    return _base(items, history, {MAYBE}), "base MaybeKnown"


def _known(items: Sequence[Item], history: History, cfg: RunConfig) -> tuple[list[Item], str]:
    """Base HighlyKnown + MaybeKnown items."""
    return _base(items, history, {HIGHLY, MAYBE}), "base HighlyKnown + MaybeKnown"


def _no_unknown(items: Sequence[Item], history: History, cfg: RunConfig) -> tuple[list[Item], str]:
    """Every item but base Unknown."""
    return _base(items, history, {HIGHLY, MAYBE, WEAKLY}), "every item but base Unknown"


def _random(items: Sequence[Item], history: History, cfg: RunConfig) -> tuple[list[Item], str]:
    """A random subset (seed cfg.seed) as large as base MaybeKnown."""
    n = len(_base(items, history, {MAYBE}))
    return seeded_subset(items, n, cfg.seed), f"random subset the size of base MaybeKnown ({n})"


STRATEGIES: dict[str, Callable[[int, Sequence[Item], History, RunConfig], Optional[StagePlan]]] = {
    "gradual": gradual,
    "gradual-mk": gradual_mk,
    "random-stage2": random_stage2,
    "frontier": frontier,
    "all": _baseline(_all),
    "maybeknown": _baseline(_maybeknown),
    "known": _baseline(_known),
    "no-unknown": _baseline(_no_unknown),
    "random": _baseline(_random),
}

# Strategies whose plans never read the probe history. With one training seed they train the same
# model under every base categorization (exemplar seed; only their re-probe differs), so `gradual
# compare` counts such runs as one training in its intervals (gradual.compare._training_key).
# tests/test_strategies.py checks this set against the plans themselves.
PROBE_FREE: frozenset[str] = frozenset({"all"})


def strategy_errors(names: Sequence[str], label: str) -> list[str]:
    """The one check of strategy names: a message per unknown name, naming the key or flag `label`."""
    unknown = [n for n in names if n not in STRATEGIES]
    if not unknown:
        return []
    return [f"{label}: unknown {', '.join(map(repr, unknown))} (known: {', '.join(sorted(STRATEGIES))})"]


def check_strategies(names: Sequence[str], label: str) -> None:
    """UserError (exit 2) when any name is not a strategy."""
    errors = strategy_errors(names, label)
    if errors:
        raise UserError("; ".join(errors))


def plan_stage(strategy: str, stage: int, items: Sequence[Item], history: History,
               cfg: RunConfig) -> Optional[StagePlan]:
    """The plan for `stage` (1-based) given the probe history so far, or None when the strategy is done."""
    check_strategies([strategy], "--strategy")
    if stage < 1:
        raise ValueError(f"stage is 1-based, got {stage}")
    _check_categories(history, stage, items)
    return STRATEGIES[strategy](stage, items, history, cfg)
