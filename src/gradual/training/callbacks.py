"""Trainer callbacks of a stage: per-epoch metrics, best-state snapshots, early stopping, quiet bars.

Run as: used by gradual.train.
"""

from __future__ import annotations

import time
from typing import Any

import torch


def trainable_state(model: Any, lora: bool) -> dict[str, torch.Tensor]:
    """A CPU copy of what the stage trains: the adapter, or every weight for full fine-tuning."""
    if lora:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    else:
        state = model.state_dict()
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def restore_state(model: Any, state: dict[str, torch.Tensor], lora: bool) -> None:
    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
    else:
        model.load_state_dict(state)


class EpochMonitor:
    """Trainer callback: per-epoch loss and dev accuracy, best-state snapshot, early stopping."""

    def __init__(self, *, lora: bool, selecting: bool, patience: int, n_tokens: int,
                 on_row: Any, bar_prefix: str, progress: bool):
        self.lora, self.selecting, self.patience = lora, selecting, patience
        self.n_tokens, self.on_row, self.bar_prefix, self.progress = n_tokens, on_row, bar_prefix, progress
        self.rows: list[dict[str, Any]] = []
        self.best_epoch = 0
        self.best_acc: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped_early = False
        self._loss: float | None = None
        self._lr: float | None = None
        self._t_epoch = self._t_train = 0.0

    # The methods below follow transformers.TrainerCallback's signatures.
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t_epoch = time.perf_counter()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t_train = time.perf_counter() - self._t_epoch

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self._loss, self._lr = float(logs["loss"]), logs.get("learning_rate")

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    model: Any = None, **kw: Any) -> None:
        epoch = len(self.rows) + 1
        acc = (metrics or {}).get("dev_accuracy")
        improved = (not self.selecting) or self.best_acc is None or (acc is not None and acc > self.best_acc)
        if improved:
            self.best_epoch, self.best_acc = epoch, acc
            self.best_state = trainable_state(model, self.lora)
        row = {
            "epoch": epoch, "step": state.global_step, "train_loss": self._loss, "learning_rate": self._lr,
            "dev_accuracy": acc, "dev_n": (metrics or {}).get("dev_n", 0), "tokens": self.n_tokens,
            "train_s": round(self._t_train, 3), "eval_s": round(time.perf_counter() - self._t_epoch - self._t_train, 3),
            "tokens_per_s": round(self.n_tokens / self._t_train, 1) if self._t_train > 0 else None,
        }
        self.rows.append(row)
        if self.selecting and self.patience > 0 and epoch - self.best_epoch >= self.patience:
            control.should_training_stop = True
            self.stopped_early = epoch < args.num_train_epochs
        self.on_row(self.rows)
        if self.progress and state.is_world_process_zero:
            from tqdm.auto import tqdm

            dev = f" dev {acc:.3f}" if acc is not None else ""
            mark = " *" if improved and self.selecting else ""
            tqdm.write(f"{self.bar_prefix} epoch {epoch}: loss {self._loss}{dev}{mark}")


def make_callback(monitor: EpochMonitor) -> Any:
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def on_epoch_begin(self, *a: Any, **k: Any) -> None:
            monitor.on_epoch_begin(*a, **k)

        def on_epoch_end(self, *a: Any, **k: Any) -> None:
            monitor.on_epoch_end(*a, **k)

        def on_log(self, *a: Any, **k: Any) -> None:
            monitor.on_log(*a, **k)

        def on_evaluate(self, *a: Any, **k: Any) -> None:
            monitor.on_evaluate(*a, **k)

    return _Callback()


def quiet_progress() -> Any:
    """The Trainer's tqdm bar without the raw log dicts it prints every epoch."""
    from transformers.trainer_callback import ProgressCallback

    class _QuietProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            pass

    return _QuietProgress()
