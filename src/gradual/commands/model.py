"""`gradual model ...`: try a model on a few questions, and write a run's fine-tuned model as one folder.

Run as: gradual model ask "What is the capital of France?" [--model smollm2-135m | --run runs/demo [--stage N]]
        gradual model merge --run runs/demo --out runs/demo/final [--stage N] [--force]
        gradual model merge --model smollm2-135m --adapter A1 [--adapter A2 ...] --out merged/
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from gradual.lm.spec import DEFAULT_MODEL

app = typer.Typer(no_args_is_help=True)
console = Console()

RUN_HELP = "A finished run folder: use its fine-tuned weights (after --stage, default its last stage)."
STAGE_HELP = "With --run: the weights after this stage (0 = the base model; default: the last stage)."
ADAPTER_HELP = "PEFT adapter folder merged into --model (repeat for a chain: each merged in the order given)."


def load_for(model: str, run: Optional[Path], stage: Optional[int], adapters: list[Path],
             device: str, dtype: str) -> tuple[object, str]:
    """The model a command asked for: a run's weights after a stage, or a spec with adapters merged in
    order; also a line saying what it is. --run and --model/--adapter are exclusive."""
    from gradual.merge import check_run_flags
    from gradual.lm.spec import check_model_spec

    check_run_flags(run, stage, adapters=adapters, other_model=model != DEFAULT_MODEL)
    if run is not None:
        from gradual.merge import finished_run, load_run_model

        rw = finished_run(run, stage)
        check_model_spec(rw.cfg.model)
        lm = load_run_model(rw, device, dtype)
        return lm, f"run {run} after stage {rw.stage} of {rw.stages} ({rw.cfg.strategy}, base {rw.cfg.model})"
    check_model_spec(model)  # a mistyped --model fails in a second, before torch loads
    from gradual.lm.load import load_with_adapters

    lm = load_with_adapters(model, adapters, device, dtype)
    return lm, f"model {model}" + "".join(f" + {a}" for a in adapters)


@app.command("ask")
def ask(
    questions: list[str] = typer.Argument(..., help="Questions to answer few-shot."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model spec."),
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    stage: Optional[int] = typer.Option(None, "--stage", min=0, help=STAGE_HELP),
    adapter: list[Path] = typer.Option([], "--adapter", help=ADAPTER_HELP),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
) -> None:
    """Answer questions with a fixed 4-shot world-facts prompt, greedy."""
    lm, what = load_for(model, run, stage, adapter, device, dtype)
    from gradual.evaluate import few_shot_answers

    console.print(f"[dim]{what} on {lm.placement.reason}[/]")
    answers = few_shot_answers(lm, questions)
    table = Table("question", "answer")
    for q, a in zip(questions, answers):
        table.add_row(q, a)
    console.print(table)


@app.command("merge")
def merge(
    out: Path = typer.Option(..., "--out", help="The model folder to write (safetensors, config, tokenizer, "
                                               "gradual.json); refused if it exists, unless --force."),
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    stage: Optional[int] = typer.Option(None, "--stage", min=0, help=STAGE_HELP),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Without --run: the base model spec."),
    adapter: list[Path] = typer.Option([], "--adapter", help=ADAPTER_HELP),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out (only once the new one is complete)."),
    device: str = typer.Option("auto", "--device", help="Where to merge (default: the run's own device)."),
    dtype: str = typer.Option("auto", "--dtype", help="Weights' dtype (default: the run's own, the weights it evaluated)."),
) -> None:
    """Write the fine-tuned model as one standard Hugging Face model folder.

    A run trains each stage's LoRA adapter over the weights the stages before it left, so the model
    after stage N is the base with stages 1..N merged in order: this writes exactly those weights (the
    ones the run re-probed and evaluated), loadable with AutoModelForCausalLM.from_pretrained."""
    from gradual.errors import UserError
    from gradual.merge import check_out, check_run_flags, merge_adapters, merge_run

    check_out(out, force)
    check_run_flags(run, stage, adapters=adapter, other_model=model != DEFAULT_MODEL)
    if run is not None:
        path = merge_run(run, out, stage=stage, force=force, device=device, dtype=dtype)
    else:
        if not adapter:
            raise UserError("--adapter: give at least one adapter to merge into --model, or --run DIR")
        from gradual.lm.spec import check_model_spec

        check_model_spec(model)
        path = merge_adapters(model, adapter, out, force=force, device=device, dtype=dtype)
    console.print(f"wrote {path} (load it with transformers.AutoModelForCausalLM.from_pretrained({str(path)!r}))")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="model", help="Try models, and write a run's fine-tuned model as one folder.")
