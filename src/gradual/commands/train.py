"""`gradual train`: fine-tune one stage on a JSONL file of items, early stopping on a dev file.

Run as: gradual train --model smollm2-135m --data data/world/train.jsonl --dev data/world/dev.jsonl --out runs/one

On several GPUs: accelerate launch -m gradual.cli train ... (the stage runs on the transformers Trainer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from gradual.lm.spec import DEFAULT_MODEL
from gradual.commands import config_from, with_options
from gradual.config import Stage2Config, TrainConfig, field_help, range_errors
from gradual.distributed import is_main
from gradual.errors import UserError
from gradual.train.trackers import parse_report_to, report_to_errors

# Tables and messages come from the main process only under a multi-process launch.
console = Console(quiet=not is_main())
# The flags of `gradual train`, in --help order: the command's own, and TrainConfig's fields generated
# from the fields (type, default, help: gradual.commands.options_from).
FLAGS = ["data", "out", "model", "dev", "lora", "epochs", "lr", "batch_size", "grad_accum", "weight_decay", "replay",
         "replay_ratio", "seed", "lora_r", "patience", "max_dev", "min_dev", "device", "dtype", "chat", "report_to",
         "quiet"]


@with_options(TrainConfig, FLAGS)
def train(
    data: Path = typer.Option(..., "--data", help="Training items (JSONL)."),
    out: Path = typer.Option(..., "--out", help="Stage folder to write (adapter/, metrics.jsonl, train_items.jsonl)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model spec."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="Dev items (JSONL) for per-epoch exact match and early stopping."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Items to mix in as replay (JSONL)."),
    # Not generated: its default depends on --replay (TrainConfig's 0.0 without it).
    replay_ratio: Optional[float] = typer.Option(
        None, "--replay-ratio", help=field_help(TrainConfig, "replay_ratio").removesuffix(".") +
        f" (default {Stage2Config.replay_ratio} with --replay)."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    **fields: Any,  # TrainConfig's, from its generated flags
) -> None:
    """Fine-tune one stage; keep the best dev epoch; write a standard PEFT adapter."""
    from gradual.data.items import read_items

    if replay_ratio is not None and replay is None:
        raise UserError("--replay-ratio: needs --replay FILE (the items to replay)")
    ratio = (Stage2Config.replay_ratio if replay_ratio is None else replay_ratio) if replay is not None else 0.0
    cfg: TrainConfig = config_from(TrainConfig, fields, replay_ratio=ratio)
    # Every bad flag at once, before the model loads ("none" costs nothing; a tracker imports transformers).
    bad = range_errors(cfg, "train", flags=True) + report_to_errors(cfg.report_to, "--report-to")
    if bad:
        raise UserError("; ".join(bad))
    from gradual.lm.spec import check_model_spec

    check_model_spec(model)  # a mistyped --model fails in a second, before torch loads
    from gradual.preflight import writable_folder

    writable_folder(out)  # before training, not after it
    from gradual.distributed import per_process_batch

    per_process_batch(cfg.batch_size, cfg.grad_accum, "--batch-size")  # the global batch must split across the processes
    train_items = read_items(data)
    dev_items = read_items(dev) if dev is not None else []
    replay_items = read_items(replay) if replay is not None else []

    from gradual.lm.load import load_model
    from gradual.train import train_stage

    lm = load_model(model, device, dtype)
    console.print(f"[dim]model {model} on {lm.placement.reason}; {len(train_items)} items"
                  f"{f', replay pool {len(replay_items)}' if replay is not None else ''}"
                  f"{f', dev {len(dev_items)}' if dev is not None else ', no dev'}[/]")
    res = train_stage(lm, train_items, dev_items, cfg, out, replay_items=replay_items, progress=not quiet,
                      name=out.name)

    table = Table("epoch", "train loss", "dev accuracy", "train s", "tokens/s", "")
    for row in res.metrics:
        acc = row["dev_accuracy"]
        table.add_row(str(row["epoch"]), f"{row['train_loss']:.4f}" if row["train_loss"] is not None else "-",
                      f"{acc:.3f}" if acc is not None else "-", f"{row['train_s']:.1f}",
                      f"{row['tokens_per_s']:.0f}" if row["tokens_per_s"] else "-", "best" if row["best"] else "")
    console.print(table)
    acc = f", dev accuracy {res.dev_accuracy:.3f}" if res.dev_accuracy is not None else ""
    stop = ", stopped early" if res.stopped_early else ""
    console.print(f"best epoch {res.best_epoch}{acc}{stop} ({res.note}); {res.n_train} items + {res.n_replay} replay; "
                  f"{res.precision}; {res.wall_s:.1f}s")
    from gradual.rundir import StageDir

    sd = StageDir(out)
    console.print(f"wrote {sd.weights(cfg.lora)}, {sd.metrics}, {sd.train_items}")
    if "tensorboard" in parse_report_to(cfg.report_to):
        console.print(f"tensorboard: tensorboard --logdir {sd.logs}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
