"""Strategies x seeds: one run each (finished runs reused), then means with 95% intervals.

Run as: gradual compare --config configs/default.yaml --strategies gradual,maybeknown,all,frontier \
            --seeds 0,1,2 --out runs/compare

Layout: OUT/runs/<strategy>-seed<k>/ (ordinary run folders; <strategy>-ex<e>-seed<k> with
--exemplar-seeds), OUT/comparison.json, OUT/comparison.md, OUT/report.html. Every aggregate is a mean
over runs with a t-interval (gradual.metrics.mean_ci); the headline is the paper's "knowledge
acquired" figure. Comparisons between strategies are paired: two runs pair when they share the
training seed and the exemplar seed (probe.seed), so they start from the same base categories; each
paired difference carries the smallest difference the compare could have detected at 80% power.
Intervals count trainings, not runs: a strategy that reads no probe (strategies.PROBE_FREE, `all`)
trains one model per training seed whatever the exemplar seed, so those runs are averaged into one
value first (`n_trainings` beside `n_runs`). With several exemplar seeds, the runs' base probes also
give a chance yardstick for stage-2 selection (exemplar_agreement: items that move up with no training).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

from gradual.atomic import write_json, write_text
from gradual.categories import CATEGORIES
from gradual.errors import UserError
from gradual.metrics import detectable_difference, mean_ci
from gradual.report.markdown import comparison_markdown
from gradual.rundir import CompareDir, RunDir
from gradual.strategies import PROBE_FREE

COUNT_BOUNDS = (0.0, math.inf)
UNIT = (0.0, 1.0)  # the range of a proportion
HEADLINE = ("gradual", "maybeknown")  # (two-stage, one-stage MaybeKnown-only): PAPER.md §2
# The paired comparisons reported when both strategies ran: each reading of stage 2 against the
# one-stage baseline, gradual-mk against its control (same stage-2 size, random items), the two
# readings against each other, and training on everything.
PAIRS = (("gradual", "maybeknown"), ("gradual-mk", "maybeknown"), ("gradual-mk", "random-stage2"),
         ("random-stage2", "maybeknown"), ("gradual-mk", "gradual"), ("all", "maybeknown"))
POWER = 0.8
log = logging.getLogger(__name__)


def run_name(strategy: str, seed: int, exemplar_seed: int | None = None) -> str:
    """`<strategy>-seed<k>`; with an exemplar seed (compare --exemplar-seeds), `<strategy>-ex<e>-seed<k>`."""
    return f"{strategy}-seed{seed}" if exemplar_seed is None else f"{strategy}-ex{exemplar_seed}-seed{seed}"


# --- running ------------------------------------------------------------------------------------


def finished_summary(run_dir: Path, cfg: Any) -> dict[str, Any] | None:
    """summary.json of a finished run made with exactly `cfg`, else None (the run must be (re)done)."""
    rd = RunDir(run_dir)
    if not (rd.summary.is_file() and rd.config.is_file()):
        return None
    was = rd.recorded_identity()
    if was is None:
        return None
    try:
        summary = json.loads(rd.summary.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if was != rd.identity(cfg):
        return None
    return summary


def _nested_live_ok() -> bool:
    """Rich >= 14.1 nests a run's progress bars inside ours; older rich raises LiveError."""
    from importlib.metadata import version

    try:
        major, minor = (int(x) for x in version("rich").split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (14, 1)


def run_compare(
    config: str | Path | None,
    strategies: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    command: str = "",
    report: bool = True,
    exemplar_seeds: Sequence[int] | None = None,
    finished_only: bool = False,
) -> dict[str, Any]:
    """Run every strategy x seed (x exemplar seed) in OUT/runs/, aggregate, write comparison.{json,md}
    and the report. `exemplar_seeds` repeats the whole design once per probe.seed, so the base
    categorization itself varies; without it every run uses the config's probe.seed.

    `finished_only` runs nothing: it aggregates the planned runs that have finished (a long compare
    read while it is still running, or after it was stopped), lists the rest in `missing_runs`, and
    takes no folder lock, since it only reads runs and writes the comparison files atomically."""
    from gradual import distributed as dist
    from gradual.run_config import load_run_config

    out = Path(out)
    cdir = CompareDir(out)
    progress = progress and dist.is_main()  # one bar under a multi-process launch
    t0 = time.time()
    # Build and validate every config first: a typo fails before hours of runs, not after.
    plan = []
    # Seed-major order: an interrupted compare still has every strategy (and exemplar seed) for the
    # first seeds, so its paired comparisons are complete as far as they go.
    for k in seeds:
        for e in (exemplar_seeds or [None]):
            for s in strategies:
                extra = {"probe.seed": e} if e is not None else {}
                cfg = load_run_config(config, {**(overrides or {}), **extra, "strategy": s, "seed": k})
                plan.append((s, k, cfg, cdir.run(run_name(s, k, e)).root))
    from gradual.lm.spec import check_model_spec

    check_model_spec(plan[0][2].model)  # one model for every run: a typo fails now, not after torch loads
    if finished_only:
        return _compare_finished(plan, out, list(strategies), list(seeds), config, overrides, command=command,
                                 report=report, t0=t0)
    from gradual.runlock import folder_lock

    with folder_lock(out):  # one compare per folder (each run also locks its own)
        return _compare_locked(plan, out, list(strategies), list(seeds), config, overrides, progress=progress,
                               command=command, report=report, t0=t0)


def _compare_locked(plan: list[tuple[str, int, Any, Path]], out: Path, strategies: list[str], seeds: list[int],
                    config: str | Path | None, overrides: Mapping[str, Any] | None, *, progress: bool, command: str,
                    report: bool, t0: float) -> dict[str, Any]:
    from gradual import distributed as dist
    from gradual.pipeline import run_pipeline

    summaries: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    fresh_times: list[float] = []

    def do_run(s: str, k: int, cfg: Any, rdir: Path, inner_progress: bool) -> None:
        summary = dist.on_main(lambda: finished_summary(rdir, cfg))  # every rank reuses, or reruns, alike
        reused = summary is not None
        start = time.time()
        if summary is None:
            summary = run_pipeline(cfg, rdir, resume=True, progress=inner_progress, command=command,
                                   stage_cache=CompareDir(out).stage_cache)
        took = time.time() - start
        if not reused and took > 1.0:  # a run that only returned its summary says nothing about speed
            fresh_times.append(took)
        summaries.append(_with_exemplar_seed(summary, cfg))
        runs.append(_run_record(s, k, cfg, rdir, summary, reused))

    if progress:
        from rich import get_console
        from rich.progress import TextColumn, TimeElapsedColumn

        from gradual.progress import progress_bar

        # The global console, so the pipeline's own bars (same console) nest under this one.
        with progress_bar(TextColumn("runs"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                          console=get_console()) as bar:
            task = bar.add_task("[bold]compare[/]", total=len(plan), eta="")
            for i, (s, k, cfg, rdir) in enumerate(plan):
                bar.update(task, description=f"[bold]compare[/] {rdir.name}", eta=_eta(fresh_times, plan[i:]))
                do_run(s, k, cfg, rdir, _nested_live_ok())
                bar.update(task, advance=1, eta=_eta(fresh_times, plan[i + 1:]))
            bar.update(task, description="[bold]compare[/] done")
    else:
        for s, k, cfg, rdir in plan:
            do_run(s, k, cfg, rdir, False)

    comparison = _write_comparison(plan, out, summaries, runs, strategies, seeds, config, overrides,
                                   command=command, report=report, t0=t0)
    dist.barrier()
    return comparison


def _with_exemplar_seed(summary: Mapping[str, Any], cfg: Any) -> dict[str, Any]:
    # The exemplar seed is what pairs runs (with the training seed); summary.json predates it.
    return {**summary, "exemplar_seed": cfg.probe.seed}


def _run_record(strategy: str, seed: int, cfg: Any, rdir: Path, summary: Mapping[str, Any],
                reused: bool) -> dict[str, Any]:
    """One row of comparison.json's `runs`."""
    return {"name": rdir.name, "strategy": strategy, "seed": seed, "exemplar_seed": cfg.probe.seed,
            "dir": CompareDir.run_rel(rdir.name), "reused": reused, "wall_s": summary.get("wall_s")}


def _compare_finished(plan: list[tuple[str, int, Any, Path]], out: Path, strategies: list[str], seeds: list[int],
                      config: str | Path | None, overrides: Mapping[str, Any] | None, *, command: str,
                      report: bool, t0: float) -> dict[str, Any]:
    """The comparison of the planned runs that have finished with their planned config; runs nothing."""
    summaries: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    missing: list[str] = []
    for s, k, cfg, rdir in plan:
        summary = finished_summary(rdir, cfg)
        if summary is None:
            missing.append(rdir.name)
            continue
        summaries.append(_with_exemplar_seed(summary, cfg))
        runs.append(_run_record(s, k, cfg, rdir, summary, reused=True))
    if not summaries:
        raise UserError(f"{CompareDir(out).runs_dir}: none of the {len(plan)} planned runs has finished with this "
                        "config yet (drop --finished-only to run them)")
    return _write_comparison(plan, out, summaries, runs, strategies, seeds, config, overrides, command=command,
                             report=report, t0=t0, missing=missing, finished_only=True)


def _write_comparison(plan: list[tuple[str, int, Any, Path]], out: Path, summaries: list[dict[str, Any]],
                      runs: list[dict[str, Any]], strategies: list[str], seeds: list[int],
                      config: str | Path | None, overrides: Mapping[str, Any] | None, *, command: str,
                      report: bool, t0: float, missing: Sequence[str] = (),
                      finished_only: bool = False) -> dict[str, Any]:
    """Aggregate, then (main process only) comparison.json, comparison.md and the report."""
    from gradual import distributed as dist

    comparison = aggregate(summaries, runs, list(strategies), list(seeds),
                           sorted({p[2].probe.seed for p in plan}))
    comparison["noise"]["between_exemplar_seeds"] = dist.on_main(lambda: exemplar_agreement(out, runs))
    comparison.update(config=str(config) if config is not None else None, command=command,
                      overrides={k: v for k, v in (overrides or {}).items() if v is not None},
                      planned_runs=len(plan), missing_runs=list(missing), finished_only=finished_only,
                      wall_s=round(time.time() - t0, 1))
    if dist.is_main():  # every rank ran the same runs (each sharded inside); one writes
        cdir = CompareDir(out)
        write_json(cdir.comparison_json, comparison)
        write_text(cdir.comparison_md, comparison_markdown(comparison))
        if report:
            from gradual.report import write_report

            write_report(out)
    return comparison


def _eta(fresh: list[float], left: Sequence[tuple[Any, Any, Any, Path]]) -> str:
    """Remaining time = runs still to do x mean time of the runs done here (finished ones cost ~0)."""
    todo = sum(1 for *_, rdir in left if not RunDir(rdir).summary.exists())
    if todo == 0:
        return ""
    if not fresh:
        return f"{todo} to run, ETA after the first"
    from gradual.formatting import fmt_seconds

    return f"{todo} to run, ETA {fmt_seconds(todo * sum(fresh) / len(fresh))}"


# --- aggregation ----------------------------------------------------------------------------------


def _get(d: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = d
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def _training_key(s: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a run's training: (exemplar seed, training seed), since the exemplar seed sets the
    base categories the strategy selects from; for a strategy that reads no probe (strategies.PROBE_FREE)
    the training seed alone: its runs under different exemplar seeds train the same model."""
    return (s.get("seed"),) if s.get("strategy") in PROBE_FREE else _pair_key(s)


def _per_training(values: Sequence[Any], keys: Sequence[Hashable]) -> list[float | None]:
    """One value per training, in first-seen order: the mean over the runs that share a training key
    (one model re-probed under several exemplar seeds). Counting those runs apart would treat one
    training as several independent ones and narrow the interval without evidence."""
    groups: dict[Hashable, list[float]] = {}
    for v, k in zip(values, keys):
        g = groups.setdefault(k, [])
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            g.append(float(v))
    return [sum(g) / len(g) if g else None for g in groups.values()]


def _base_key(s: Mapping[str, Any]) -> tuple[Any, ...]:
    """The base probe a run starts from: one per exemplar seed, shared by every training seed."""
    return (s.get("exemplar_seed"),)


def _run_key(s: Mapping[str, Any]) -> int:
    """Each run on its own: for its wall time, a cost of every execution rather than a property of a training."""
    return id(s)


def _ci(rows: Sequence[Mapping[str, Any]], fn: Callable[[Mapping[str, Any]], Any],
        bounds: tuple[float, float] | None = COUNT_BOUNDS,
        key: Callable[[Mapping[str, Any]], Hashable] = _training_key) -> dict[str, Any]:
    """mean_ci of fn(row), one value per `key` group (by default the runs of one training, averaged
    first: _per_training). `bounds` clips the interval: UNIT for a proportion, COUNT_BOUNDS for a
    count, since a t-interval over 3 seeds can overshoot both; None for neither."""
    return mean_ci(_per_training([fn(r) for r in rows], [key(r) for r in rows]), bounds=bounds)


def _hk_share(s: Mapping[str, Any]) -> float | None:
    after, n = _get(s, "highly_known", "after"), s.get("n_train_items")
    return after / n if after is not None and n else None


def aggregate_strategy(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and 95% interval over one strategy's runs (one per seed) of every reported number."""
    cats = list(CATEGORIES) + sorted({c for r in rows for c in (_get(r, "test_accuracy", "by_category") or {})}
                                         - set(CATEGORIES))
    n_stages = max((len(r.get("stages") or []) for r in rows), default=0)
    stages = []
    for i in range(n_stages):
        trained = [r for r in rows if len(r.get("stages") or []) > i]
        present = [r["stages"][i] for r in trained]
        name = Counter(st.get("name", f"stage{i + 1}") for st in present).most_common(1)[0][0]
        stages.append({
            "stage": i + 1, "name": name, "runs": len(present),
            # A run that stopped before stage i trained 0 items there: count it, so means add up.
            "n_train": _ci(rows, lambda r, i=i: r["stages"][i].get("n_train") if len(r.get("stages") or []) > i else 0),
            "n_replay": _ci(rows, lambda r, i=i: r["stages"][i].get("n_replay") if len(r.get("stages") or []) > i else 0),
            "best_epoch": _ci(trained, lambda r, i=i: r["stages"][i].get("best_epoch"), None),
            "dev_accuracy": _ci(trained, lambda r, i=i: r["stages"][i].get("dev_accuracy"), UNIT),
        })
    n_levels = max((len(r.get("categories") or []) for r in rows), default=0)
    categories = []
    probed = [r for r in rows if r.get("categories")]

    def level(r: Mapping[str, Any], i: int) -> Mapping[str, int]:
        # A run with fewer stages keeps its last distribution (nothing changed after it stopped).
        return r["categories"][min(i, len(r["categories"]) - 1)].get("counts") or {}

    for i in range(n_levels):
        key = _base_key if i == 0 else _training_key  # level 0 is the base probe, one per exemplar seed
        categories.append({"stage": i, "counts": {c: _ci(probed, lambda r, c=c, i=i: level(r, i).get(c, 0), None,
                                                         key)["mean"] for c in CATEGORIES}})
    moved = [r for r in rows if _get(r, "transitions", "counts")]
    first = _get(moved[0], "transitions", "counts") if moved else None
    # Each cell averaged like every other figure: per training first (_ci), so a partial compare
    # weights trainings, not runs, here too.
    trans = ([[_ci(moved, lambda r, a=a, b=b: r["transitions"]["counts"][a][b], None)["mean"]
               for b in range(len(first[0]))] for a in range(len(first))] if first else None)
    return {
        "n_runs": len(rows),
        "n_trainings": len({_training_key(r) for r in rows}),
        "seeds": [r.get("seed") for r in rows],
        "test_accuracy": _ci(rows, lambda r: _get(r, "test_accuracy", "overall"), UNIT),
        "test_accuracy_by_category": {c: _ci(rows, lambda r, c=c: _get(r, "test_accuracy", "by_category", c, "accuracy"), UNIT)
                                      for c in cats},
        "hallucination_rate": _ci(rows, lambda r: r.get("hallucination_rate"), UNIT),
        "acquired": _ci(rows, lambda r: r.get("acquired")),
        "forgotten": _ci(rows, lambda r: r.get("forgotten")),
        "retention": _ci(rows, lambda r: r.get("retention"), UNIT),
        "highly_known_before": _ci(rows, lambda r: _get(r, "highly_known", "before"), key=_base_key),
        "highly_known_after": _ci(rows, lambda r: _get(r, "highly_known", "after")),
        "highly_known_after_share": _ci(rows, _hk_share, UNIT),
        "n_train_items": _ci(rows, lambda r: r.get("n_train_items")),
        "n_stages": _ci(rows, lambda r: len(r.get("stages") or [])),
        "items_trained": _ci(rows, lambda r: sum(st.get("n_train") or 0 for st in r.get("stages") or [])),
        "stages": stages,
        "categories": categories,
        "transitions_mean": trans,
        "wall_s": _ci(rows, lambda r: r.get("wall_s"), key=_run_key),
    }


def _pair_key(s: Mapping[str, Any]) -> tuple[Any, Any]:
    """Runs pair when they share the exemplar seed (the same base categories) and the training seed."""
    return (s.get("exemplar_seed"), s.get("seed"))


def _pairs(summaries: Sequence[Mapping[str, Any]], a: str, b: str) -> list[tuple[Any, Mapping[str, Any], Mapping[str, Any]]]:
    by = {(s.get("strategy"), _pair_key(s)): s for s in summaries}
    keys = sorted({k for (st, k) in by if st == a} & {k for (st, k) in by if st == b},
                  key=lambda k: tuple(-1 if x is None else x for x in k))
    return [(k, by[(a, k)], by[(b, k)]) for k in keys]


def _independent_pairs(rows: Sequence[tuple[Any, Mapping[str, Any], Mapping[str, Any]]]) -> list[tuple[Any, ...]]:
    """A key per pair; pairs with one key share a training (a PROBE_FREE side's model under two
    exemplar seeds), so their differences are not independent and _per_training averages them into one
    value before the interval. Only PROBE_FREE runs are shared between pairs: any other run belongs to
    one (exemplar seed, training seed) and so to one pair."""
    keys = []
    for k, x, y in rows:
        shared = tuple(_training_key(r) for r in (x, y) if r.get("strategy") in PROBE_FREE)
        keys.append(shared or tuple(k))
    return keys


def _with_power(values: Sequence[float | None], keys: Sequence[Hashable]) -> dict[str, Any]:
    """mean_ci of paired differences, one per training (_per_training by `keys`), plus `detectable`:
    the smallest |mean difference| detectable at POWER (two-sided, 95%), from their sd and count."""
    ci = mean_ci(_per_training(values, keys))
    return {**ci, "detectable": detectable_difference(ci["sd"], int(ci["n"] or 0), POWER)}


def _diff(x: Any, y: Any, scale: float = 1.0) -> float | None:
    return (x - y) * scale if x is not None and y is not None else None


def _relative(x: Any, y: Any) -> float | None:
    return (x - y) / y if x is not None and y else None


def paired(summaries: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]] = PAIRS) -> list[dict[str, Any]]:
    """Every comparison of `pairs` whose two strategies both ran: differences paired by (exemplar seed,
    training seed), each with its interval and the difference detectable at 80% power."""
    out = []
    for a, b in pairs:
        rows = _pairs(summaries, a, b)
        if not rows:
            continue
        hk = lambda s: _get(s, "highly_known", "after")  # noqa: E731
        acc = lambda s: _get(s, "test_accuracy", "overall")  # noqa: E731
        keys = _independent_pairs(rows)
        out.append({
            "a": a, "b": b, "n": len(rows), "n_independent": len(set(keys)),
            "pairs": [{"exemplar_seed": k[0], "seed": k[1]} for k, _, _ in rows],
            "highly_known_after": _with_power([_diff(hk(x), hk(y)) for _, x, y in rows], keys),
            "relative_highly_known": _with_power([_relative(hk(x), hk(y)) for _, x, y in rows], keys),
            "test_accuracy_points": _with_power([_diff(acc(x), acc(y), 100.0) for _, x, y in rows], keys),
            "forgotten": _with_power([_diff(x.get("forgotten"), y.get("forgotten")) for _, x, y in rows], keys),
            "retention_points": _with_power([_diff(x.get("retention"), y.get("retention"), 100.0) for _, x, y in rows],
                                            keys),
        })
    return out


def headline(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The paper's "+24% knowledge acquired": (HK_gradual - HK_maybeknown) / HK_maybeknown after
    training, on the train split, paired by (exemplar seed, training seed), then mean, interval and
    the relative increase the compare could have detected at 80% power."""
    two, one = HEADLINE
    rows = _pairs(summaries, two, one)
    if not rows:
        return None
    per_seed, keys = [], _independent_pairs(rows)
    for (e, k), x, y in rows:
        g, m = _get(x, "highly_known", "after"), _get(y, "highly_known", "after")
        per_seed.append({"exemplar_seed": e, "seed": k, two: g, one: m, "difference": _diff(g, m),
                         "relative": _relative(g, m)})
    return {
        "definition": "(HighlyKnown train items after training: gradual - maybeknown) / maybeknown, "
                      "paired by exemplar seed and training seed",
        "paper": 0.24,
        "per_seed": per_seed,
        "relative_increase": _with_power([p["relative"] for p in per_seed], keys),
        "difference": _with_power([p["difference"] for p in per_seed], keys),
    }


def by_exemplar_seed(summaries: Sequence[Mapping[str, Any]], strategies: Sequence[str]) -> list[dict[str, Any]]:
    """Each base categorization (exemplar seed) on its own: per strategy, test accuracy and HighlyKnown
    after over its training seeds, and the headline within it. The strategy means pool exemplar seeds, so
    their intervals carry the spread between base categorizations; this shows whether the two agree.
    Empty with fewer than two exemplar seeds (it would repeat the strategy table)."""
    seeds = sorted({s["exemplar_seed"] for s in summaries if s.get("exemplar_seed") is not None})
    if len(seeds) < 2:
        return []
    out = []
    for e in seeds:
        rows = [s for s in summaries if s.get("exemplar_seed") == e]
        per = {st: [r for r in rows if r.get("strategy") == st] for st in strategies}
        h = headline(rows)
        out.append({"exemplar_seed": e,
                    "strategies": {st: {"n_runs": len(r),
                                        "test_accuracy": _ci(r, lambda x: _get(x, "test_accuracy", "overall"), UNIT),
                                        "highly_known_after": _ci(r, lambda x: _get(x, "highly_known", "after"))}
                                   for st, r in per.items() if r},
                    "headline": h["relative_increase"] if h else None})
    return out


def noise_control(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Chance flip rate of base categories (re-probing the base model with fresh exemplars).

    The base probe is shared by every strategy of a (exemplar seed, seed) pair, so each counts once."""
    per_seed: dict[Any, float] = {}
    repeats = 0
    for s in summaries:
        fr = _get(s, "noise", "flip_rate")
        if fr is not None and _pair_key(s) not in per_seed:
            per_seed[_pair_key(s)] = fr
            repeats = max(repeats, int(_get(s, "noise", "repeats") or 0))
    return {"flip_rate": mean_ci(list(per_seed.values()), bounds=(0.0, 1.0)),
            "per_seed": [{"exemplar_seed": e, "seed": k, "flip_rate": v} for (e, k), v in per_seed.items()],
            "repeats": repeats}


def _base_categories(path: Path) -> dict[str, str]:
    """{item id: category} of a base probe file; ValueError (or OSError) when it is not one. Only the two
    fields are read: this figure must not depend on the rest of a probe file's format."""
    from gradual.atomic import read_jsonl

    out = {}
    for row in read_jsonl(path):
        if not isinstance(row, dict) or row.get("category") not in CATEGORIES or "id" not in row:
            raise ValueError(f"{path}: not a probe row: {str(row)[:80]}")
        out[str(row["id"])] = str(row["category"])
    return out


def exemplar_agreement(out: Path, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """How far the base categorizations of different exemplar seeds lie apart (metrics.category_agreement
    of every pair of their base_train probes, one finished run's file per seed: the base probe depends on
    the exemplar seed, not on the strategy or training seed). `chance_up` is the mean, over both
    directions of every pair, of the items that move from WeaklyKnown/Unknown to MaybeKnown/HighlyKnown
    with no training: a yardstick for stage-2 selection's "moved up after stage 1" (which re-probes with
    the same exemplars, so the yardstick is generous). None with fewer than two readable base probes; a
    damaged file is skipped with a warning (the next run of that exemplar seed is tried), since this
    figure must never cost the comparison of hours of runs."""
    from itertools import combinations

    from gradual.metrics import category_agreement

    cats: dict[int, dict[str, str]] = {}
    files: dict[int, str] = {}
    for r in runs:
        e = r.get("exemplar_seed")
        path = RunDir(out / str(r.get("dir"))).train_probe(0)
        if e is None or e in cats or not path.is_file():
            continue
        try:
            cats[e] = _base_categories(path)
            files[e] = str(path.relative_to(out))
        except (ValueError, OSError) as exc:
            log.warning("exemplar agreement: %s skipped (%s)", path, exc)
    pairs = []
    for x, y in combinations(sorted(cats), 2):
        agree = category_agreement(cats[x], cats[y])
        if agree["items"]:
            pairs.append({"a": x, "b": y, **{k: v for k, v in agree.items() if k != "table"}})
    if not pairs:
        return None
    ups = [p[k] for p in pairs for k in ("up", "down")]  # b -> a moving up is a -> b's "down"
    return {"files": files, "pairs": pairs, "same": mean_ci([p["same"] for p in pairs])["mean"],
            "chance_up": mean_ci(ups)["mean"], "chance_up_range": [min(ups), max(ups)]}


def aggregate(summaries: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]],
              strategies: Sequence[str], seeds: Sequence[int],
              exemplar_seeds: Sequence[int] | None = None) -> dict[str, Any]:
    first = summaries[0] if summaries else {}
    per_run = []
    for r, s in zip(runs, summaries):
        per_run.append({**r, "test_accuracy": _get(s, "test_accuracy", "overall"), "acquired": s.get("acquired"),
                        "forgotten": s.get("forgotten"), "retention": s.get("retention"),
                        "highly_known_after": _get(s, "highly_known", "after"), "n_train_items": s.get("n_train_items"),
                        "stages_trained": [st.get("n_train") for st in s.get("stages") or []]})
    return {
        "model": first.get("model"), "data": first.get("data"),
        "strategies_order": list(strategies), "seeds": list(seeds),
        "exemplar_seeds": sorted({s.get("exemplar_seed") for s in summaries if s.get("exemplar_seed") is not None})
        if exemplar_seeds is None else list(exemplar_seeds),
        "categories_order": list(CATEGORIES),
        "strategies": {st: aggregate_strategy([s for s in summaries if s.get("strategy") == st]) for st in strategies},
        "headline": headline(summaries),
        "by_exemplar_seed": by_exemplar_seed(summaries, strategies),
        "paired": paired(summaries),
        "power": POWER,
        "noise": noise_control(summaries),
        "runs": per_run,
        "runs_wall_s": round(sum(float(s.get("wall_s") or 0) for s in summaries), 1),
    }
