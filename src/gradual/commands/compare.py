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

from gradual.commands import one_of
from gradual.distributed import is_main
from gradual.strategies import STRATEGIES, check_strategies
from gradual.errors import UserError

# Tables and messages come from the main process only under a multi-process launch.
console = Console(quiet=not is_main())


def parse_strategies(text: str) -> list[str]:
    """`a,b,c` -> names, checked against the registered strategies (all unknown names at once)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError("--strategies: expected a comma-separated list, e.g. gradual,maybeknown")
    check_strategies(names, "--strategies")
    dup = sorted({s for s in names if names.count(s) > 1})
    if dup:
        raise UserError(f"--strategies: {', '.join(dup)} given more than once")
    return names


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """`0,1,2` or a range `0-4` (or a mix) -> distinct non-negative ints, in the order given."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise UserError(f"{flag}: {part!r} is not a seed or a range (use e.g. 0,1,2 or 0-4)") from None
    if not seeds:
        raise UserError(f"{flag}: expected a comma-separated list of integers, e.g. 0,1,2")
    if any(s < 0 for s in seeds):
        raise UserError(f"{flag}: seeds must be non-negative")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{flag}: a seed is given more than once")
    return seeds


def parse_flags(strategies: str, seeds: str,
                exemplar_seeds: str | None = None) -> tuple[list[str], list[int], list[int] | None]:
    """Every flag at once, so one invocation reports every bad flag."""
    errors: list[str] = []
    names: list[str] = []
    seed_list: list[int] = []
    exemplar_list: list[int] | None = None
    try:
        names = parse_strategies(strategies)
    except UserError as exc:
        errors.append(str(exc))
    try:
        seed_list = parse_seeds(seeds)
    except UserError as exc:
        errors.append(str(exc))
    if exemplar_seeds is not None:
        try:
            exemplar_list = parse_seeds(exemplar_seeds, "--exemplar-seeds")
        except UserError as exc:
            errors.append(str(exc))
    if errors:
        raise UserError("\n".join(errors))
    return names, seed_list, exemplar_list


def compare(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML run config shared by every run."),
    strategies: str = typer.Option("gradual,maybeknown,all,frontier", "--strategies", help=one_of(STRATEGIES, lead="Comma-separated, from")),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds (or a range, 0-4)."),
    exemplar_seeds: Optional[str] = typer.Option(None, "--exemplar-seeds", help="Repeat every strategy x seed "
                                                 "for each of these probe seeds (e.g. 0,1), so the base categorization "
                                                 "itself varies; comparisons pair within an exemplar seed. Default: "
                                                 "the config's probe.seed only."),
    out: Path = typer.Option(..., "--out", help="Compare folder (runs/ inside; finished runs are reused)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model spec (overrides the config)."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset folder (overrides the config)."),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    finished_only: bool = typer.Option(False, "--finished-only", help="Run nothing: compare the planned runs "
                                       "that have finished (e.g. while the same compare is still running); the "
                                       "rest are listed as missing."),
) -> None:
    """Run strategies x seeds, then comparison.json, comparison.md and report.html in OUT."""
    from gradual.compare import run_compare
    from gradual.console import print_comparison

    names, seed_list, exemplar_list = parse_flags(strategies, seeds, exemplar_seeds)
    command = "gradual " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    comparison = run_compare(config, names, seed_list, out,
                             {"model": model, "data": data, "device": device, "dtype": dtype},
                             progress=not quiet, command=command, exemplar_seeds=exemplar_list,
                             finished_only=finished_only)
    print_comparison(comparison, console)
    if comparison.get("missing_runs"):
        from gradual.formatting import partial_text

        console.print(f"[yellow]partial[/]: {partial_text(comparison)}")
    from gradual.rundir import CompareDir

    cdir = CompareDir(out)
    console.print(f"wrote {cdir.comparison_json}, {cdir.comparison_md}"
                  + (f", {cdir.report}" if cdir.report.exists() else ""))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
