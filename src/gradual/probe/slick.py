"""SliCK logic: the category rule table and the few-shot exemplar sets (PAPER.md §1).

Run as: used by `gradual probe` (gradual.probe.run); no command of its own.

Categories (P(T=0) = share of the Nex greedy answers that are correct):

    HighlyKnown   P(T=0) = 1
    MaybeKnown    0 < P(T=0) < 1
    WeaklyKnown   P(T=0) = 0 and a correct sample is seen (see below)
    Unknown       P(T=0) = 0 and no correct sample

"A correct sample is seen" depends on the estimator:
  sample  the paper's protocol: P(T>0) = share of the Nex x samples sampled answers that are correct;
          WeaklyKnown when P(T>0) > 0.
  exact   p_i = exact probability that prompt i yields an accepted answer at T>0 (see engine.py);
          p_seen = 1 - prod_i (1 - p_i)^samples is the chance that the paper's protocol would see at
          least one correct sample among its Nex x samples draws; WeaklyKnown when p_seen >= 0.5,
          i.e. when the sampling protocol would more likely than not call the item WeaklyKnown.

Exemplar sets. The probed item is never among its own exemplars (same id or same normalized
question), and exemplars come from the item's relation; an item whose relation has fewer than
`shots` eligible exemplars (or that has no relation) draws from the whole pool instead.
For speed, sets are drawn once per (seed, relation) as a deterministic stream, and every item takes
the first `nex` sets of its relation's stream that do not contain it. Each item therefore still gets
`nex` uniformly random sets that exclude it, but items of one relation share the same few prompt
prefixes, so the engine computes each prefix's KV cache once for hundreds of questions. The price is
that items of one relation see correlated exemplar noise (a bad set touches all of them); `--repeat`
measures the resulting chance category flips.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Sequence

from gradual.answers import normalize
from gradual.categories import CATEGORIES, HIGHLY, MAYBE, UNKNOWN, WEAKLY  # noqa: F401  (CATEGORIES re-exported)
from gradual.data.items import Item
from gradual.errors import UserError

# The any-relation pool's key in exemplar streams (not a valid relation name in our data: it has a space).
ANY_RELATION = "* any relation"
# Safety valve: an item that cannot find nex sets without itself in this many draws is a bug or a pool
# so small that random sets almost always contain the item.
_MAX_STREAM = 100_000


def categorize(p_greedy: float, p_sample: float, *, p_seen: float | None = None) -> str:
    """The rule table of PAPER.md §1.

    `p_seen` is given by the exact estimator only: the probability that the sampling protocol would
    see at least one correct sample; then WeaklyKnown needs p_seen >= 0.5 instead of p_sample > 0.
    """
    if not (0.0 <= p_greedy <= 1.0):
        raise ValueError(f"p_greedy must be in [0, 1], got {p_greedy}")
    if p_greedy >= 1.0:
        return HIGHLY
    if p_greedy > 0.0:
        return MAYBE
    if p_seen is not None:
        return WEAKLY if p_seen >= 0.5 else UNKNOWN
    return WEAKLY if p_sample > 0.0 else UNKNOWN


def maybe_known_settled(n_right: int, n_wrong: int) -> bool:
    """One right and one wrong greedy answer make an item MaybeKnown whatever its other prompts say."""
    return n_right > 0 and n_wrong > 0


def sample_evidence_settled(p_seen: float | None, n_sample_correct: int) -> bool:
    """The "a correct sample is seen" half of WeaklyKnown can only grow with more prompts: once it holds
    (p_seen >= 0.5 under exact, one correct sample under sample), more samples or scores cannot change
    the category; only the remaining greedy answers can (one right one makes the item MaybeKnown)."""
    return p_seen >= 0.5 if p_seen is not None else n_sample_correct > 0


def p_seen_from_prompts(p_prompts: Sequence[float], samples: int) -> float:
    """1 - prod_i (1 - p_i)^samples: chance of at least one correct sample under the paper's protocol."""
    miss = 1.0
    for p in p_prompts:
        miss *= (1.0 - min(max(p, 0.0), 1.0)) ** samples
    return 1.0 - miss


@dataclass(frozen=True)
class ExemplarSet:
    """One few-shot exemplar set: the `index`-th draw of the stream for `group` (a relation or ANY_RELATION)."""

    group: str
    index: int
    items: tuple[Item, ...]

    @property
    def key(self) -> tuple[str, int]:
        return (self.group, self.index)


def _stream_rng(seed: int, group: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class _Stream:
    """The lazily extended, deterministic sequence of exemplar sets of one group."""

    def __init__(self, group: str, pool: Sequence[Item], shots: int, seed: int) -> None:
        self.group, self.pool, self.shots = group, list(pool), shots
        self.rng = _stream_rng(seed, group)
        self.sets: list[ExemplarSet] = []
        self.keys: list[frozenset[str]] = []  # normalized questions and ids in each set, for exclusion

    def get(self, i: int) -> tuple[ExemplarSet, frozenset[str]]:
        while len(self.sets) <= i:
            picked = tuple(self.rng.sample(self.pool, self.shots))
            self.sets.append(ExemplarSet(self.group, len(self.sets), picked))
            self.keys.append(frozenset(_identity(e) for e in picked) | frozenset("id:" + e.id for e in picked))
        return self.sets[i], self.keys[i]


def _identity(item: Item) -> str:
    return "q:" + normalize(item.question)


def _excludes(item: Item, e: Item) -> bool:
    return e.id == item.id or _identity(e) == _identity(item)


@dataclass
class Assignment:
    """Exemplar sets chosen for each item, and which items fell back to the any-relation pool."""

    sets: dict[str, list[ExemplarSet]]  # item id -> nex sets
    fallback: set[str]  # item ids drawing from the any-relation pool


def assign_exemplar_sets(items: Sequence[Item], pool: Sequence[Item], nex: int, shots: int, seed: int) -> Assignment:
    """Pick `nex` exemplar sets of `shots` items for every item (see the module docstring)."""
    if nex < 1 or shots < 0:
        raise ValueError("nex must be >= 1 and shots >= 0")
    groups: dict[str, list[Item]] = {}
    for e in pool:
        if e.relation is not None:
            groups.setdefault(e.relation, []).append(e)
    streams: dict[str, _Stream] = {}
    out: dict[str, list[ExemplarSet]] = {}
    fallback: set[str] = set()
    for item in items:
        group = item.relation if item.relation is not None else ANY_RELATION
        members = groups.get(group, []) if group != ANY_RELATION else list(pool)
        if sum(1 for e in members if not _excludes(item, e)) < shots:
            group, members = ANY_RELATION, list(pool)
            if sum(1 for e in members if not _excludes(item, e)) < shots:
                raise UserError(
                    f"--exemplars: {len(pool)} exemplars are too few for --shots {shots} "
                    f"(item {item.id!r} needs {shots} exemplars other than itself)"
                )
        if group != (item.relation if item.relation is not None else ANY_RELATION) or item.relation is None:
            fallback.add(item.id)
        if group not in streams:
            streams[group] = _Stream(group, members, shots, seed)
        stream = streams[group]
        mine = {"id:" + item.id, _identity(item)}
        chosen: list[ExemplarSet] = []
        i = 0
        while len(chosen) < nex:
            if i >= _MAX_STREAM:
                raise UserError(f"--exemplars: could not draw {nex} exemplar sets without item {item.id!r}")
            es, keys = stream.get(i)
            if not (keys & mine):
                chosen.append(es)
            i += 1
        out[item.id] = chosen
    return Assignment(out, fallback)
