"""`gradual model ...`: try a model on a few questions (sanity check of loading and prompts).

Run as: gradual model ask "What is the capital of France?" --model smollm2-135m
"""

from __future__ import annotations


import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command("ask")
def ask(
    questions: list[str] = typer.Argument(..., help="Questions to answer few-shot."),
    model: str = typer.Option("smollm2-135m", "--model", help="Model spec."),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
) -> None:
    """Answer questions with a fixed 4-shot world-facts prompt, greedy."""
    from gradual.model_spec import check_model_spec

    check_model_spec(model)  # a mistyped --model fails in a second, before torch loads
    from gradual.evaluate import few_shot_answers
    from gradual.models import load_model

    lm = load_model(model, device, dtype)
    console.print(f"[dim]model {model} on {lm.placement.reason}[/]")
    answers = few_shot_answers(lm, questions)
    table = Table("question", "answer")
    for q, a in zip(questions, answers):
        table.add_row(q, a)
    console.print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="model", help="Inspect and try models.")
