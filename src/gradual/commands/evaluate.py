"""`gradual eval`: greedy exact match of a model (plus an optional LoRA adapter) on an items file.

Run as: gradual eval --model smollm2-135m --adapter runs/x/stages/stage1/adapter \
            --data data/world/test.jsonl --categories runs/x/probe/base_test.jsonl --out eval.json
        gradual eval --run runs/x [--stage N] --data data/world/test.jsonl --out eval.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from gradual.commands import config_from, with_options
from gradual.config import EvalConfig, range_errors
from gradual.distributed import is_main
from gradual.errors import UserError
from gradual.lm.spec import DEFAULT_MODEL

# Tables and messages come from the main process only under a multi-process launch.
console = Console(quiet=not is_main())


# The flags of `gradual eval`, in --help order: the command's own, and EvalConfig's fields generated from
# the fields (type, default, help: gradual.commands.options_from).
FLAGS = ["model", "adapter", "run", "stage", "data", "out", "categories", "chat", "device", "dtype", "batch_size",
         "max_new_tokens", "backend"]


@with_options(EvalConfig, FLAGS)
def eval_command(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model spec (embedded name, HF folder, .gguf, hub id)."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="PEFT adapter folder to apply (merged for eval)."),
    run: Optional[Path] = typer.Option(None, "--run", help="A finished run folder: evaluate its fine-tuned weights "
                                       "(the ones its own test evaluation used), in its prompt format."),
    stage: Optional[int] = typer.Option(None, "--stage", min=0, help="With --run: the weights after this stage "
                                        "(0 = the base model; default: the last)."),
    data: Path = typer.Option(..., "--data", help="Items JSONL to evaluate on."),
    out: Path = typer.Option(..., "--out", help="Aggregate JSON; per-item predictions go to OUT.predictions.jsonl."),
    categories: Optional[Path] = typer.Option(None, "--categories", help="Probe JSONL: accuracy by category and hallucination rate."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    **fields: Any,  # EvalConfig's, from its generated flags
) -> None:
    """Greedy exact match in the zero-shot fine-tune format; by category when a probe file is given."""
    from gradual.lm.spec import check_model_spec

    cfg: EvalConfig = config_from(EvalConfig, fields)
    bad = range_errors(cfg, "eval", flags=True)  # every bad flag at once, before anything loads
    if bad:
        raise UserError("; ".join(bad))
    if run is None:
        check_model_spec(model)  # a mistyped --model fails in a second, before torch loads
    from gradual.evaluate import evaluate_file, predictions_path
    from gradual.console import print_eval

    summary = evaluate_file(model, data, out, adapter=adapter, categories=categories, chat=cfg.chat, device=device,
                            dtype=dtype, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                            backend=cfg.backend, run=run, stage=stage)
    print_eval(summary, console)
    console.print(f"[dim]wrote {out} and {predictions_path(out)}[/]")


def register(root: typer.Typer) -> None:
    root.command("eval")(eval_command)
