"""`gradual probe`: SliCK categories for every item of a dataset (what the model already knows).

Run as: gradual probe --model smollm2-135m --data data/world/train.jsonl --exemplars data/world/dev.jsonl \
            --out probe.jsonl [--estimator exact] [--repeat 2] [--full] [--backend vllm]

--data is a JSONL file of items, or a dataset folder: then its train split is probed and its dev
split is the exemplar pool (unless --exemplars is given). Without --exemplars (and with a file) the
probed items are their own exemplar pool; an item is never its own exemplar.
Writes OUT.jsonl (one row per item) and OUT.summary.json, atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from gradual.lm.spec import DEFAULT_MODEL
from gradual.commands import config_from, with_options
from gradual.config import ProbeConfig
from gradual.distributed import is_main

# Tables and messages come from the main process only under a multi-process launch.
console = Console(quiet=not is_main())
# The flags of `gradual probe`, in --help order: the command's own, and ProbeConfig's fields generated
# from the fields (type, default, help: gradual.commands.options_from).
FLAGS = ["data", "out", "model", "exemplars", "estimator", "nex", "shots", "samples", "temperature", "top_k", "seed",
         "batch_size", "max_new_tokens", "full", "cache", "repeat", "limit", "device", "dtype", "quiet", "backend",
         "format"]


@with_options(ProbeConfig, FLAGS)
def probe_cmd(
    data: Path = typer.Option(..., "--data", help="Items to probe: a JSONL file or a dataset folder (train split)."),
    out: Path = typer.Option(..., "--out", help="Output rows (JSONL); the summary goes beside it as .summary.json."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model spec (embedded name, HF folder, .gguf, hub id)."),
    exemplars: Optional[Path] = typer.Option(None, "--exemplars", help="Exemplar pool JSONL (default: dev split of a "
                                             "dataset folder, else the probed items)."),
    limit: int = typer.Option(0, "--limit", help="Probe only the first N items (0 = all)."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    **fields: Any,  # ProbeConfig's, from its generated flags
) -> None:
    """Categorize every item as HighlyKnown / MaybeKnown / WeaklyKnown / Unknown (SliCK)."""
    from gradual.lm.spec import check_model_spec

    check_model_spec(model)  # a mistyped --model fails in a second, before torch loads
    from gradual.data.items import load_dataset_dir, read_items
    from gradual.errors import UserError
    from gradual.probe import CATEGORIES, probe, save_probe, summary_path
    from gradual.probe.run import validate_config

    cfg: ProbeConfig = config_from(ProbeConfig, fields)
    validate_config(cfg)  # every bad flag before the model loads
    if limit < 0:
        raise UserError(f"--limit: {limit} is out of range (>= 0)")
    if not out.name.endswith(".jsonl"):
        raise UserError(f"--out: {out}: expected a .jsonl path")
    from gradual.preflight import writable_file

    writable_file(out)  # before the probe, not after it
    writable_file(summary_path(out))
    if data.is_dir():
        ds = load_dataset_dir(data)
        items, pool = ds.train, ds.dev
    else:
        items, pool = read_items(data), None
    if exemplars is not None:
        pool = read_items(exemplars)
    if limit:
        items = items[:limit]
    from gradual.distributed import check_shardable

    check_shardable(len(items), "--data")  # a launch with more processes than items fails before loading

    from gradual.lm.backends import get_backend

    lm = get_backend(cfg.backend).load(model, None, device, dtype)  # vllm: only the tokenizer loads here
    console.print(f"[dim]model {model} on {lm.placement.reason}; {len(items)} items, estimator {cfg.estimator}, "
                  f"exemplars: {'the probed items' if pool is None else f'{len(pool)} items'}[/]")
    result = probe(lm, items, pool, cfg, progress=not quiet)
    if is_main():  # every rank holds the gathered result; one writes it
        save_probe(result, out)

    s = result.summary
    table = Table("category", "items", "share", title=f"probe: {len(items)} items")
    for c in CATEGORIES:
        table.add_row(c, str(s["counts"][c]), f"{s['shares'][c]:.1%}")
    console.print(table)
    rate = s["questions_per_s"]
    console.print(f"wall {s['wall_s']:.1f} s" + (f", {rate:.2f} questions/s" if rate else "") +
                  (f", cache: {_cache_state(s.get('cache'))}" if s.get("cache") not in (None, "off", "miss") else ""))
    if s["noise"]["repeats"]:
        n = s["noise"]
        flips = ", ".join(f"{p['flip_rate']:.1%}" for p in n["per_repeat"])
        console.print(f"noise: category flip rate per repeat {flips}; items changed in any repeat "
                      f"{n['changed_share']:.1%}")
    console.print(f"wrote {out} and {summary_path(out)}")


def _cache_state(state: str | list[str]) -> str:
    """The summary's cache state, one per pass when they differ (gradual.probe.cache)."""
    return state if isinstance(state, str) else ", ".join(f"pass {i} {s}" for i, s in enumerate(state))


def register(app: typer.Typer) -> None:
    app.command("probe")(probe_cmd)
