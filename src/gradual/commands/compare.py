"""`gradual compare`: every strategy x seed as an ordinary run, then means with 95% intervals.

Run as: gradual compare --config configs/default.yaml --strategies gradual,maybeknown,all,frontier \
            --seeds 0,1,2 --out runs/compare
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def compare(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML run config shared by every run."),
    strategies: str = typer.Option("gradual,maybeknown,all,frontier", "--strategies", help="Comma-separated strategies."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds (or a range, 0-4)."),
    out: Path = typer.Option(..., "--out", help="Compare folder (runs/ inside; finished runs are reused)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model spec (overrides the config)."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset folder (overrides the config)."),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Run strategies x seeds, then comparison.json, comparison.md and report.html in OUT."""
    from gradual.compare import parse_flags, run_compare
    from gradual.summary_table import print_comparison

    names, seed_list = parse_flags(strategies, seeds)
    command = "gradual " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    comparison = run_compare(config, names, seed_list, out,
                             {"model": model, "data": data, "device": device, "dtype": dtype},
                             progress=not quiet, command=command)
    print_comparison(comparison, console)
    console.print(f"wrote {out / 'comparison.json'}, {out / 'comparison.md'}"
                  + (f", {out / 'report.html'}" if (out / "report.html").exists() else ""))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
