"""`gradual report DIR`: one self-contained report.html for a run folder or a compare folder.

Run as: gradual report runs/demo
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def report(folder: Path = typer.Argument(..., help="A run folder (summary.json) or a compare folder (comparison.json).")) -> None:
    """Write DIR/report.html: charts and tables, opens offline in any browser."""
    from gradual.report import write_report

    out = write_report(folder)
    console.print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
