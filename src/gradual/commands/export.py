"""`gradual export`: selected items as Alpaca, chat (messages) or TRL prompt-completion data.

Run as: gradual export --probe probe.jsonl --categories MaybeKnown,WeaklyKnown --format alpaca --out data/mk.json
        gradual export --run runs/demo --stage 2 --format trl --out stage2.jsonl [--no-replay]

The logic lives in gradual/export.py; this module only parses flags and prints what was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from gradual.commands import one_of_described
from gradual.export import FORMATS

console = Console()


def export_cmd(
    fmt: str = typer.Option(..., "--format", help=one_of_described(FORMATS)),
    out: Path = typer.Option(..., "--out", help="Output file: .json writes one JSON array, anything else JSON Lines."),
    probe: Optional[Path] = typer.Option(None, "--probe", help="Probe JSONL (gradual probe): export the items of "
                                         "--categories."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder (gradual run): export what --stage trained on."),
    stage: Optional[int] = typer.Option(None, "--stage", help="With --run: the stage number (stages/stage<N>/)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma-separated SliCK categories, or all. "
                                             "Required with --probe; with --run, filters by the category each item "
                                             "had in the probe the stage was planned from."),
    replay: Optional[bool] = typer.Option(None, "--replay/--no-replay", help="With --run: keep the stage's replay "
                                          "items (default) or drop them."),
    dataset_info: Optional[bool] = typer.Option(None, "--dataset-info/--no-dataset-info", help="Merge a LLaMA-Factory "
                                                "entry into dataset_info.json beside --out (default: on for alpaca "
                                                "and chat)."),
    name: Optional[str] = typer.Option(None, "--name", help="The dataset_info.json entry name (default: --out's stem)."),
    meta: bool = typer.Option(False, "--meta", help="Also write id, category, relation and replay in every record."),
) -> None:
    """Write the items of chosen categories, or of one run stage, for LLaMA-Factory, axolotl or TRL."""
    from gradual.errors import UserError
    from gradual.export import check_format, export_items, parse_categories, select_from_probe, select_from_run

    check_format(fmt)
    if (probe is None) == (run is None):
        raise UserError("--probe / --run: give exactly one source (a probe file, or a run folder with --stage)")
    cats = parse_categories(categories) if categories is not None else None
    if name is not None and not name.strip():
        raise UserError("--name: empty")
    if probe is not None:
        for flag, given in (("--stage", stage is not None), ("--replay/--no-replay", replay is not None)):
            if given:
                raise UserError(f"{flag}: only with --run (a probe file has no stages or replay)")
        if cats is None:
            raise UserError("--categories: required with --probe (e.g. MaybeKnown,WeaklyKnown, or all)")
        selection = select_from_probe(probe, cats)
    else:
        assert run is not None
        if stage is None:
            raise UserError("--stage: required with --run (the stage whose train_items.jsonl to export)")
        selection = select_from_run(run, stage, replay=replay is not False, categories=cats)
    res = export_items(selection, fmt, out, dataset_info=dataset_info, dataset_name=name, meta=meta)

    counts = ", ".join(f"{c} {n}" for c, n in res.counts.items())
    replay_note = f", {res.n_replay} replay" if res.n_replay else ""
    console.print(escape(f"wrote {res.n_items} items{replay_note} from {selection.source} to {res.out} "
                         f"[{res.format}]; by category: {counts}"), highlight=False)
    if res.dataset_info is not None:
        console.print(escape(f"{res.dataset_info}: {res.dataset_info_action} entry {res.dataset_name!r} "
                             f"(LLaMA-Factory: dataset: {res.dataset_name}, dataset_dir: {res.dataset_info.parent})"),
                      highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
