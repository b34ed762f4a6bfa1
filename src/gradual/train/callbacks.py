"""Trainer callbacks of a stage: per-epoch metrics rows and a rich progress bar.

Run as: used by gradual.train.stage.

Early stopping and the best epoch are the Trainer's own (`EarlyStoppingCallback`,
`load_best_model_at_end`); the monitor here only records what each epoch did, for metrics.jsonl.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

DEV_METRIC = "dev_accuracy"  # the Trainer's metric_for_best_model; logged and read as eval_dev_accuracy


class EpochMonitor:
    """Trainer callback: one metrics row per epoch (train loss, dev accuracy, timings), as each epoch ends.

    `best_so_far` follows the Trainer's rule for the best checkpoint (a strictly greater dev
    accuracy; the first epoch always counts), so the line printed per epoch agrees with the epoch
    `load_best_model_at_end` restores.
    """

    def __init__(self, *, selecting: bool, n_tokens: int, on_row: Callable[[list[dict[str, Any]]], None],
                 bar_prefix: str, say: Callable[[str], None] | None = None):
        self.selecting, self.n_tokens, self.on_row = selecting, n_tokens, on_row
        self.bar_prefix, self.say = bar_prefix, say
        self.rows: list[dict[str, Any]] = []
        self.best_acc: float | None = None
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
                    **kw: Any) -> None:
        epoch = len(self.rows) + 1
        acc = (metrics or {}).get(f"eval_{DEV_METRIC}")
        improved = acc is not None and (self.best_acc is None or acc > self.best_acc)
        if improved:
            self.best_acc = acc
        row = {
            "epoch": epoch, "step": state.global_step, "train_loss": self._loss, "learning_rate": self._lr,
            "dev_accuracy": acc, "dev_n": int((metrics or {}).get("eval_dev_n", 0)), "tokens": self.n_tokens,
            "train_s": round(self._t_train, 3), "eval_s": round(time.perf_counter() - self._t_epoch - self._t_train, 3),
            "tokens_per_s": round(self.n_tokens / self._t_train, 1) if self._t_train > 0 else None,
        }
        self.rows.append(row)
        self.on_row(self.rows)
        if self.say is not None and state.is_world_process_zero:
            loss = f"{self._loss:.4f}" if self._loss is not None else "–"
            dev = f", dev accuracy {acc:.3f}" if acc is not None else ""
            mark = " (best so far)" if improved and self.selecting else ""
            self.say(f"{self.bar_prefix} epoch {epoch}: train loss {loss}{dev}{mark}")


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


def rich_progress(name: str, console: Any = None) -> Any:
    """A TrainerCallback drawing the stage as one rich bar (steps, epoch, last epoch's mean train loss,
    ETA) in place of the Trainer's tqdm bars (run it with disable_tqdm=True), so training looks like
    the probe and eval bars. `say` prints a line above the live bar; `close` is safe to call twice.

    The loss shown is the last finished epoch's mean: the Trainer logs once per epoch (the metrics
    rows need the epoch mean), and per-step losses would cost a device sync every step.
    """
    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    from gradual.progress import progress_bar

    out = console if console is not None else Console(stderr=True)  # stderr, like the probe's bar

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.console = out
            self._bar: Progress | None = None
            self._task: Any = None
            self._epochs = 0

        def say(self, line: str) -> None:
            self.console.print(line, highlight=False, markup=False)

        def close(self) -> None:
            if self._bar is not None:
                self._bar.stop()  # also restores the cursor after an exception or Ctrl-C
                self._bar = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not state.is_world_process_zero:  # one bar per job under accelerate launch
                return
            self._epochs = math.ceil(args.num_train_epochs)
            # The bar takes whatever width the text leaves, so the line fits 80 columns.
            self._bar = progress_bar(TextColumn("steps, epoch {task.fields[epoch]}, loss {task.fields[loss]}, ETA"),
                                     TimeRemainingColumn(), console=self.console, width=None)
            self._task = self._bar.add_task(name, total=state.max_steps, epoch=f"1/{self._epochs}", loss="–")
            self._bar.start()

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._bar is not None:
                epoch = min(int(state.epoch or 0) + 1, self._epochs)
                self._bar.update(self._task, epoch=f"{epoch}/{self._epochs}")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._bar is not None:
                self._bar.update(self._task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kw: Any) -> None:
            if self._bar is not None and logs and "loss" in logs:
                self._bar.update(self._task, loss=f"{float(logs['loss']):.4f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            short = self._bar is not None and state.global_step < state.max_steps
            self.close()
            if short:  # early stopping leaves the bar short of its total: say why, or it looks stuck
                self.say(f"{name}: stopped early after {state.global_step} of {state.max_steps} steps")

    return RichProgress()
