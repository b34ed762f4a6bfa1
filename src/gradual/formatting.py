"""Numbers as people read them, for every output (terminal tables, comparison.md, report.html): one
definition of how a share, an interval or a duration is written.

Run as: imported by gradual.console, gradual.report and gradual.compare; no command of its own.
"""

from __future__ import annotations

from typing import Any, Mapping


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_pct(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fmt_ci(ci: Mapping[str, Any] | None, digits: int = 3, pct: bool = False) -> str:
    """`mean [lo, hi]` of a mean_ci dict; just the mean when there is one value."""
    if not ci or ci.get("mean") is None:
        return "–"
    f = (lambda v: fmt_pct(v, max(digits - 2, 0))) if pct else (lambda v: fmt_num(float(v), digits))
    if ci.get("n", 0) <= 1 or ci.get("lo") is None:
        return f(ci["mean"])
    return f"{f(ci['mean'])} [{f(ci['lo'])}, {f(ci['hi'])}]"


def fmt_seconds(s: Any) -> str:
    if s is None:
        return "–"
    s = float(s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.2f}h"


def fmt_signed(x: float, digits: int = 1, pct: bool = False) -> str:
    return f"{100 * x:+.{digits}f}%" if pct else f"{x:+.{digits}f}"


def fmt_diff(ci: Mapping[str, Any] | None, digits: int = 1, pct: bool = False) -> str:
    """`+3.3 [-10.3, +17.0]`: a difference and its 95% interval, every bound signed (a difference's
    sign is the finding; fmt_ci writes means, which need none)."""
    if not ci or ci.get("mean") is None:
        return "–"
    text = fmt_signed(ci["mean"], digits, pct)
    if ci.get("n", 0) > 1 and ci.get("lo") is not None:
        text += f" [{fmt_signed(ci['lo'], digits, pct)}, {fmt_signed(ci['hi'], digits, pct)}]"
    return text


def fmt_paired(ci: Mapping[str, Any] | None, digits: int = 1, pct: bool = False) -> str:
    """`+3.3 [-10.3, +17.0] (±25.1)`: fmt_diff, then the smallest true difference the compare detects
    at its power (gradual.compare._with_power's `detectable`)."""
    text = fmt_diff(ci, digits, pct)
    if ci and ci.get("mean") is not None and ci.get("detectable") is not None:
        text += f" (±{fmt_signed(ci['detectable'], digits, pct)[1:]})"
    return text


def power_sentence(ci: Mapping[str, Any] | None, power: float = 0.8, pct: bool = False) -> str:
    """What a paired comparison could have detected, in words: how "not significant" is to be read."""
    mdd = (ci or {}).get("detectable")
    if mdd is None:
        return "Too few pairs for a power statement (it needs at least 2)."
    n = int(ci.get("n") or 0)  # type: ignore[union-attr]
    text = (f"With {n} pairs this compare detects a true difference of "
            f"{fmt_signed(mdd, 1, pct)[1:]} or more with {round(100 * power)}% power (two-sided, 5%).")
    if n < FEW_PAIRS:
        # Measured on the 1,000-item compare: three near-equal differences gave 0.3%, a fourth made it 7.7%.
        text += " With so few pairs their spread, and so this figure, is itself uncertain."
    return text


# Below this many pairs the power figure rests on a spread estimated from a handful of differences.
FEW_PAIRS = 5


def paired_note(power: float = 0.8) -> str:
    """How to read a table of paired differences (comparison.md and the report)."""
    return ("A - B over runs paired by exemplar seed (the base categories) and training seed: mean [95% interval], "
            "then in parentheses the smallest true difference this compare detects with "
            f"{round(100 * power)}% power (two-sided, 5%). An interval that includes 0 reads as "
            "\"no effect larger than that figure\", not as \"no effect\".")


def partial_text(c: Mapping[str, Any]) -> str:
    """`6 of 50 planned runs (missing: a, b, ...)` for a comparison of the runs finished so far
    (`gradual compare --finished-only`); the whole list is in comparison.json's `missing_runs`."""
    missing = list(c.get("missing_runs") or [])
    planned = int(c.get("planned_runs") or 0)
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return f"{planned - len(missing)} of {planned} planned runs (missing: {shown})"


def compare_time_text(c: Mapping[str, Any]) -> str:
    """How long a compare took; a `--finished-only` comparison ran nothing, so its own seconds would
    read as a (false) speed figure: it names the time its runs took instead."""
    runs = fmt_seconds(c.get("runs_wall_s"))
    if c.get("finished_only"):
        return f"none (--finished-only ran nothing; sum of the finished runs' times: {runs})"
    return f"{fmt_seconds(c.get('wall_s'))} (sum of run times: {runs})"


def count_text(n: int, distinct: int | None, what: str, short: bool = False) -> str:
    """`6`, or `6 (3 trainings)` when only `distinct` of the n runs (or pairs) are independent: a
    PROBE_FREE strategy under several exemplar seeds trains one model per training seed, and intervals
    count the independent ones (gradual.compare._per_training). `short` (a narrow terminal) writes `6*`,
    with trainings_note printed below the table."""
    if distinct is None or distinct == n:
        return str(n)
    return f"{n}*" if short else f"{n} ({distinct} {what.removesuffix('s') if distinct == 1 else what})"


def runs_text(s: Mapping[str, Any], short: bool = False) -> str:
    """A strategy's runs (compare.aggregate_strategy: n_runs, n_trainings)."""
    return count_text(int(s.get("n_runs") or 0), s.get("n_trainings"), "trainings", short)


def pairs_text(p: Mapping[str, Any]) -> str:
    """A paired comparison's pairs (compare.paired: n, n_independent)."""
    return count_text(int(p.get("n") or 0), p.get("n_independent"), "independent")


def trainings_note(c: Mapping[str, Any]) -> str:
    """Why some run counts carry "(k trainings)", for comparison.md, the report and the terminal; empty
    when none do."""
    from gradual.strategies import PROBE_FREE

    names = [n for n, s in (c.get("strategies") or {}).items()
             if n in PROBE_FREE and s.get("n_trainings") not in (None, s.get("n_runs"))]
    if not names:
        return ""
    one = len(names) == 1
    who = ", ".join(f'"{n}"' for n in names)  # quoted: "the intervals of all" would read as English
    return (f"{who} {'reads' if one else 'read'} no probe, so one training seed trains the same model under every "
            "exemplar seed; only the probes (before and after training) differ. Those runs are averaged per "
            f"training first, so the intervals of {who}, and of the paired comparisons with {'it' if one else 'them'}, "
            "are over distinct trainings; they leave out the spread between base categorizations that the "
            "other strategies' intervals include.")


def _count(x: Any) -> str:
    """An item count, or a mean of counts over exemplar-seed pairs: `32`, `38.5`."""
    return "–" if x is None else f"{float(x):.1f}".removesuffix(".0")


def exemplar_noise_text(a: Mapping[str, Any]) -> str:
    """compare.exemplar_agreement in words: a yardstick for stage-2 selection."""
    pairs = a.get("pairs") or []
    lo, hi = a.get("chance_up_range") or [None, None]
    spread = "" if lo == hi else f" ({_count(lo)} to {_count(hi)} by pair and direction)"
    which = ", ".join(f"{p['a']} and {p['b']}" for p in pairs)
    return (f"Base probes under different exemplar seeds ({which}; the base model, no training) give the same "
            f"category to {fmt_pct(a.get('same'))} of train items{' on average' if len(pairs) > 1 else ''}; items moving "
            f"up from WeaklyKnown/Unknown to MaybeKnown/HighlyKnown by chance alone: {_count(a.get('chance_up'))}{spread}. "
            "Stage-2 selection of items that \"moved up\" after stage 1 (re-probed with the "
            "same exemplars) says little about learning unless it is well above that.")


BY_EXEMPLAR_NOTE = ("Each base categorization (exemplar seed) on its own: means over its training seeds. The "
                    "strategy and category tables pool exemplar seeds, so their intervals include the spread "
                    "between base categorizations; this shows whether the categorizations agree. Each cell "
                    "rests on the few runs counted beside it, so its interval is wide and itself uncertain.")


def by_exemplar_table(c: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-exemplar-seed table (compare.by_exemplar_seed), for comparison.md and
    the report: one row per strategy with runs, test accuracy and HighlyKnown after under each base
    categorization, and a last row with the headline (relative HighlyKnown after, paired) within each."""
    blocks = list(c.get("by_exemplar_seed") or [])
    head = ["strategy"] + [f"{what} (exemplar seed {b['exemplar_seed']})" for b in blocks
                           for what in ("runs", "test accuracy", "HighlyKnown after")]
    names = [st for st in (c.get("strategies_order") or []) if any(st in b["strategies"] for b in blocks)]
    rows = []
    for st in names:
        cells = [st]
        for b in blocks:
            x = b["strategies"].get(st) or {}
            cells += [str(x.get("n_runs", 0)), fmt_ci(x.get("test_accuracy"), pct=True),
                      fmt_ci(x.get("highly_known_after"), 1)]
        rows.append(cells)
    if any(b.get("headline") for b in blocks):
        cells = ["headline: relative HighlyKnown after (pairs)"]
        for b in blocks:
            h = b.get("headline") or {}
            cells += [str(h.get("n", 0)), "", fmt_paired(h or None, pct=True)]
        rows.append(cells)
    return head, rows
