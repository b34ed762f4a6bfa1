"""The HTML report: one self-contained report.html for a run folder or a compare folder.

Run as: gradual report runs/demo        (or a compare folder: gradual report runs/compare)

Everything is inline (CSS in a <style>, figures as <svg>), so the file opens offline, can be mailed,
and never fetches anything. Each figure sits in an element with class "chart" and a data-chart
name, which the tests use to check that every chart is drawn.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from gradual.atomic import read_jsonl, write_text
from gradual.categories import CATEGORIES
from gradual.errors import UserError
from gradual.rundir import REPORT, CompareDir, RunDir



def write_report(path: str | Path) -> Path:
    """Render DIR/report.html for a run folder (summary.json) or a compare folder (comparison.json)."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    if CompareDir(folder).comparison_json.is_file():
        ctx = compare_context(folder)
    elif RunDir(folder).summary.is_file():
        ctx = run_context(folder)
    else:
        raise UserError(f"{folder}: neither a run folder (summary.json) nor a compare folder (comparison.json)")
    out = folder / REPORT
    write_text(out, render(ctx))
    return out


def render(ctx: Mapping[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    return env.get_template("template.html.j2").render(**ctx)


def _load(p: Path) -> dict[str, Any]:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: malformed JSON ({exc})") from None


def _now() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def _chart(name: str, title: str, svg: str, caption: str) -> dict[str, Any]:
    from markupsafe import Markup

    return {"name": name, "title": title, "svg": Markup(svg), "caption": caption}


def stage_metrics(run_dir: Path, summary: Mapping[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(stage name, metrics rows) for every stage that logged epochs."""
    out = []
    for i, st in enumerate(summary.get("stages") or [], start=1):
        k = st.get("stage", i)
        p = RunDir(run_dir).stage_dir(k).metrics
        if p.is_file():
            try:
                rows = [r for r in read_jsonl(p) if isinstance(r, dict)]
            except (json.JSONDecodeError, UnicodeDecodeError):
                rows = []
            if rows:
                name = str(st.get("name") or "")
                out.append((f"stage {k}" + (f" · {name}" if name and name != f"stage{k}" else ""), rows))
    return out


def _levels(categories: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, float]]]:
    return [("base" if c.get("stage") == 0 else f"stage {c.get('stage')}", dict(c.get("counts") or {}))
            for c in categories]


NOISE_TEXT = ("Share of train items whose category changes when the base model is probed again with fresh "
              "exemplars and no training. Transitions off the diagonal at about this rate are chance.")


# --- run folder ------------------------------------------------------------------------------------


def run_context(run_dir: Path) -> dict[str, Any]:
    from gradual.report import plots
    from gradual.formatting import fmt_num, fmt_pct, fmt_seconds

    s = _load(RunDir(run_dir).summary)
    charts: list[dict[str, Any]] = []
    cats = s.get("categories") or []
    charts.append(_chart(
        "categories", "Train items by category after each stage",
        plots.category_bars({s.get("strategy", "run"): _levels(cats)}) if cats else plots.empty("no probe results"),
        "Each bar is the whole train split, probed with the model after that stage (base = before any training). "
        "Growth of the dark blue HighlyKnown segment is knowledge the model answers reliably."))
    trans = s.get("transitions") or {}
    labels = trans.get("labels") or list(CATEGORIES)
    charts.append(_chart(
        "transitions", "Base → final categories",
        plots.transition_heatmaps({"train items": trans["counts"]}, labels) if trans.get("counts") else plots.empty("no transitions"),
        "Rows: category under the base model; columns: category after the last stage. Each cell shows the item "
        "count and its share of the row; the diagonal is unchanged items, the column HighlyKnown off the diagonal "
        "is knowledge acquired, the row HighlyKnown off the diagonal is forgotten."))
    ta = s.get("test_accuracy") or {}
    by = ta.get("by_category") or {}
    series = {s.get("strategy", "run"): {**{c: {"mean": (by.get(c) or {}).get("accuracy")} for c in by},
                                         "overall": {"mean": ta.get("overall")}}}
    groups = ["overall"] + [c for c in CATEGORIES if c in by] + [c for c in by if c not in CATEGORIES]
    charts.append(_chart(
        "test-accuracy", "Test accuracy by base category",
        plots.grouped_bars(series, groups, "test accuracy (%)") if ta else plots.empty("no test evaluation"),
        "Greedy exact match on the held-out test split, overall and split by each test item's category under the "
        "base model. A single run: no interval (see a compare report for error bars over seeds)."))
    curves = stage_metrics(run_dir, s)
    charts.append(_chart(
        "training", "Training curves",
        plots.training_curves([(name, [("", rows)]) for name, rows in curves]) if curves
        else plots.empty("no stage trained (no metrics.jsonl)"),
        "Per stage: training loss per epoch (solid, left axis) and dev accuracy (dashed, right axis). The red "
        "ring and line mark the best dev epoch, whose adapter the run kept (early stopping on dev, never test)."))
    hk = s.get("highly_known") or {}
    n_train = s.get("n_train_items")
    noise = s.get("noise") or {}
    cards = [
        ("test accuracy", fmt_pct(ta.get("overall")), f"n = {fmt_num(ta.get('n'))} test items"),
        ("HighlyKnown train items", f"{fmt_num(hk.get('before'))} → {fmt_num(hk.get('after'))}",
         f"{fmt_pct(hk['after'] / n_train)} of {n_train} after" if n_train and hk.get("after") is not None else ""),
        ("acquired", fmt_num(s.get("acquired")), "not HighlyKnown before, HighlyKnown after"),
        ("forgotten", fmt_num(s.get("forgotten")), f"retention {fmt_pct(s.get('retention'))}"),
        ("hallucination", fmt_pct(s.get("hallucination_rate")), "wrong answers on base-Unknown test items"),
        ("chance flip rate", fmt_pct(noise.get("flip_rate")), f"{noise.get('repeats', 0)} re-probe(s) of the base model"),
    ]
    stage_rows = [[str(st.get("name", "")), fmt_num(st.get("n_train")), fmt_num(st.get("n_replay")),
                   ", ".join(f"{k} {v}" for k, v in (st.get("composition") or {}).items() if v) or "–",
                   fmt_num(st.get("best_epoch")), fmt_pct(st.get("dev_accuracy")), fmt_seconds(st.get("wall_s")),
                   str(st.get("note") or "")] for st in s.get("stages") or []]
    cat_rows = []
    for c in cats:
        counts = c.get("counts") or {}
        tot = sum(counts.values()) or 1
        cat_rows.append([_levels([c])[0][0]] + [f"{counts.get(k, 0)} ({100 * counts.get(k, 0) / tot:.0f}%)"
                                                for k in CATEGORIES])
    acc_rows = [[c, fmt_num((by[c] or {}).get("n")), fmt_num((by[c] or {}).get("correct")),
                 fmt_pct((by[c] or {}).get("accuracy"))] for c in groups[1:]]
    tables = [
        {"title": "Stages", "head": ["stage", "trained", "replay", "composition (base categories)", "best epoch",
                                     "dev accuracy", "time", "note"], "rows": stage_rows},
        {"title": "Train items by category", "head": ["after", *CATEGORIES], "rows": cat_rows},
        {"title": "Test accuracy by base category", "head": ["category", "n", "correct", "accuracy"], "rows": acc_rows},
    ]
    return {
        "kind": "run",
        "title": f"gradual run · {s.get('strategy', '?')} · seed {s.get('seed', '?')}",
        "meta": [("model", s.get("model")), ("data", s.get("data")), ("strategy", s.get("strategy")),
                 ("seed", s.get("seed")), ("fingerprint", s.get("model_fingerprint")),
                 ("run time", fmt_seconds(s.get("wall_s"))), ("report written", _now())],
        "cards": cards, "charts": charts, "tables": [t for t in tables if t["rows"]],
        "noise": {"value": fmt_pct(noise.get("flip_rate")), "text": NOISE_TEXT}, "headline": None, "links": [],
    }


# --- compare folder ------------------------------------------------------------------------------


def _compare_charts(folder: Path, c: dict[str, Any], strategies: dict[str, Any]) -> list[dict[str, Any]]:
    """The compare report's charts: accuracy by category, knowledge, categories per stage, transitions,
    and each strategy's training curves."""
    from gradual.report import plots

    charts: list[dict[str, Any]] = []
    acc_series = {name: {"overall": s.get("test_accuracy") or {}, **(s.get("test_accuracy_by_category") or {})}
                  for name, s in strategies.items()}
    groups = ["overall", *CATEGORIES]
    charts.append(_chart(
        "accuracy-by-category", "Test accuracy by base category, per strategy",
        plots.grouped_bars(acc_series, groups, "test accuracy (%)") if strategies else plots.empty("no runs"),
        "Bars: mean over seeds of greedy exact match on the held-out test split, overall and by each item's "
        "category under the base model. Whiskers: 95% t-interval over seeds; bars whose whiskers overlap are "
        "not clearly different."))
    know = {name: {"HighlyKnown after": s.get("highly_known_after") or {}, "acquired": s.get("acquired") or {},
                   "forgotten": s.get("forgotten") or {}} for name, s in strategies.items()}
    charts.append(_chart(
        "knowledge", "Knowledge acquired and forgotten (train items)",
        plots.grouped_bars(know, ["HighlyKnown after", "acquired", "forgotten"], "train items", percent=False,
                           ncols_panels=[["HighlyKnown after"], ["acquired", "forgotten"]])
        if strategies else plots.empty("no runs"),
        "Left: train items HighlyKnown after training (the paper's headline compares gradual with maybeknown "
        "here). Right: items that became HighlyKnown (acquired) and HighlyKnown items lost (forgotten). Mean over "
        "seeds with 95% intervals."))
    levels = {name: _levels(s.get("categories") or []) for name, s in strategies.items() if s.get("categories")}
    charts.append(_chart(
        "categories", "Train items by category after each stage (mean over runs)",
        plots.category_bars(levels) if levels else plots.empty("no probe results"),
        "One panel per strategy; each bar is the whole train split probed after that stage (base = before "
        "training), averaged over seeds. A run that stopped early keeps its last distribution."))
    mats = {name: s["transitions_mean"] for name, s in strategies.items() if s.get("transitions_mean")}
    charts.append(_chart(
        "transitions", "Base → final categories (mean over runs)",
        plots.transition_heatmaps(mats, list(CATEGORIES)) if mats else plots.empty("no transitions"),
        "Rows: category under the base model; columns: after the last stage; cells: mean item count and share "
        "of the row. Compare the off-diagonal shares with the chance flip rate beside."))
    for name in strategies:
        panels: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
        for r in c.get("runs") or []:
            rdir = RunDir(folder / r.get("dir", ""))
            if r.get("strategy") != name or not rdir.summary.is_file():
                continue
            for stage_name, rows in stage_metrics(rdir.root, _load(rdir.summary)):
                panels.setdefault(stage_name, []).append((f"seed {r.get('seed')}", rows))
        if panels:
            charts.append(_chart(
                f"training-{name}", f"Training curves · {name}", plots.training_curves(list(panels.items())),
                "Per stage, one color per seed: training loss (solid, left axis) and dev accuracy (dashed, right "
                "axis); rings mark each seed's best dev epoch, the adapter kept."))
    return charts


def _paired_table(c: dict[str, Any]) -> dict[str, Any]:
    """Each paired comparison with its interval and the difference it could have detected (issue 22:
    "not reproduced" must be readable as "no effect larger than X")."""
    from gradual.formatting import fmt_paired, paired_note, pairs_text

    return {"title": "Paired comparisons (A - B)", "top": True, "note": paired_note(c.get("power") or 0.8),
            "head": ["A - B", "pairs", "HighlyKnown after (items)", "relative HighlyKnown", "test accuracy (points)",
                     "forgotten (items)", "retention (points)"],
            "rows": [[f"{p['a']} - {p['b']}", pairs_text(p), fmt_paired(p.get("highly_known_after")),
                      fmt_paired(p.get("relative_highly_known"), pct=True), fmt_paired(p.get("test_accuracy_points")),
                      fmt_paired(p.get("forgotten")), fmt_paired(p.get("retention_points"))]
                     for p in c.get("paired") or []]}


def _by_exemplar(c: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-exemplar-seed table, when the compare repeated the base categorization."""
    from gradual.formatting import BY_EXEMPLAR_NOTE, by_exemplar_table

    if not c.get("by_exemplar_seed"):
        return []
    head, rows = by_exemplar_table(c)
    return [{"title": "By exemplar seed", "note": BY_EXEMPLAR_NOTE, "head": head, "rows": rows}]


def _compare_tables(c: dict[str, Any], strategies: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The compare report's tables: strategies, accuracy by base category, runs."""
    from gradual.formatting import fmt_ci, fmt_pct, fmt_seconds, runs_text, trainings_note

    table = {"title": "Strategies (mean [95% interval] over runs)", "top": True, "note": trainings_note(c),
             "head": ["strategy", "runs", "test accuracy", "acquired", "forgotten", "retention", "HighlyKnown after",
                      "HK after / train", "items trained per stage", "hallucination", "wall time"],
             "rows": [[name, runs_text(s), fmt_ci(s.get("test_accuracy"), pct=True), fmt_ci(s.get("acquired"), 1),
                       fmt_ci(s.get("forgotten"), 1), fmt_ci(s.get("retention"), pct=True),
                       fmt_ci(s.get("highly_known_after"), 1), fmt_ci(s.get("highly_known_after_share"), pct=True),
                       " / ".join(fmt_ci(st.get("n_train"), 0) for st in s.get("stages") or []) or "–",
                       fmt_ci(s.get("hallucination_rate"), pct=True), fmt_seconds((s.get("wall_s") or {}).get("mean"))]
                      for name, s in strategies.items()]}
    by_cat = {"title": "Test accuracy by base category", "head": ["strategy", *CATEGORIES],
              "rows": [[name, *(fmt_ci((s.get("test_accuracy_by_category") or {}).get(k), pct=True) for k in CATEGORIES)]
                       for name, s in strategies.items()]}
    runs = {"title": "Runs", "head": ["run", "test accuracy", "acquired", "forgotten", "retention", "HK after",
                                      "trained per stage", "reused", "time"],
            "rows": [[r.get("name"), fmt_pct(r.get("test_accuracy")), str(r.get("acquired")), str(r.get("forgotten")),
                      fmt_pct(r.get("retention")), str(r.get("highly_known_after")),
                      " / ".join(map(str, r.get("stages_trained") or [])) or "–", "yes" if r.get("reused") else "no",
                      fmt_seconds(r.get("wall_s"))] for r in c.get("runs") or []]}
    return table, by_cat, runs


def compare_context(folder: Path) -> dict[str, Any]:
    """The template's context for a compare folder's report."""
    from gradual.formatting import compare_time_text, exemplar_noise_text, fmt_ci, fmt_diff, partial_text, power_sentence

    c = _load(CompareDir(folder).comparison_json)
    strategies: dict[str, Any] = c.get("strategies") or {}
    charts = _compare_charts(folder, c, strategies)
    table, by_cat, runs = _compare_tables(c, strategies)
    h = c.get("headline")
    head = None
    if h:
        head = {"value": fmt_diff(h.get("relative_increase"), pct=True),
                "text": "Relative increase in train items HighlyKnown after training, gradual over maybeknown, "
                        f"paired by exemplar seed and training seed (mean [95% interval] over "
                        f"{len(h.get('per_seed') or [])} pairs; "
                        f"absolute difference {fmt_diff(h.get('difference'))} items). The paper reports about +24%. "
                        + power_sentence(h.get("relative_increase"), c.get("power") or 0.8, pct=True)}
    noise = c.get("noise") or {}
    links = [(r.get("name"), f"{r.get('dir')}/{REPORT}") for r in c.get("runs") or []
             if RunDir(folder / str(r.get("dir"))).report.is_file()]
    return {
        "kind": "compare",
        "title": f"gradual compare · {', '.join(strategies)}",
        "meta": [("model", c.get("model")), ("data", c.get("data")), ("strategies", ", ".join(strategies)),
                 ("seeds", ", ".join(map(str, c.get("seeds") or []))),
                 *([("exemplar seeds", ", ".join(map(str, c["exemplar_seeds"])))] if len(c.get("exemplar_seeds") or []) > 1 else []),
                 *([("runs finished", partial_text(c))] if c.get("missing_runs") else []),
                 ("compare time", compare_time_text(c)),
                 ("command", c.get("command") or "–"), ("report written", _now())],
        "cards": [], "charts": charts,
        "tables": [table, *([_paired_table(c)] if c.get("paired") else []), *_by_exemplar(c), by_cat, runs],
        "noise": {"value": fmt_ci(noise.get("flip_rate"), pct=True),
                  "text": NOISE_TEXT + (" " + exemplar_noise_text(noise["between_exemplar_seeds"])
                                        if noise.get("between_exemplar_seeds") else "")},
        "headline": head, "links": links,
    }
