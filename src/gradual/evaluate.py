"""Metrics, each defined once: category movement (transitions, acquired, forgotten, retention),
intervals over seeds, and greedy exact-match evaluation in the zero-shot fine-tune format.

Run as: gradual eval --model smollm2-135m --data data/world/test.jsonl --out eval.json

Category maps are `{item id: category}` (what `ProbeResult.categories()` returns). Movement
metrics count only ids present in both maps, so a probe of a subset never reads as forgetting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from gradual.data.items import Item

HIGHLY_KNOWN = "HighlyKnown"


def _categories() -> tuple[str, ...]:
    # Lazy: the probe package owns the spelling and order of the categories.
    from gradual.probe.slick import CATEGORIES

    return tuple(CATEGORIES)


def _shared(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return [i for i in before if i in after]


def transitions(before: Mapping[str, str], after: Mapping[str, str]) -> list[list[int]]:
    """4x4 counts: rows = category before, columns = category after, in CATEGORIES order."""
    cats = _categories()
    index = {c: k for k, c in enumerate(cats)}
    counts = [[0] * len(cats) for _ in cats]
    for i in _shared(before, after):
        b, a = before[i], after[i]
        if b not in index or a not in index:
            raise ValueError(f"item {i!r}: unknown category {b if b not in index else a!r}")
        counts[index[b]][index[a]] += 1
    return counts


def acquired(before: Mapping[str, str], after: Mapping[str, str]) -> int:
    """Items not HighlyKnown before that are HighlyKnown after."""
    return sum(1 for i in _shared(before, after) if before[i] != HIGHLY_KNOWN and after[i] == HIGHLY_KNOWN)


def forgotten(before: Mapping[str, str], after: Mapping[str, str]) -> int:
    """Items HighlyKnown before that are not HighlyKnown after."""
    return sum(1 for i in _shared(before, after) if before[i] == HIGHLY_KNOWN and after[i] != HIGHLY_KNOWN)


def retention(before: Mapping[str, str], after: Mapping[str, str]) -> float | None:
    """1 - forgotten / HighlyKnown before; None when nothing was HighlyKnown before."""
    known = sum(1 for i in _shared(before, after) if before[i] == HIGHLY_KNOWN)
    if known == 0:
        return None
    return 1.0 - forgotten(before, after) / known


def category_counts(cats: Mapping[str, str]) -> dict[str, int]:
    """Items per category; all four categories always present (zeros included)."""
    out = {c: 0 for c in _categories()}
    for c in cats.values():
        if c not in out:
            raise ValueError(f"unknown category {c!r}")
        out[c] += 1
    return out


# --- Student t quantile (scipy is not a dependency) -------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta (modified Lentz, Numerical Recipes)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbeta) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbeta) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of t_cdf by bisection (monotone, so 200 halvings reach machine precision)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def mean_ci(values: Sequence[float | None], level: float = 0.95,
            bounds: tuple[float, float] | None = None) -> dict[str, float | int | None]:
    """Mean and two-sided t-interval over `values` (None entries are dropped).

    Returns {"mean", "lo", "hi", "n", "sd"}; with one value the interval collapses to the mean
    (sd None), with none every number is None. `bounds` clips the interval to the values' range
    (e.g. (0, 1) for a proportion, which cannot exceed 100% however few the seeds).
    """
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "sd": None}
    mean = sum(xs) / n
    if n == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1, "sd": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return {"mean": mean, "lo": lo, "hi": hi, "n": n, "sd": sd}


# --- greedy evaluation -------------------------------------------------------------------------


@dataclass
class EvalResult:
    accuracy: float
    n: int
    by_category: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"n", "correct", "accuracy"}
    hallucination_rate: float | None = None  # base-Unknown items answered with a non-empty wrong answer
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_predictions:
            d.pop("predictions")
        return d


def score_predictions(predictions: list[dict[str, Any]], with_categories: bool) -> EvalResult:
    """Aggregate per-item rows ({correct, prediction, category}) into an EvalResult."""
    n = len(predictions)
    correct = sum(1 for p in predictions if p["correct"])
    by_cat: dict[str, dict[str, Any]] = {}
    halluc: float | None = None
    if with_categories:
        names = list(_categories())
        if any(p["category"] is None for p in predictions):
            names.append("Uncategorized")  # ids missing from the probe file: counted, not hidden
        for c in names:
            rows = [p for p in predictions if (p["category"] or "Uncategorized") == c]
            k = sum(1 for p in rows if p["correct"])
            by_cat[c] = {"n": len(rows), "correct": k, "accuracy": k / len(rows) if rows else None}
        unknown = [p for p in predictions if p["category"] == "Unknown"]
        if unknown:
            # A confident wrong answer, not an abstention: the prediction is non-empty and wrong.
            halluc = sum(1 for p in unknown if p["prediction"].strip() and not p["correct"]) / len(unknown)
    return EvalResult(accuracy=correct / n if n else 0.0, n=n, by_category=by_cat,
                      hallucination_rate=halluc, predictions=predictions)


def evaluate_items(
    lm: Any,
    items: list[Item],
    categories: Mapping[str, str] | None = None,
    *,
    chat: bool = False,
    batch_size: int = 32,
    max_new_tokens: int = 16,
    progress: bool = True,
) -> EvalResult:
    """Greedy exact match of `lm` (a LoadedModel) on `items`, zero-shot in the fine-tune format."""
    from gradual.answers import is_correct
    from gradual.generate import greedy_generate
    from gradual.prompts import FinetuneFormat

    fmt = FinetuneFormat(chat)
    prompts = [fmt.prompt(it.question, lm.tokenizer) for it in items]
    # Batches of similar length keep padding low; each batch is one progress step.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: dict[int, str] = {}
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]

    def run(batch: list[int]) -> None:
        gen = greedy_generate(lm.model, lm.tokenizer, [prompts[i] for i in batch],
                              max_new_tokens=max_new_tokens, batch_size=batch_size)
        outputs.update(zip(batch, gen))

    if progress and batches:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=True) as bar:
            task = bar.add_task("eval", total=len(items))
            for b in batches:
                run(b)
                bar.advance(task, len(b))
    else:
        for b in batches:
            run(b)

    preds = []
    for k, it in enumerate(items):
        pred = outputs[k]
        preds.append({"id": it.id, "question": it.question, "prediction": pred, "answers": list(it.answers),
                      "correct": bool(is_correct(pred, it.answers)),
                      "category": categories.get(it.id) if categories is not None else None})
    return score_predictions(preds, with_categories=categories is not None)


# --- the `gradual eval` flow (the command only parses flags and prints) --------------------------


def load_categories(path: str | Path) -> dict[str, str]:
    """{id: category} from a probe JSONL (`gradual probe` output, or any JSONL with id and category).

    Only the two fields are read, so a hand-made or older probe file works too; each line is
    checked, and errors name the file and line.
    """
    from gradual.data.items import iter_json_lines
    from gradual.errors import UserError, where

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--categories: {p}: no such probe file")
    known = set(_categories())
    out: dict[str, str] = {}
    for lineno, row in iter_json_lines(p):
        if not isinstance(row, dict) or "id" not in row or "category" not in row:
            raise UserError(f"{where(p, lineno)}: expected an object with 'id' and 'category'")
        if row["category"] not in known:
            raise UserError(f"{where(p, lineno)}: unknown category {row['category']!r} (known: {', '.join(sorted(known))})")
        out[str(row["id"])] = row["category"]
    if not out:
        raise UserError(f"{p}: no rows (empty probe file)")
    return out


def apply_adapter(lm: Any, adapter: str | Path) -> Any:
    """Load a PEFT adapter onto `lm` and merge it (plain weights decode faster; eval never trains)."""
    from gradual.errors import UserError

    a = Path(adapter)
    if not (a / "adapter_config.json").is_file():
        raise UserError(f"--adapter: {a}: not a PEFT adapter folder (no adapter_config.json)")
    from peft import PeftModel

    model = PeftModel.from_pretrained(lm.model, str(a))
    lm.model = model.merge_and_unload().to(lm.placement.device).eval()
    return lm


def evaluate_file(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    adapter: str | Path | None = None,
    categories: str | Path | None = None,
    chat: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a model (plus adapter) on an items file; write OUT.json and OUT.predictions.jsonl.

    Inputs are checked before the model loads, so a typo costs no loading time.
    """
    from gradual.atomic import write_json, write_jsonl
    from gradual.data.items import read_items
    from gradual.errors import UserError
    from gradual.models import load_model

    data_p, out_p = Path(data), Path(out)
    if not data_p.is_file():
        raise UserError(f"--data: {data_p}: no such file")
    if out_p.suffix != ".json":
        raise UserError(f"--out: {out_p}: expected a .json path")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise UserError(f"--adapter: {adapter}: not a PEFT adapter folder (no adapter_config.json)")
    items = read_items(data_p)
    cats = load_categories(categories) if categories is not None else None
    lm = load_model(model, device, dtype)
    if adapter is not None:
        apply_adapter(lm, adapter)
    result = evaluate_items(lm, items, cats, chat=chat, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, progress=progress)
    summary = {"model": model, "adapter": str(adapter) if adapter is not None else None, "data": str(data_p),
               "categories": str(categories) if categories is not None else None, "chat": chat,
               **result.to_dict()}
    pred_path = predictions_path(out_p)
    write_jsonl(pred_path, result.predictions)
    write_json(out_p, summary)
    return summary


def predictions_path(out: Path) -> Path:
    """OUT.json -> OUT.predictions.jsonl, beside it (the lm-eval-harness habit)."""
    return out.with_name(out.name.removesuffix(".json") + ".predictions.jsonl")
