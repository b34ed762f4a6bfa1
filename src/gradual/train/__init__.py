"""The stage trainer: one stage of fine-tuning on the transformers Trainer (`gradual train`, `gradual run`).

Run as: gradual train --model smollm2-135m --data train.jsonl --dev dev.jsonl --out runs/stage1

Modules: `stage` (train_stage and the stage folder), `data` (encoding, collation, replay),
`callbacks` (per-epoch metrics rows, the rich progress bar), `precision` (dtype and autocast),
`trackers` (report_to: TensorBoard, W&B, MLflow, ...).

The names below are loaded on first use, so `gradual.train.trackers` (the commands' flag checks)
imports without torch: a bad flag still fails in a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradual.rundir import ADAPTER_DIR, MODEL_DIR  # the stage folder's weight folders: one source, no torch

if TYPE_CHECKING:
    from gradual.train.precision import Precision, choose_precision
    from gradual.train.stage import StageResult, dev_subset, evaluate_dev, merge_into_base, train_stage
    from gradual.train.trackers import check_report_to, log_to_trackers, parse_report_to, report_to_errors

_HOME = {
    "Precision": "precision", "choose_precision": "precision",
    "StageResult": "stage", "dev_subset": "stage",
    "evaluate_dev": "stage", "merge_into_base": "stage", "train_stage": "stage",
    "check_report_to": "trackers", "log_to_trackers": "trackers", "parse_report_to": "trackers",
    "report_to_errors": "trackers",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = ["ADAPTER_DIR", "MODEL_DIR", "Precision", "StageResult", "check_report_to", "choose_precision",
           "dev_subset", "evaluate_dev", "log_to_trackers", "merge_into_base",
           "parse_report_to", "report_to_errors", "train_stage"]
