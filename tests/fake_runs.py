"""Crafted run folders in the pipeline's contract (summary.json, config.yaml, metrics, probe files),
and a fake run_pipeline that writes them: report and compare tests need no model and no training."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

from gradual.categories import CATEGORIES
from gradual.summary import build_summary

CATS = CATEGORIES


def _split(rng: random.Random, total: int, weights: list[float]) -> dict[str, int]:
    raw = [w * (0.8 + 0.4 * rng.random()) for w in weights]
    counts = [int(total * r / sum(raw)) for r in raw]
    counts[-1] += total - sum(counts)
    return dict(zip(CATS, counts))


def _histories(rng: random.Random, n_train: int, n_stages: int, gain: float) -> list[dict[str, str]]:
    """Per-item categories after each stage: each stage moves some MaybeKnown/WeaklyKnown items up to
    HighlyKnown; the last stage forgets a few base-HighlyKnown items."""
    base = _split(rng, n_train, [0.2, 0.3, 0.2, 0.3])
    cats = [c for c in CATS for _ in range(base[c])]
    history = [{f"t{i}": c for i, c in enumerate(cats)}]
    for k in range(n_stages):
        nxt = dict(history[-1])
        movable = [i for i, c in nxt.items() if c in ("MaybeKnown", "WeaklyKnown")]
        moved = min(len(movable), int(gain * n_train * (0.7 + 0.6 * rng.random())))
        for i in rng.sample(movable, moved):
            nxt[i] = "HighlyKnown"
        if k == n_stages - 1:
            known = [i for i, c in history[0].items() if c == "HighlyKnown"]
            for i in rng.sample(known, min(len(known), rng.randint(0, 3))):
                nxt[i] = "MaybeKnown"
        history.append(nxt)
    return history


def make_summary(strategy: str, seed: int, n_train: int = 100, n_stages: int = 2,
                 exemplar_seed: int = 0) -> dict[str, Any]:
    """A crafted summary.json, written by the pipeline's own summary builder."""
    rng = random.Random(f"{strategy}-{seed}" + (f"-ex{exemplar_seed}" if exemplar_seed else ""))
    gain = {"gradual": 0.12, "frontier": 0.14, "maybeknown": 0.08, "all": 0.05}.get(strategy, 0.06)
    history = _histories(rng, n_train, n_stages, gain)
    by_cat = {}
    for c, acc in zip(CATS, (0.8, 0.45, 0.15, 0.03)):
        n = 25
        k = int(n * min(1.0, acc + gain * rng.random()))
        by_cat[c] = {"n": n, "correct": k, "accuracy": k / n}
    stages = []
    for k in range(1, n_stages + 1):
        n_st = rng.randint(10, 30)
        stages.append({"name": f"stage{k}", "stage": k, "n_train": n_st, "n_replay": 0 if k == 1 else n_st // 5,
                       "composition": {"MaybeKnown": n_st}, "best_epoch": rng.randint(1, 3),
                       "dev_accuracy": 0.3 + 0.1 * rng.random(), "wall_s": 30.0 + k, "note": "crafted"})
    test_eval = {"accuracy": sum(v["correct"] for v in by_cat.values()) / 100, "n": 100, "by_category": by_cat,
                 "hallucination_rate": 0.5 + 0.2 * rng.random()}
    return build_summary(strategy=strategy, model="tiny-test-model", fingerprint="0123456789abcdef", seed=seed,
                         data="data/world", stages=stages, history=history, test_eval=test_eval,
                         noise={"mean_flip_rate": 0.05 + 0.01 * seed, "repeats": 1},
                         wall={"wall_s": 100.0 + seed})


def write_run(run_dir: Path, summary: dict[str, Any], config: dict[str, Any] | None = None) -> Path:
    """A run folder as the pipeline leaves it (config.yaml last-but-one, summary.json last)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"config": config or {}, "seed": summary["seed"]}))
    for st in summary["stages"]:
        best = st["best_epoch"]
        rows = [{"epoch": e, "train_loss": 2.0 / e, "dev_loss": 1.5 + 0.1 * abs(e - best),
                 "dev_accuracy": 0.2 + 0.05 * e - (0.1 if e > best else 0), "lr": 1e-4, **({"best": True} if e == best else {})}
                for e in range(1, 5)]
        sdir = run_dir / "stages" / f"stage{st['stage']}"
        sdir.mkdir(parents=True, exist_ok=True)
        (sdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    probe = run_dir / "probe"
    probe.mkdir(exist_ok=True)
    rows = [{"id": f"t{i}", "category": CATS[i % 4], "p_greedy": 1.0 if i % 4 == 0 else 0.0, "p_sample": 0.5,
             "greedy_answers": [], "relation": None} for i in range(8)]
    for name in ["base_train", "base_test"] + [f"stage{st['stage']}_train" for st in summary["stages"]]:
        (probe / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return run_dir


class FakePipeline:
    """Stands in for gradual.pipeline.run_pipeline; counts the runs it actually had to do."""

    def __init__(self, n_stages: int = 2) -> None:
        self.calls: list[str] = []
        self.stage_caches: list[Path | None] = []
        self.n_stages = n_stages

    def __call__(self, cfg: Any, out_dir: Path, *, resume: bool = True, progress: bool = True,
                 command: str = "", stage_cache: Path | None = None) -> dict[str, Any]:
        from gradual.config import to_dict

        out_dir = Path(out_dir)
        self.calls.append(out_dir.name)
        self.stage_caches.append(stage_cache)
        if resume and (out_dir / "summary.json").exists():
            return json.loads((out_dir / "summary.json").read_text())
        summary = make_summary(cfg.strategy, cfg.seed, n_stages=1 if cfg.strategy == "maybeknown" else self.n_stages,
                               exemplar_seed=cfg.probe.seed)
        write_run(out_dir, summary, to_dict(cfg))
        return summary
