"""comparison.md: a strategy comparison as Markdown tables, for READMEs, notes and pull requests.

Run as: written by `gradual compare` beside comparison.json (gradual.compare.run_compare).
"""

from __future__ import annotations

from typing import Any, Mapping

from gradual.categories import CATEGORIES
from gradual.formatting import (BY_EXEMPLAR_NOTE, by_exemplar_table, compare_time_text, exemplar_noise_text, fmt_ci,
                                fmt_diff, fmt_paired,
                                fmt_pct, fmt_seconds, fmt_signed, paired_note, pairs_text, partial_text,
                                power_sentence, runs_text, trainings_note)


def comparison_markdown(c: Mapping[str, Any]) -> str:

    lines = [f"# Strategy comparison: {c.get('model')} on {c.get('data')}", ""]
    if c.get("command"):
        lines += [f"Command: `{c['command']}`", ""]
    ex = c.get("exemplar_seeds") or []
    lines += [f"Seeds: {', '.join(map(str, c.get('seeds', [])))}"
              + (f"; exemplar seeds (probe.seed, the base categorization): {', '.join(map(str, ex))}" if len(ex) > 1 else "")
              + ". Every cell is the mean over runs with its 95% "
              f"t-interval in brackets. Counts are train items; test accuracy is greedy exact match on the "
              f"held-out test split. Wall time of this compare: {compare_time_text(c)}.", ""]
    if c.get("missing_runs"):
        lines += [f"**Partial:** {partial_text(c)}. Means are over the runs that finished; paired comparisons "
                  "use only the pairs whose two runs both finished.", ""]
    lines += ["| strategy | runs | test accuracy | acquired | forgotten | retention | HighlyKnown after | "
              "HK after / train items | items trained per stage | wall time |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for name, s in (c.get("strategies") or {}).items():
        per_stage = " / ".join(fmt_ci(st["n_train"], 0) for st in s.get("stages") or []) or "–"
        lines.append(f"| {name} | {runs_text(s)} | {fmt_ci(s['test_accuracy'], pct=True)} | {fmt_ci(s['acquired'], 1)} | "
                     f"{fmt_ci(s['forgotten'], 1)} | {fmt_ci(s['retention'], pct=True)} | "
                     f"{fmt_ci(s['highly_known_after'], 1)} | {fmt_ci(s['highly_known_after_share'], pct=True)} | "
                     f"{per_stage} | {fmt_seconds((s.get('wall_s') or {}).get('mean'))} |")
    note = trainings_note(c)
    if note:
        lines += ["", note]
    lines += ["", "## Test accuracy by base category", "",
              "| strategy | " + " | ".join(CATEGORIES) + " | hallucination on Unknown |",
              "|---|" + "---:|" * (len(CATEGORIES) + 1)]
    for name, s in (c.get("strategies") or {}).items():
        by = s.get("test_accuracy_by_category") or {}
        lines.append(f"| {name} | " + " | ".join(fmt_ci(by.get(cat), pct=True) for cat in CATEGORIES)
                     + f" | {fmt_ci(s.get('hallucination_rate'), pct=True)} |")
    h = c.get("headline")
    lines += ["", "## Headline: knowledge acquired by the second stage", ""]
    if h:
        rel, dif = h["relative_increase"], h["difference"]
        lines.append(f"Relative increase in train items HighlyKnown after training, gradual over maybeknown "
                     f"(paired by exemplar seed and seed, n={rel.get('n')}): **{fmt_diff(rel, pct=True)}**; the paper "
                     f"reports about +24%. Absolute difference: {fmt_diff(dif)} items. {power_sentence(rel, c.get('power') or 0.8, pct=True)}")
        lines += ["", "| exemplar seed | seed | gradual | maybeknown | relative |", "|---:|---:|---:|---:|---:|"]
        for p in h["per_seed"]:
            lines.append(f"| {p.get('exemplar_seed', '–')} | {p['seed']} | {p['gradual']} | {p['maybeknown']} | "
                         f"{fmt_signed(p['relative'], pct=True) if p['relative'] is not None else '–'} |")
    else:
        lines.append("Not computed: it needs both `gradual` and `maybeknown` runs for at least one seed.")
    if c.get("by_exemplar_seed"):
        head, rows = by_exemplar_table(c)
        lines += ["", "## By exemplar seed", "", BY_EXEMPLAR_NOTE, "",
                  "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    if c.get("paired"):
        lines += ["", "## Paired comparisons", "", paired_note(c.get("power") or 0.8), "",
                  "| A - B | pairs | HighlyKnown after (items) | relative HighlyKnown | test accuracy (points) | "
                  "forgotten (items) | retention (points) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for p in c["paired"]:
            lines.append(f"| {p['a']} - {p['b']} | {pairs_text(p)} | {fmt_paired(p['highly_known_after'], 1)} | "
                         f"{fmt_paired(p['relative_highly_known'], pct=True)} | {fmt_paired(p['test_accuracy_points'], 1)} | "
                         f"{fmt_paired(p['forgotten'], 1)} | {fmt_paired(p['retention_points'], 1)} |")
    n = c.get("noise") or {}
    lines += ["", "## Noise control", ""]
    if n.get("flip_rate", {}).get("mean") is not None:
        lines.append(f"Re-probing the base model with fresh exemplar seeds ({n.get('repeats')} repeat(s)) flips "
                     f"{fmt_ci(n['flip_rate'], pct=True)} of train-item categories with no training at all. "
                     f"Category movements of that size are chance, not learning.")
    else:
        lines.append("No noise control in these runs (set `probe.repeat` >= 1 to measure chance category flips).")
    if n.get("between_exemplar_seeds"):
        lines += ["", exemplar_noise_text(n["between_exemplar_seeds"])]
    lines += ["", "## Runs", "", "| run | test accuracy | acquired | forgotten | retention | HK after | trained per stage | reused | wall time |",
              "|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in c.get("runs") or []:
        lines.append(f"| [{r['name']}]({r['dir']}/) | {fmt_pct(r.get('test_accuracy'))} | {r.get('acquired')} | "
                     f"{r.get('forgotten')} | {fmt_pct(r.get('retention'))} | {r.get('highly_known_after')} | "
                     f"{' / '.join(map(str, r.get('stages_trained') or [])) or '–'} | "
                     f"{'yes' if r.get('reused') else 'no'} | {fmt_seconds(r.get('wall_s'))} |")
    return "\n".join(lines) + "\n"
