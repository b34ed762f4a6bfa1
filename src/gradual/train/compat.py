"""TrainingArguments across the transformers versions gradual supports (4.46 to 5.x).

Run as: used by gradual.train.stage and gradual.train.trackers; no command of its own.

transformers 5 renamed or removed three arguments gradual sets:
  group_by_length=True         -> train_sampling_strategy="group_by_length"
  warmup_ratio=r               -> warmup_steps=r (a float in [0, 1) is read as a share of the steps)
  logging_dir=d (TensorBoard)  -> the TENSORBOARD_LOGGING_DIR environment variable, read when the
                                  TensorBoard callback is created
Each shim asks the installed TrainingArguments which spelling it has, rather than parsing versions.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator


@lru_cache(maxsize=1)
def _fields() -> frozenset[str]:
    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments))


def training_args(*, group_by_length: bool = False, warmup_ratio: float | None = None,
                  logging_dir: str | None = None) -> dict[str, Any]:
    """Keyword arguments for TrainingArguments in the installed version's spelling (logging_dir only
    where it is an argument; elsewhere wrap the Trainer's construction in `tensorboard_dir`)."""
    names = _fields()
    out: dict[str, Any] = {}
    if group_by_length:
        if "group_by_length" in names:
            out["group_by_length"] = True
        else:
            out["train_sampling_strategy"] = "group_by_length"
    if warmup_ratio is not None:
        out["warmup_ratio" if "warmup_ratio" in names else "warmup_steps"] = warmup_ratio
    if logging_dir is not None and "logging_dir" in names:
        out["logging_dir"] = logging_dir
    return out


@contextmanager
def tensorboard_dir(path: str) -> Iterator[None]:
    """Point TensorBoard callbacks created inside the block at `path` (transformers 5 reads it from the
    environment); the previous value is restored after, so nothing leaks into later stages."""
    if "logging_dir" in _fields():
        yield
        return
    old = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = old
