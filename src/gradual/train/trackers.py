"""Experiment trackers: the integrations the transformers Trainer reports to (TensorBoard, W&B, MLflow, ...).

Run as: used by gradual.train.stage (`train.report_to`, `gradual train --report-to`) and gradual.pipeline
(the probe's category counts per stage).

A stage hands `report_to` to its Trainer, which logs the train loss and the dev exact match of every
epoch through its own integration callbacks. `log_to_trackers` sends numbers that no Trainer
produces (the probe's category counts between stages) through the same callbacks, so they land in
the same tools with the same naming: TensorBoard and W&B prefix a key that does not start with
`eval_`/`test_` with `train/` (the probe counts are of the train split, which is what that says).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from gradual.errors import UserError
from gradual.train.compat import tensorboard_dir, training_args

NONE = "none"
# What to install for an integration whose pip name differs from its Trainer name.
_PIP_NAME = {"azure_ml": "azureml-core", "comet_ml": "comet-ml", "flyte": "flytekit"}


def parse_report_to(value: str) -> list[str]:
    """`"none"` -> [], `"tensorboard, wandb"` -> ["tensorboard", "wandb"], `"all"` -> every installed one."""
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if not names or names == [NONE]:
        return []
    if names == ["all"]:
        from transformers.integrations.integration_utils import get_available_reporting_integrations

        return list(get_available_reporting_integrations())
    return names


def report_to_errors(value: str, label: str = "--report-to") -> list[str]:
    """What is wrong with a `report_to` value: unknown integrations, ones that are not installed."""
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if not names or names == [NONE] or names == ["all"]:
        return []
    if NONE in names or "all" in names:
        return [f"{label}: {value!r}: 'none' and 'all' stand alone, not in a list"]
    # Imported only when some integration is asked for: it loads transformers (and torch).
    from transformers.integrations.integration_utils import (INTEGRATION_TO_CALLBACK,
                                                             get_available_reporting_integrations)

    installed = set(get_available_reporting_integrations())
    errors = []
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            errors.append(f"{label}: unknown integration {name!r} "
                          f"(known: none, all, {', '.join(sorted(INTEGRATION_TO_CALLBACK))})")
        elif name not in installed and name != "flyte":  # flyte has no entry in the installed list
            errors.append(f"{label}: {name} is not installed (pip install {_PIP_NAME.get(name, name)})")
    return errors


def check_report_to(value: str, label: str = "--report-to") -> None:
    """Raise a UserError (exit 2) naming every integration in `value` that cannot be used."""
    errors = report_to_errors(value, label)
    if errors:
        raise UserError("; ".join(errors))


def log_to_trackers(report_to: str, log_dir: Path, name: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log `metrics` at `step` to every integration in `report_to`, as a Trainer with these settings would.

    `log_dir` is where file-based trackers write (TensorBoard's event files); `name` is the run name
    (W&B, MLflow). Each call opens and closes the trackers, so a call is a complete record on its own
    and a run killed between stages loses nothing already logged.
    """
    names = parse_report_to(report_to)
    if not names:
        return
    from transformers import TrainingArguments
    from transformers.integrations import get_reporting_integration_callbacks
    from transformers.trainer_callback import TrainerControl, TrainerState

    with tempfile.TemporaryDirectory(prefix="gradual-trackers-") as scratch:
        args = TrainingArguments(output_dir=scratch, report_to=names, run_name=name,
                                 **training_args(logging_dir=str(log_dir)))
        # One process logs, as in the Trainer (under accelerate launch every process runs the pipeline).
        # Read from the launcher's environment: asking `args` would set up devices and process groups.
        state = TrainerState(global_step=step, is_world_process_zero=os.environ.get("RANK", "0") == "0",
                             is_local_process_zero=os.environ.get("LOCAL_RANK", "0") == "0")
        control = TrainerControl()
        with tensorboard_dir(str(log_dir)):
            callbacks: list[Any] = [cls() for cls in get_reporting_integration_callbacks(names)]
        for cb in callbacks:
            cb.on_log(args, state, control, logs=dict(metrics))
            cb.on_train_end(args, state, control)  # flushes and closes (TensorBoard writer, MLflow run)
    end_runs(names)


def end_runs(names: list[str]) -> None:
    """End the tracker runs a Trainer leaves open after `train()`.

    W&B keeps its run open, and the next stage's Trainer would log into it with steps starting again
    at 0, which W&B drops; ended, every stage gets its own run, named after the stage. (MLflow's
    callback already ends the run it started; TensorBoard writes files.)
    """
    if "wandb" in names:
        import wandb

        if wandb.run is not None:
            wandb.finish()


__all__ = ["check_report_to", "end_runs", "log_to_trackers", "parse_report_to", "report_to_errors"]
