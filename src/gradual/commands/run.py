"""`gradual run`: the whole gradual fine-tuning pipeline from a YAML config.

Run as: gradual run --config configs/default.yaml --out runs/demo [--strategy gradual] [--resume]
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from gradual.distributed import is_main
from gradual.commands import one_of
from gradual.strategies import STRATEGIES

STRATEGY_HELP = one_of(STRATEGIES, "(README: Strategies)")

# Tables and messages come from the main process only under a multi-process launch.
console = Console(quiet=not is_main())


def run(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML run config (configs/default.yaml)."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (or continue with --resume)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help=STRATEGY_HELP),
    model: Optional[str] = typer.Option(None, "--model", help="Model spec (default smollm2-135m)."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset folder (train/dev/test.jsonl)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Training seed."),
    max_stages: Optional[int] = typer.Option(None, "--max-stages", help="Stage cap for the frontier strategy."),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (a finished one just reprints)."),
    report_to: Optional[str] = typer.Option(
        None, "--report-to", help="Trackers for loss, dev accuracy and category counts per stage: none (default), "
        "tensorboard, wandb, mlflow, ... (comma-separated; what the transformers Trainer takes)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Probe -> stages of fine-tuning -> re-probe -> test eval -> summary.json and report.html."""
    from gradual.run_config import load_run_config
    from gradual.pipeline import run_pipeline
    from gradual.console import print_summary

    overrides = {"strategy": strategy, "model": model, "data": data, "seed": seed, "max_stages": max_stages,
                 "device": device, "dtype": dtype, "train.report_to": report_to}
    cfg = load_run_config(config, overrides)
    from gradual.train.trackers import check_report_to

    # An integration that is not installed fails here, not after the probe (YAML or flag alike).
    check_report_to(cfg.train.report_to, "--report-to" if report_to is not None else "train.report_to")
    command = "gradual " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summary = run_pipeline(cfg, out, resume=resume, progress=not quiet, command=command)
    print_summary(summary, console)
    from gradual.rundir import RunDir

    report = RunDir(out).report
    if report.exists():
        console.print(f"report: {report}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
