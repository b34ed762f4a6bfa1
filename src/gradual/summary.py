"""summary.json of a run: the one writer of its format, from a run's raw results.

Run as: called by `gradual run` (gradual.pipeline) when a run finishes; tests build crafted runs
through it too (tests/fake_runs.py), so the format has exactly one definition.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gradual.categories import CATEGORIES, HIGHLY
from gradual.metrics import acquired, category_counts, forgotten, retention, transitions


def build_summary(*, strategy: str, model: str, fingerprint: str | None, seed: int, data: str,
                  stages: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, str]],
                  test_eval: Mapping[str, Any], noise: Mapping[str, Any], wall: Mapping[str, Any]) -> dict[str, Any]:
    """The summary of one run.

    history[j]: every train item's category after stage j (history[0] = the base probe);
    test_eval: eval/test.json ({"accuracy", "n", "by_category", "hallucination_rate"});
    noise: the base probe summary's "noise" section; wall: {"wall_s", "steps_wall_s", "process_wall_s"}.
    """
    before, after = history[0], history[-1]
    return {
        "strategy": strategy, "model": model, "model_fingerprint": fingerprint, "seed": seed, "data": data,
        "stages": [dict(s) for s in stages],
        "categories": [{"stage": i, "counts": category_counts(h)} for i, h in enumerate(history)],
        "transitions": {"labels": list(CATEGORIES), "counts": transitions(before, after)},
        "acquired": acquired(before, after), "forgotten": forgotten(before, after),
        "retention": retention(before, after), "n_train_items": len(before),
        "highly_known": {"before": sum(c == HIGHLY for c in before.values()),
                         "after": sum(c == HIGHLY for c in after.values())},
        "test_accuracy": {"overall": test_eval["accuracy"], "n": test_eval["n"],
                          "by_category": test_eval["by_category"]},
        "hallucination_rate": test_eval.get("hallucination_rate"),
        "noise": {"flip_rate": noise.get("mean_flip_rate"), "changed_share": noise.get("changed_share"),
                  "repeats": noise.get("repeats", 0)},
        **wall,
    }


TIMINGS = ("wall_s", "steps_wall_s", "process_wall_s", "stage_cache")


def results_only(summary: Any) -> Any:
    """A summary without its timings and the stage cache's note: what training and probing produced,
    which two runs of the same config must share whether or not a stage came from the cache."""
    if isinstance(summary, Mapping):
        return {k: results_only(v) for k, v in summary.items() if k not in TIMINGS}
    if isinstance(summary, list):
        return [results_only(v) for v in summary]
    return summary
