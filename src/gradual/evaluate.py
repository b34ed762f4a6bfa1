"""Greedy exact-match evaluation in the zero-shot fine-tune format, by category when given a probe.

Run as: gradual eval --model smollm2-135m --data data/world/test.jsonl --out eval.json

Movement metrics and intervals live in gradual.metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from gradual.categories import CATEGORIES, UNKNOWN
from gradual.config import EvalConfig
from gradual.data.items import Item

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
        names = list(CATEGORIES)
        if any(p["category"] is None for p in predictions):
            names.append("Uncategorized")  # ids missing from the probe file: counted, not hidden
        for c in names:
            rows = [p for p in predictions if (p["category"] or "Uncategorized") == c]
            k = sum(1 for p in rows if p["correct"])
            by_cat[c] = {"n": len(rows), "correct": k, "accuracy": k / len(rows) if rows else None}
        unknown = [p for p in predictions if p["category"] == UNKNOWN]
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
    batch_size: int = EvalConfig.batch_size,
    max_new_tokens: int = EvalConfig.max_new_tokens,
    progress: bool = True,
    backend: str = "hf",
) -> EvalResult:
    """Greedy exact match of `lm` (a LoadedModel) on `items`, zero-shot in the fine-tune format.

    backend "vllm": `lm` may be a gradual.lm.vllm_model.VLLMModel; answers come from the vLLM
    engine's greedy (the zero-shot prompt as the suffix, empty prefix, stop at the newline).

    Under a multi-process launch each rank generates for its shard (items[rank::world]) and every
    rank gets all predictions back in item order; greedy decoding makes them those of one process."""
    from gradual import distributed as dist
    from gradual.answers import is_correct
    from gradual.lm.hf import greedy_answers
    from gradual.prompts import FinetuneFormat

    fmt = FinetuneFormat(chat)
    mine = dist.shard(range(len(items)))  # this process's item indices (all of them in one process)
    prompts = {i: fmt.prompt(items[i].question, lm.tokenizer) for i in mine}
    from gradual.context import check_fits, context_window, token_lengths

    lengths = token_lengths(lm.tokenizer, [prompts[i] for i in mine])
    check_fits(((items[i].id, n + max_new_tokens) for i, n in zip(mine, lengths)),
               context_window(getattr(lm, "model", None)), "its prompt plus --max-new-tokens",
               "shorten the question or lower --max-new-tokens")
    # Batches of similar length keep padding low; each batch is one progress step.
    order = sorted(mine, key=lambda i: -len(prompts[i]))
    outputs: dict[int, str] = {}
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]

    from gradual.lm.backends import get_backend, make_engine

    # An engine that loads its own weights decodes through its greedy; in-process weights decode through
    # greedy_answers, with the gold answer as a draft.
    engine = make_engine(backend, lm, batch_size=batch_size, max_new_tokens=max_new_tokens) \
        if get_backend(backend).loads_weights else None

    def run(batch: list[int]) -> None:
        if engine is not None:
            gen = engine.greedy("", [prompts[i] for i in batch])
        else:
            # The gold answer as a draft: a right answer is read off the prompt pass (same predictions).
            gen = greedy_answers(lm.model, lm.tokenizer, [prompts[i] for i in batch],
                                 max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 drafts=[fmt.target(items[i].answers[0], lm.tokenizer) if items[i].answers else None
                                         for i in batch])
        outputs.update(zip(batch, gen))

    if progress and batches and dist.is_main():
        from rich.progress import TimeRemainingColumn

        from gradual.progress import progress_bar

        with progress_bar(TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task("eval", total=len(items))
            for b in batches:
                run(b)
                bar.advance(task, len(b) * len(items) / len(mine))  # main's shard stands for the whole
    else:
        for b in batches:
            run(b)

    texts = dist.gather([outputs[i] for i in mine])  # every rank's, in item order
    preds = []
    for it, pred in zip(items, texts):
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
    known = set(CATEGORIES)
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
    batch_size: int = EvalConfig.batch_size,
    max_new_tokens: int = EvalConfig.max_new_tokens,
    progress: bool = True,
    backend: str = "hf",
    run: str | Path | None = None,
    stage: int | None = None,
) -> dict[str, Any]:
    """Evaluate a model (plus adapter) on an items file; write OUT.json and OUT.predictions.jsonl.

    `run` (a finished run folder) evaluates its weights after `stage` (default: the last), rebuilt as
    the run rebuilt them for its own test evaluation, in its prompt format (train.chat).
    Inputs are checked before the model loads, so a typo costs no loading time.
    """
    from gradual.atomic import write_json, write_jsonl
    from gradual.data.items import read_items
    from gradual.errors import UserError
    from gradual.lm.backends import backend_errors, backend_identity, get_backend

    data_p, out_p = _check_paths(Path(data), Path(out), adapter)
    from gradual.merge import check_run_flags, finished_run

    check_run_flags(run, stage, adapters=[adapter] if adapter is not None else [])
    rw = None
    if run is not None:
        if get_backend(backend).loads_weights:
            raise UserError(f"--backend {backend}: --run evaluates a run's rebuilt weights with the hf backend")
        rw = finished_run(run, stage)
        model, chat = rw.cfg.model, chat or rw.cfg.train.chat
    bad = backend_errors(backend, "sample", 1)  # eval decodes greedily: only the backend's presence matters
    if bad:
        raise UserError("; ".join(bad))
    items = read_items(data_p)
    from gradual import distributed as dist

    dist.check_shardable(len(items), "--data")  # before the model loads
    if not get_backend(backend).shards_items:
        dist.refuse(f"--backend {backend}", "the engine manages its GPUs itself; items are sharded for the hf backend")
    cats = load_categories(categories) if categories is not None else None
    if rw is not None:
        from gradual.merge import load_run_model

        lm: Any = load_run_model(rw, device, dtype)
    else:  # vllm: the adapter rides on a LoRA request where it can
        lm = get_backend(backend).load(model, adapter, device, dtype)
    result = evaluate_items(lm, items, cats, chat=chat, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, progress=progress, backend=backend)
    summary = {"model": model, "adapter": str(adapter) if adapter is not None else None,
               **({"run": str(rw.run), "stage": rw.stage} if rw is not None else {}), "data": str(data_p),
               "categories": str(categories) if categories is not None else None, "chat": chat,
               "backend": backend_identity(backend), **result.to_dict()}
    if dist.is_main():  # every rank holds the same result; one writes it
        write_jsonl(predictions_path(out_p), result.predictions)
        write_json(out_p, summary)
    return summary


def _check_paths(data_p: Path, out_p: Path, adapter: str | Path | None) -> tuple[Path, Path]:
    """The eval's file flags, refused before anything loads: the items exist, both outputs can be written."""
    from gradual.errors import UserError
    from gradual.lm.load import check_adapter
    from gradual.preflight import writable_file

    if not data_p.is_file():
        raise UserError(f"--data: {data_p}: no such file")
    if out_p.suffix != ".json":
        raise UserError(f"--out: {out_p}: expected a .json path")
    writable_file(out_p)
    writable_file(predictions_path(out_p))
    if adapter is not None:
        check_adapter(adapter)
    return data_p, out_p


def predictions_path(out: Path) -> Path:
    """OUT.json -> OUT.predictions.jsonl, beside it (the lm-eval-harness habit)."""
    return out.with_name(out.name.removesuffix(".json") + ".predictions.jsonl")


def few_shot_answers(lm: Any, questions: Sequence[str], max_new_tokens: int = 16) -> list[str]:
    """Greedy answers behind the fixed sanity prompt (gradual.prompts.SANITY_EXEMPLARS)."""
    from gradual.lm.hf import greedy_answers
    from gradual.prompts import SANITY_EXEMPLARS, probe_prompt

    prompts = [probe_prompt(SANITY_EXEMPLARS, q) for q in questions]
    return greedy_answers(lm.model, lm.tokenizer, prompts, max_new_tokens=max_new_tokens)
