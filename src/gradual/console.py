"""Rich tables for the terminal: a run's summary, an eval result, a strategy comparison.

Run as: used by `gradual run`, `gradual eval` and `gradual compare` for their final output.

Every function reads the JSON dicts those commands write (summary.json, OUT.json,
comparison.json) and tolerates missing keys, so an older or partial file still prints.

Everything reads well at 80 columns: free-text notes go below their table (in full; summary.json
has them too) instead of into a column that would wrap a word per line, and a table whose natural
width exceeds the console switches to a compact form rather than letting rich squeeze and
ellipsize its cells.
"""

from __future__ import annotations

from typing import Any, Mapping

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from gradual.categories import CATEGORIES, SHORT, ordered
from gradual.formatting import (fmt_ci, fmt_diff, fmt_num, fmt_pct, fmt_seconds, power_sentence, runs_text,
                                trainings_note)


def _fits(console: Console, table: Table) -> bool:
    """True when `table` renders at its natural width (no wrapped or ellipsized cells) on `console`."""
    # Measured against a huge width: a table clamps its own measurement to the width it is given.
    return Measurement.get(console, console.options.update_width(100_000), table).maximum <= console.width


def _notes(console: Console, notes: list[tuple[str, str]]) -> None:
    """Label / text lines below a table; long text wraps under its own column, not under the label."""
    if not notes:
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, text in notes:
        grid.add_row(label, text)
    console.print(grid)


def print_summary(summary: Mapping[str, Any], console: Console) -> None:
    """The final tables of `gradual run`: stages, categories per stage, and the headline numbers."""
    title = f"{summary.get('strategy', '?')} · {summary.get('model', '?')} · seed {summary.get('seed', '?')}"
    stages = summary.get("stages") or []
    if stages:
        t = Table(title=f"stages — {title}", title_justify="left")
        for col in ("stage", "trained", "replay", "composition", "best epoch", "dev acc", "time"):
            right = col in ("trained", "replay", "best epoch", "dev acc", "time")
            # Numbers never wrap; the composition may, at its commas, on a narrow console.
            t.add_column(col, justify="right" if right else "left", no_wrap=col != "composition")
        notes = []
        for st in stages:
            comp = st.get("composition") or {}
            comp_s = ", ".join(f"{SHORT.get(k, k)} {v}" for k, v in
                               ((k, comp[k]) for k in ordered(comp)) if v)
            t.add_row(str(st.get("name", "?")), fmt_num(st.get("n_train")), fmt_num(st.get("n_replay")), comp_s or "–",
                      fmt_num(st.get("best_epoch")), fmt_pct(st.get("dev_accuracy")), fmt_seconds(st.get("wall_s")))
            if st.get("note"):
                notes.append((str(st.get("name", "?")), str(st["note"])))
        console.print(t)
        _notes(console, notes)
    cats = summary.get("categories") or []
    if cats:
        t = Table(title="train items by category after each stage (stage 0 = base model)", title_justify="left")
        t.add_column("stage", justify="right")
        names = ordered({k for c in cats for k in (c.get("counts") or {})} or CATEGORIES)
        for n in names:
            t.add_column(n, justify="right")
        for c in cats:
            counts = c.get("counts") or {}
            total = sum(counts.values()) or 1
            t.add_row(str(c.get("stage")), *(f"{counts.get(n, 0)} ({100 * counts.get(n, 0) / total:.0f}%)" for n in names))
        console.print(t)
    t = Table(title="result", title_justify="left", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    hk = summary.get("highly_known") or {}
    n_train = summary.get("n_train_items")
    if hk:
        share = f" ({fmt_pct(hk.get('after') / n_train)} of {n_train})" if n_train and hk.get("after") is not None else ""
        t.add_row("HighlyKnown train items, before → after", f"{fmt_num(hk.get('before'))} → {fmt_num(hk.get('after'))}{share}")
    t.add_row("acquired (not HK → HK)", fmt_num(summary.get("acquired")))
    t.add_row("forgotten (HK → not HK)", fmt_num(summary.get("forgotten")))
    t.add_row("retention of HighlyKnown", fmt_pct(summary.get("retention")))
    ta = summary.get("test_accuracy") or {}
    if ta:
        t.add_row("test accuracy", f"{fmt_pct(ta.get('overall'))} (n={fmt_num(ta.get('n'))})")
        for cat in ordered(ta.get("by_category") or {}):
            v = ta["by_category"][cat]
            t.add_row(f"  on base-{cat}", f"{fmt_pct(v.get('accuracy'))} (n={fmt_num(v.get('n'))})")
    t.add_row("hallucination rate (base-Unknown test items)", fmt_pct(summary.get("hallucination_rate")))
    noise = summary.get("noise") or {}
    if noise.get("flip_rate") is not None:
        t.add_row("noise: chance category flip rate", f"{fmt_pct(noise['flip_rate'])} ({noise.get('repeats')} re-probes)")
    t.add_row("wall time", fmt_seconds(summary.get("wall_s")))
    console.print(t)


def print_eval(result: Mapping[str, Any], console: Console) -> None:
    """The table of `gradual eval`: overall and per-category accuracy, hallucination rate."""
    name = result.get("model", "?") + (f" + {result['adapter']}" if result.get("adapter") else "")
    t = Table(title=f"eval — {name} on {result.get('data', '?')}", title_justify="left")
    for col in ("items", "n", "correct", "accuracy"):
        t.add_column(col, justify="left" if col == "items" else "right")
    n = result.get("n", 0)
    t.add_row("all", str(n), str(round((result.get("accuracy") or 0) * n)), fmt_pct(result.get("accuracy")))
    for cat in ordered(result.get("by_category") or {}):
        v = result["by_category"][cat]
        t.add_row(f"base-{cat}", fmt_num(v.get("n")), fmt_num(v.get("correct")), fmt_pct(v.get("accuracy")))
    console.print(t)
    if result.get("hallucination_rate") is not None:
        console.print(f"hallucination rate on base-Unknown items: {fmt_pct(result['hallucination_rate'])}")


def fmt_ci_stacked(ci: Mapping[str, Any] | None, digits: int = 3, pct: bool = False) -> str:
    """`mean` over `±half-width` on a second line (fmt_ci's narrow form; the intervals are symmetric)."""
    if not ci or ci.get("mean") is None:
        return "–"
    f = (lambda v: fmt_pct(v, max(digits - 2, 0))) if pct else (lambda v: fmt_num(float(v), digits))
    if ci.get("n", 0) <= 1 or ci.get("lo") is None or ci.get("hi") is None:
        return f(ci["mean"])
    return f"{f(ci['mean'])}\n±{f((float(ci['hi']) - float(ci['lo'])) / 2)}"


def _per_stage(s: Mapping[str, Any], sep: str) -> str:
    means = [(st.get("n_train") or {}).get("mean") for st in s.get("stages") or []]
    return sep.join(fmt_num(m, 0) if m is not None else "–" for m in means) or "–"


def _comparison_table(comparison: Mapping[str, Any], narrow: bool) -> Table:
    """One row per strategy. The narrow form (for consoles under ~150 columns) stacks each interval
    under its mean as ± half-width, uses two-line headers, no vertical rules, and names the run count
    in the title when every strategy has the same, so it fits 80 columns without cut-off cells."""
    strategies = comparison.get("strategies") or {}
    seeds = comparison.get("seeds") or []
    runs = {runs_text(s, short=narrow) for s in strategies.values()}
    show_runs = not narrow or len(runs) > 1 or any("*" in r for r in runs)  # a "6*" stays in its column
    how = "mean [95% interval]"
    if narrow:
        n = runs.pop() if not show_runs else ""
        how = "mean, ± half the 95% interval below it" + ("" if show_runs else f", {n} run{'s' * (n != '1')} each")
    t = Table(title=f"strategies over seeds {', '.join(map(str, seeds))} — {how}", title_justify="left",
              **({"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True}
                 if narrow else {}))
    cols = [("strategy", "strategy"), ("runs", "runs"), ("test acc", "test\nacc"), ("acquired", "acquired"),
            ("forgotten", "forgotten"), ("retention", "retention"), ("HK after", "HK\nafter"),
            ("trained/stage", "trained\n/stage"), ("time", "time")]
    for wide_name, narrow_name in cols:
        if wide_name == "runs" and not show_runs:
            continue
        t.add_column(narrow_name if narrow else wide_name, justify="left" if wide_name == "strategy" else "right",
                     no_wrap=wide_name in ("strategy", "time"))
    ci = fmt_ci_stacked if narrow else fmt_ci
    for name, s in strategies.items():
        cells = [name, *([runs_text(s, short=narrow)] if show_runs else []), ci(s.get("test_accuracy"), pct=True),
                 ci(s.get("acquired"), 1), ci(s.get("forgotten"), 1), ci(s.get("retention"), pct=True),
                 ci(s.get("highly_known_after"), 1), _per_stage(s, "/" if narrow else " / "),
                 fmt_seconds((s.get("wall_s") or {}).get("mean"))]
        t.add_row(*cells)
    return t


def print_comparison(comparison: Mapping[str, Any], console: Console) -> None:
    """The table of `gradual compare`: one row per strategy, mean [95% interval] over seeds."""
    t = _comparison_table(comparison, narrow=False)
    narrow = not _fits(console, t)  # "45.1% [40.1%, 50.2%]" in five columns needs ~150 columns
    if narrow:
        t = _comparison_table(comparison, narrow=True)
    console.print(t)
    note = trainings_note(comparison)
    if note:  # the narrow table marks those counts "6*"
        console.print(("* " if narrow else "") + note, style="dim", markup=False)
    head = comparison.get("headline")
    if head and head.get("relative_increase"):
        console.print(f"[bold]headline[/]: HighlyKnown train items after training, gradual vs maybeknown: "
                      f"{fmt_diff(head['relative_increase'], pct=True)} (paper: about +24%). "
                      + power_sentence(head["relative_increase"], comparison.get("power") or 0.8, pct=True))
    noise = comparison.get("noise") or {}
    if noise.get("flip_rate") and noise["flip_rate"].get("mean") is not None:
        console.print(f"noise control: {fmt_ci(noise['flip_rate'], pct=True)} of base categories flip by chance "
                      "on a re-probe; smaller movements are not evidence")
