"""TrainingArguments across the transformers versions gradual supports (4.46 to 5.x).

Run as: used by gradual.train.stage and gradual.train.trackers; no command of its own.

transformers 5 renamed or removed three arguments gradual sets:
  group_by_length=True         -> train_sampling_strategy="group_by_length"
  warmup_ratio=r               -> warmup_steps=r (a float in [0, 1) is read as a share of the steps;
                                  a value >= 1 as a step count, so r = 1 is sent as the float just
                                  below 1, see _warmup_share)
  logging_dir=d (TensorBoard)  -> the TENSORBOARD_LOGGING_DIR environment variable, read when the
                                  TensorBoard callback is created
Each shim asks the installed TrainingArguments which spelling it has, rather than parsing versions.
"""

from __future__ import annotations

import dataclasses
import math
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
        if "warmup_ratio" in names:
            out["warmup_ratio"] = warmup_ratio
        else:
            out["warmup_steps"] = _warmup_share(warmup_ratio)
    if logging_dir is not None and "logging_dir" in names:
        out["logging_dir"] = logging_dir
    return out


def _warmup_share(ratio: float) -> float:
    """A warmup share in transformers 5's spelling, where warmup_steps < 1 is a share of the steps and
    warmup_steps >= 1 a step count: 1.0 would mean one warmup step instead of all of them.

    Shares below 1 pass as they are (both versions compute ceil(steps * share)). A share of 1 (the
    largest gradual accepts) is sent as the largest float below 1, 1 - 2**-53: ceil(N * (1 - 2**-53))
    is N for every step count N below 2**52, so warmup lasts all N steps, as in transformers 4."""
    return ratio if ratio < 1 else math.nextafter(1.0, 0.0)


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
