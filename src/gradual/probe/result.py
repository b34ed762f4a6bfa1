"""A probe's result: one row per item (ProbeRow), the summary beside it, and their files.

Run as: written by gradual.probe.run.probe (`gradual probe --out OUT.jsonl`: OUT.jsonl and
OUT.summary.json), read by the pipeline, export, report and compare.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradual import distributed as dist
from gradual.answers import SCORER_VERSION
from gradual.atomic import read_jsonl, write_json, write_jsonl
from gradual.categories import CATEGORIES
from gradual.config import ProbeConfig
from gradual.errors import UserError
import gradual.probe.cache as pcache


@dataclass
class ProbeRow:
    id: str
    category: str
    p_greedy: float
    p_sample: float
    greedy_answers: list[str]
    relation: str | None
    question: str = ""
    answers: list[str] = field(default_factory=list)
    n_greedy_correct: int = 0
    n_samples: int = 0  # sampled answers drawn (sample estimator); 0 under exact
    n_sample_correct: int = 0
    p_seen: float | None = None  # exact only: chance the sampling protocol sees >= 1 correct sample
    p_prompts: list[float | None] | None = None  # exact only: p_i per prompt used (None: not scored)
    exemplar_fallback: bool = False  # exemplars came from the any-relation pool
    repeat_categories: list[str] = field(default_factory=list)  # categories in the --repeat passes
    n_prompts: int = 0  # prompts used (= nex with --full, or for HighlyKnown and all-wrong items)
    n_scored: int = 0  # exact only: prompts whose p_i was computed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProbeRow":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ProbeResult:
    rows: list[ProbeRow]
    summary: dict[str, Any]

    def categories(self) -> dict[str, str]:
        return {r.id: r.category for r in self.rows}

    def counts(self) -> dict[str, int]:
        return {c: sum(1 for r in self.rows if r.category == c) for c in CATEGORIES}


def build_summary(main: list[ProbeRow], passes: list[list[ProbeRow]], seeds: list[int], cfg: ProbeConfig,
             model: dict[str, Any], self_pool: bool, n_pool: int, wall: float, compute_s: float, cached: int,
             tokens: int, cache: str | list[str] = pcache.OFF, rule: str = "") -> dict[str, Any]:
    n = len(main)
    counts = {c: sum(1 for r in main if r.category == c) for c in CATEGORIES}
    by_rel: dict[str, dict[str, int]] = {}
    for r in main:
        rel = by_rel.setdefault(r.relation if r.relation is not None else "(none)", {c: 0 for c in CATEGORIES})
        rel[r.category] += 1
    computed = len(passes) - cached
    noise: dict[str, Any] = {"repeats": len(passes) - 1}
    if len(passes) > 1:
        per = []
        for seed, rows in zip(seeds[1:], passes[1:]):
            flips = sum(1 for a, b in zip(main, rows) if a.category != b.category)
            per.append({"seed": seed, "flip_rate": flips / n,
                        "counts": {c: sum(1 for r in rows if r.category == c) for c in CATEGORIES}})
        changed = sum(1 for r in main if any(c != r.category for c in r.repeat_categories))
        noise.update({"per_repeat": per, "mean_flip_rate": sum(p["flip_rate"] for p in per) / len(per),
                      "changed_share": changed / n,
                      "meaning": "flip_rate: share of items whose category differs between the main probe and "
                                 "that repeat (fresh exemplar seed, same model); changed_share: share of items "
                                 "whose category differs in at least one repeat"})
    return {
        "n_items": n,
        "estimator": cfg.estimator,
        "rule": rule,
        "early_exit": {"enabled": not cfg.full, "prompts_used": sum(r.n_prompts for r in main),
                       "prompts_total": n * cfg.nex,
                       **({"prompts_scored": sum(r.n_scored for r in main)} if cfg.estimator == "exact" else
                          {"samples_drawn": sum(r.n_samples for r in main),
                           "samples_total": n * cfg.nex * cfg.samples})},
        "scorer": SCORER_VERSION,
        "counts": counts,
        "shares": {c: (counts[c] / n if n else 0.0) for c in CATEGORIES},
        "by_relation": by_rel,
        "config": dataclasses.asdict(cfg),
        "model": model,
        "exemplars": {"pool": "the probed items" if self_pool else "separate file", "n_pool": n_pool,
                      "fallback_items": sum(1 for r in main if r.exemplar_fallback)},
        "seeds": seeds,
        "wall_s": round(wall, 3),
        "compute_s": round(compute_s, 3),
        "processes": dist.world_size(),  # items were split across this many ranks (accelerate launch)
        "passes_computed": computed,
        "passes_cached": cached,
        "cache": cache,  # per pass: off / hit / miss / recomputed (bad entry: ...) / unwritable (gradual.probe.cache)
        "questions_per_s": round(n * computed / compute_s, 3) if compute_s > 0 else None,
        "tokens_processed": tokens,
        "noise": noise,
    }


def summary_path(out: Path) -> Path:
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".summary.json")


def save_probe(result: ProbeResult, out: Path) -> None:
    """Write OUT.jsonl (one row per item) and OUT.summary.json, each atomically; the summary goes first,
    so an existing OUT.jsonl always has its complete summary beside it."""
    write_json(summary_path(out), result.summary)
    write_jsonl(out, [r.to_dict() for r in result.rows])


def load_probe(path: Path) -> ProbeResult:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such probe file")
    try:
        rows = [ProbeRow.from_dict(d) for d in read_jsonl(path)]
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a probe file ({exc})") from None
    sp = summary_path(path)
    import json

    summary = json.loads(sp.read_text(encoding="utf-8")) if sp.exists() else {}
    return ProbeResult(rows, summary)
