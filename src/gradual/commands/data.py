"""`gradual data ...`: import QA datasets, build the world benchmark, validate and summarize.

Run as: gradual data build world --out data/world && gradual data stats data/world
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gradual.commands import one_of
from gradual.data.formats import FORMATS

app = typer.Typer(no_args_is_help=True)
build_app = typer.Typer(no_args_is_help=True)
app.add_typer(build_app, name="build", help="Build a built-in dataset.")
console = Console()


def _print_counts(path: Path, meta_counts: dict[str, int], extra: str = "") -> None:
    counts = ", ".join(f"{k} {v}" for k, v in meta_counts.items())
    # One line, never wrapped, so scripts can grep it; the path may hold "[" (not markup).
    console.print(f"[green]{escape(str(path))}[/]: {counts}{extra}", highlight=False, soft_wrap=True)


@app.command("import")
def import_cmd(
    path: Path = typer.Argument(..., help="Source file or folder."),
    fmt: str = typer.Option(..., "--format", "-f", help=one_of(FORMATS, "(README: Data)")),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (train/dev/test.jsonl, meta.json)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (when the source has none)."),
    dev_frac: float = typer.Option(0.1, "--dev-frac", help="Share of items for dev."),
    test_frac: float = typer.Option(0.2, "--test-frac", help="Share of items for test."),
    question_col: str = typer.Option("question", "--question-col", help="csv/tsv/hf: question column."),
    answer_col: Optional[str] = typer.Option(None, "--answer-col", help="csv/tsv/hf: answer column (default: answers, else answer)."),
    alias_sep: str = typer.Option("|", "--alias-sep", help="csv/tsv: separator of aliases in the answer cell."),
    relation_col: Optional[str] = typer.Option(None, "--relation-col", help="csv/tsv/hf: relation column (default: relation, if present)."),
    subject_col: Optional[str] = typer.Option(None, "--subject-col", help="csv/tsv/hf: subject column (default: subject, if present)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="csv/tsv/hf: id column (default: id if present, else <file stem>:<line>)."),
) -> None:
    """Import a QA dataset into a dataset folder, split by seed unless the source has splits."""
    from gradual.data.formats import ImportOptions, import_dataset
    from gradual.data.stats import load_path

    opts = ImportOptions(question_col, answer_col, alias_sep, relation_col, subject_col, id_col)
    written = import_dataset(fmt, path, out, seed, dev_frac, test_frac, opts)
    loaded = load_path(written)
    _print_counts(written, {k: len(v) for k, v in loaded.parts.items()})


@build_app.command("world")
def build_world_cmd(
    out: Path = typer.Option(Path("data/world"), "--out", "-o", help="Dataset folder to write."),
    seed: int = typer.Option(0, "--seed", help="Seed of the city sample and the split."),
    n_cities: Optional[int] = typer.Option(None, "--n-cities", help="Cities to sample for the city_country relation (default 800)."),
) -> None:
    """Build the world-facts benchmark (countries and cities) offline."""
    from gradual.data.stats import load_path
    from gradual.data.world import DEFAULT_N_CITIES, build_world

    written = build_world(out, seed, DEFAULT_N_CITIES if n_cities is None else n_cities)
    loaded = load_path(written)
    rels = sorted({it.relation or "" for items in loaded.parts.values() for it in items})
    _print_counts(written, {k: len(v) for k, v in loaded.parts.items()}, f"; relations: {', '.join(rels)}")


@app.command("validate")
def validate_cmd(path: Path = typer.Argument(..., help="A JSONL file of items or a dataset folder.")) -> None:
    """Check a file or dataset folder; exit 2 with file:line on the first problem."""
    from gradual.data.stats import load_path

    loaded = load_path(path)
    _print_counts(loaded.path, {k: len(v) for k, v in loaded.parts.items()}, " [dim](valid)[/]")


@app.command("stats")
def stats_cmd(path: Path = typer.Argument(..., help="A JSONL file of items or a dataset folder.")) -> None:
    """Counts by split and relation, answer lengths, alias statistics."""
    from gradual.data.stats import dataset_stats

    st = dataset_stats(path)
    names = [n for n in st.parts if n != "all"]
    rel = Table(title=f"{escape(str(st.path))}: items by relation")
    rel.add_column("relation")
    for n in names:
        rel.add_column(n, justify="right")
    rel.add_column("total", justify="right")
    for r, row in st.by_relation.items():
        rel.add_row(r, *(str(row.get(n, 0)) for n in names), str(sum(row.values())))
    rel.add_row("[bold]all[/]", *(str(st.parts[n].items) for n in names), str(st.parts["all"].items))
    console.print(rel)
    ans = Table(title="answers (canonical) and aliases")
    for col in ("split", "items", "words mean", "words max", "chars mean", "chars max", "with aliases", "aliases mean"):
        ans.add_column(col, justify="left" if col == "split" else "right")
    for n, p in st.parts.items():
        ans.add_row(
            n, str(p.items), f"{p.answer_words_mean:.2f}", str(p.answer_words_max), f"{p.answer_chars_mean:.1f}",
            str(p.answer_chars_max), f"{p.share_with_aliases:.0%}", f"{p.mean_aliases:.2f}",
        )
    console.print(ans)
    if st.train_test_subject_overlap is not None:
        console.print(f"subjects in both train and test: {st.train_test_subject_overlap}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data", help="Import, build, validate and summarize QA datasets.")
