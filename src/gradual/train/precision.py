"""How a stage runs numerically: which dtype the trained weights get, and the autocast dtype.

Run as: used by gradual.train.stage (benchmarks/train_speed.py --precisions has the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Precision:
    """How a stage runs numerically: the dtype of the weights it trains, and the autocast dtype."""

    master: torch.dtype | None  # cast the model to this for the stage (None: keep as is)
    autocast: torch.dtype | None
    reason: str


def choose_precision(model: Any, lora: bool) -> Precision:
    """Autocast in the model's half dtype; trainable weights always fp32.

    LoRA leaves the base frozen, so a bf16 base needs no fp32 copy (peft keeps the adapters in
    fp32); full fine-tuning updates every weight, which bf16 cannot accumulate small steps into, so
    it gets fp32 master weights for the stage.
    """
    param = next(model.parameters())
    dt, dev = param.dtype, param.device.type
    if dt == torch.float32:
        return Precision(None, None, "fp32 weights, no autocast")
    if dt == torch.float16 and dev == "cpu":
        return Precision(torch.float32, None, "fp16 on CPU has no fast kernels: fp32")
    name = str(dt).removeprefix("torch.")
    if lora:
        return Precision(None, dt, f"frozen {name} base, fp32 LoRA, {name} autocast")
    return Precision(torch.float32, dt, f"fp32 master weights, {name} autocast")


__all__ = ["Precision", "choose_precision"]
