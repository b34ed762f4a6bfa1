"""One stage of fine-tuning: LoRA (or full) on the zero-shot QA format, early stopping on dev.

Run as: gradual train --model smollm2-135m --data train.jsonl --dev dev.jsonl --out runs/stage1

Built on the transformers `Trainer`, so `accelerate launch -m gradual.cli train ...` runs it with
DDP/FSDP/DeepSpeed on several GPUs with no code of ours. The Trainer does what it can itself:
length-grouped batches (`group_by_length`), early stopping (`EarlyStoppingCallback`) and the best
epoch (`load_best_model_at_end`, checkpoints in a scratch folder), reporting (`report_to`). What we
add around it:

- the loss on answer tokens only (gradual.train.data), and logits computed only at answer
  positions where the model supports `logits_to_keep`;
- "evaluate" is greedy exact match on a fixed dev subset (at most `max_dev` items) after every
  epoch, logged as `eval_dev_accuracy` (the metric for the best epoch and for early stopping);
  training stops after `patience` epochs without improvement (patience 0: never stop early, still
  keep the best);
- a dev split smaller than `min_dev` cannot pick an epoch reliably: all epochs are trained, the
  last is kept (no checkpoints at all), and every metrics row says so (`selection`);
- precision (gradual.train.precision): a bf16/fp16 model keeps its frozen base weights in that
  dtype, LoRA weights in fp32, and runs under autocast; full fine-tuning upcasts to fp32 master
  weights for the stage and casts back afterwards;
- outputs, each written atomically: `adapter/` (standard PEFT; `model/` for full fine-tuning),
  `train_items.jsonl` (replay marked), `metrics.jsonl` (one row per epoch, best marked), and last
  `stage.json`, whose presence means the stage finished; with
  `report_to` including tensorboard, event files under `logs/`.

`train_stage` injects LoRA layers into `lm.model` in place; use `StageResult.model` afterwards,
and `merge_into_base` before training the next stage's fresh adapter on top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from gradual import distributed as dist
from gradual.answers import answer_stop, is_correct
from gradual.atomic import atomic_dir, write_json, write_jsonl
from gradual.config import TrainConfig
from gradual.data.items import Item, seeded_subset
from gradual.lm.hf import greedy_answers
from gradual.prompts import FinetuneFormat
from gradual.rundir import ADAPTER_DIR, MODEL_DIR, StageDir
from gradual.train.callbacks import DEV_METRIC, EpochMonitor, make_callback, rich_progress
from gradual.lm.load import quiet_peft
from gradual.train.compat import tensorboard_dir, training_args
from gradual.train.data import Collator, EncodedDataset, encode_item, sample_replay
from gradual.train.precision import choose_precision
from gradual.train.trackers import check_report_to, end_runs, parse_report_to


@dataclass
class StageResult:
    model: Any  # PeftModel with the best epoch's adapter loaded, or the full model
    best_epoch: int
    dev_accuracy: float | None
    metrics: list[dict[str, Any]]
    n_train: int
    n_replay: int
    wall_s: float
    out_dir: Path
    selection: str = "dev"  # "dev": best dev epoch; "last": dev too small or absent
    stopped_early: bool = False
    precision: str = ""
    note: str = ""


def dev_max_new_tokens(items: Sequence[Item], tokenizer: Any, fmt: FinetuneFormat) -> int:
    """Enough new tokens for the longest accepted answer and its stop, no more (decoding is the cost)."""
    longest = max(len(tokenizer(fmt.target(a, tokenizer), add_special_tokens=False)["input_ids"])
                  for it in items for a in it.answers)
    return min(longest + 1, 48)


def evaluate_dev(model: Any, tokenizer: Any, items: Sequence[Item], fmt: FinetuneFormat,
                 autocast: torch.dtype | None = None, batch_size: int = 64) -> float:
    """Greedy exact match (alias-aware) of `model` on `items` in the fine-tune format.

    Under a multi-process launch every rank calls this (the Trainer evaluates on all of them): each
    decodes its shard and the counts are summed, so every rank gets the same accuracy and takes
    the same best-epoch and early-stopping decisions."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mine = dist.shard(items)
    prompts = [fmt.prompt(it.question, tokenizer) for it in mine]
    max_new = dev_max_new_tokens(items, tokenizer, fmt)  # over every item: the same on every rank
    preds: list[str] = []
    if prompts:
        with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            # Only right or wrong counts here: rows that can no longer be right stop early.
            preds = greedy_answers(model, tokenizer, prompts, max_new_tokens=max_new, batch_size=batch_size,
                                   row_stops=[answer_stop(it.answers) for it in mine],
                                   drafts=[fmt.target(it.answers[0], tokenizer) if it.answers else None for it in mine])
    if was_training:
        model.train()
    right = sum(dist.all_gather(sum(bool(is_correct(p, it.answers)) for p, it in zip(preds, mine))))
    return right / len(items)


def dev_subset(items: Sequence[Item], max_dev: int, seed: int) -> list[Item]:
    """A fixed subset of at most `max_dev` dev items (same every epoch, so epochs compare)."""
    return seeded_subset(items, max_dev, seed)


def merge_into_base(model: Any) -> Any:
    """Fold a LoRA adapter into the base weights (the next stage trains a fresh adapter on top)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
        model.eval()
    return model


def _stage_trainer_cls() -> Any:
    from transformers import Trainer

    class StageTrainer(Trainer):
        """A Trainer whose "evaluate" is greedy exact match on dev instead of eval loss."""

        dev_items: list[Item] = []
        fmt = FinetuneFormat()
        autocast: torch.dtype | None = None

        def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None,
                     metric_key_prefix: str = "eval") -> dict[str, float]:
            # Keys carry the prefix the Trainer's best-model logic and EarlyStoppingCallback look up
            # (eval_ + metric_for_best_model); `log` sends them to every report_to integration.
            metrics: dict[str, float] = {f"{metric_key_prefix}_dev_n": len(self.dev_items)}
            if self.dev_items:
                metrics[f"{metric_key_prefix}_{DEV_METRIC}"] = evaluate_dev(
                    self.model, self.processing_class, self.dev_items, self.fmt, self.autocast)
            self.log(dict(metrics))  # a copy: log() adds "epoch" to the dict it is given
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return StageTrainer


def _sharded_launch() -> bool:
    """True under `accelerate launch` with FSDP or DeepSpeed, where the Trainer refuses
    `save_only_model` together with `load_best_model_at_end` (its full checkpoints are needed there)."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_FSDP") or parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")


def _supports_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


@contextlib.contextmanager
def _trainer_scratch(out_dir: Path) -> Iterator[str]:
    """The Trainer's output_dir for the epoch checkpoints: `<stage folder>/.trainer`, inside the run folder
    and not in /tmp, so a killed run leaves nothing behind that is not removed when the stage starts
    again (`--resume`). Every rank sees it, because rank 0 saves the checkpoints and every rank reloads
    the best one at the end (a per-rank temp folder would leave the others with the last epoch)."""
    scratch = StageDir(out_dir).scratch
    if dist.is_main():
        shutil.rmtree(scratch, ignore_errors=True)  # left by a killed run
        scratch.mkdir(parents=True)
    dist.barrier()
    try:
        yield str(scratch)
    finally:
        if dist.is_main():
            shutil.rmtree(scratch, ignore_errors=True)


def _selection(n_dev: int, config: TrainConfig) -> tuple[bool, str]:
    """Whether the best epoch is chosen by dev exact match (enough dev items), and the note saying how."""
    if not n_dev:
        return False, "no dev items: trained all epochs, kept the last"
    if n_dev < max(config.min_dev, 1):
        return False, f"dev has {n_dev} items < min_dev {config.min_dev}: trained all epochs, kept the last"
    return True, f"best of {config.epochs} epochs by dev exact match on {n_dev} items, patience {config.patience}"


def _trainable(model: Any, config: TrainConfig) -> tuple[Any, Any, Any]:
    """(the model to train, its precision, its dtype before): a previous stage's adapter folded in, cast
    to the master dtype where training needs one, and a fresh LoRA adapter on all linear layers."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import set_seed

    if isinstance(model, PeftModel):  # a previous stage's adapter: fold it in, train a fresh one on top
        model = merge_into_base(model)
    precision = choose_precision(model, config.lora)
    orig_dtype = next(model.parameters()).dtype
    if precision.master is not None:
        model = model.to(precision.master)
    set_seed(config.seed)  # LoRA initialisation draws from the global RNG
    if config.lora:
        lora_cfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules="all-linear", task_type="CAUSAL_LM")
        with quiet_peft():
            model = get_peft_model(model, lora_cfg)
    return model, precision, orig_dtype


def _arguments(config: TrainConfig, scratch: str, sd: StageDir, per_device: int, accum: int, device: Any,
               precision: Any, selecting: bool, report_to: list[str], run_name: str) -> Any:
    """The Trainer's arguments for one stage (every choice explained where it is made)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=scratch, num_train_epochs=config.epochs, learning_rate=config.lr,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=accum,
        # Several CPU processes: DDP over gloo (the group gradual.lm.load already joined).
        ddp_backend="gloo" if device.type == "cpu" and dist.is_distributed() else None,
        # Every trainable weight (LoRA on all linear layers, or the whole model) takes part in each
        # forward: DDP's search for unused ones would only cost an extra graph walk per step.
        ddp_find_unused_parameters=False,
        weight_decay=config.weight_decay, seed=config.seed,
        data_seed=config.seed, bf16=precision.autocast == torch.bfloat16,
        fp16=precision.autocast == torch.float16, use_cpu=device.type == "cpu",
        # Batches of similar lengths (less padding; the sampler reads each example's input_ids),
        # and the warmup share, spelled as the installed transformers spells them.
        **training_args(group_by_length=True, warmup_ratio=config.warmup_ratio,
                        logging_dir=str(sd.logs)),
        eval_strategy="epoch", logging_strategy="epoch",
        # The best epoch: a checkpoint per epoch in the scratch folder (LoRA: only the adapter),
        # the best one reloaded at the end. save_total_limit 1 keeps at most the best and the
        # latest. Without dev selection nothing is saved and the last epoch is kept.
        save_strategy="epoch" if selecting else "no", load_best_model_at_end=selecting,
        metric_for_best_model=DEV_METRIC if selecting else None, greater_is_better=True,
        save_only_model=not _sharded_launch(), save_total_limit=1,
        report_to=report_to or "none", run_name=run_name,
        disable_tqdm=True, log_level="error", log_level_replica="error", dataloader_pin_memory=False, remove_unused_columns=False,
        label_names=["labels"],
    )


def _fit(model: Any, tok: Any, args: Any, dataset: Any, dev: list[Item], fmt: FinetuneFormat, precision: Any,
         callbacks: list[Any], bar: Any, report_to: list[str], sd: StageDir) -> tuple[bool, int | None]:
    """Train with the Trainer (dev exact match as its evaluation); (whether this is the main process,
    the best epoch's global step). The best epoch's weights end up in `model` when selecting."""
    from transformers.trainer_callback import PrinterCallback

    with tensorboard_dir(str(sd.logs)):
        trainer = _stage_trainer_cls()(
            model=model, args=args, train_dataset=dataset, eval_dataset=EncodedDataset([]),
            data_collator=Collator(tok.pad_token_id if tok.pad_token_id is not None else 0,
                                   slice_logits=_supports_logits_to_keep(model)),
            processing_class=tok, callbacks=callbacks,
        )
    # disable_tqdm swaps the Trainer's tqdm bar for PrinterCallback, which prints every raw log
    # dict; progress is drawn by our rich bar instead.
    trainer.remove_callback(PrinterCallback)
    trainer.dev_items, trainer.fmt, trainer.autocast = dev, fmt, precision.autocast
    try:
        with warnings.catch_warnings():
            # Checkpoints of epochs under a second apart (small stages) make the Trainer doubt
            # the filesystem's mtimes; it then orders them by step number, which is right here.
            warnings.filterwarnings("ignore", message="mtime may not be reliable")
            trainer.train()  # ends with the best epoch's weights loaded into `model` when selecting
    finally:
        if bar is not None:
            bar.close()  # an exception skips on_train_end; never leave a live bar behind
        end_runs(report_to)
    is_main = trainer.is_world_process_zero()
    best_step = trainer.state.best_global_step
    del trainer  # frees the optimizer state
    return is_main, best_step


def _callbacks(monitor: EpochMonitor, bar: Any, patience: int) -> list[Any]:
    """The per-epoch metrics rows, the progress bar, and early stopping: it counts evaluations without a
    strictly better dev accuracy than the best so far and stops at `patience` of them in a row (our
    patience semantics exactly, threshold 0; 0: never)."""
    from transformers import EarlyStoppingCallback

    callbacks: list[Any] = [make_callback(monitor)] + ([bar] if bar is not None else [])
    if patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    return callbacks


def train_stage(lm: Any, train_items: list[Item], dev_items: list[Item], config: TrainConfig, out_dir: Path, *,
                replay_items: Sequence[Item] = (), progress: bool = True, name: str = "stage",
                tracker_name: str | None = None) -> StageResult:
    """Fine-tune `lm.model` on `train_items` (+ replay), keep the best dev epoch, write the stage folder.

    `name` labels the stage in its record and progress bar; `tracker_name` (default `name`) is the
    run name the `report_to` trackers show, which the pipeline makes unique across run folders.
    """
    if not train_items:
        raise ValueError(f"{name}: no training items")
    check_report_to(config.report_to, "train.report_to")  # before the model is touched
    # The global batch stays batch_size x grad_accum however many processes share it.
    per_device, accum = dist.per_process_batch(config.batch_size, config.grad_accum)
    progress = progress and dist.is_main()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    sd = StageDir(out_dir)
    if dist.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    tok = lm.tokenizer
    fmt = FinetuneFormat(chat=config.chat)
    replay = sample_replay(replay_items, config.replay_ratio, len(train_items), config.seed,
                           exclude={it.id for it in train_items})
    dev = dev_subset(dev_items, config.max_dev, config.seed)
    selecting, note = _selection(len(dev), config)
    selection = "dev" if selecting else "last"
    model, precision, orig_dtype = _trainable(lm.model, config)
    lm.model = model

    rows = [encode_item(it, tok, fmt) for it in [*train_items, *replay]]
    dataset = EncodedDataset(rows)
    if dist.is_main():
        write_jsonl(sd.train_items, [{**it.to_dict(), "replay": False} for it in train_items]
                    + [{**it.to_dict(), "replay": True} for it in replay])

    def metrics_rows(done_rows: list[dict[str, Any]], best: int | None = None) -> list[dict[str, Any]]:
        return [{"stage": name, **r, "best": r["epoch"] == best, "selection": selection} for r in done_rows]

    def write_rows(done_rows: list[dict[str, Any]], best: int | None = None) -> None:
        if dist.is_main():
            write_jsonl(sd.metrics, metrics_rows(done_rows, best))

    bar = rich_progress(name) if progress else None
    monitor = EpochMonitor(selecting=selecting, n_tokens=dataset.n_tokens, on_row=write_rows, bar_prefix=name,
                           say=bar.say if bar is not None else None)
    callbacks = _callbacks(monitor, bar, config.patience if selecting else 0)
    device = next(model.parameters()).device
    report_to = parse_report_to(config.report_to)
    with _trainer_scratch(out_dir) as scratch:
        args = _arguments(config, scratch, sd, per_device, accum, device, precision, selecting, report_to,
                          tracker_name or name)
        is_main, best_step = _fit(model, tok, args, dataset, dev, fmt, precision, callbacks, bar, report_to, sd)

    assert monitor.rows  # at least one epoch ran
    if selecting:
        best_epoch = next(r["epoch"] for r in monitor.rows if r["step"] == best_step)
    else:
        best_epoch = len(monitor.rows)
    if precision.master is not None and orig_dtype != precision.master:
        model = model.to(orig_dtype)
    model.eval()
    lm.model = model
    wall = time.perf_counter() - t0
    result = StageResult(
        model=model, best_epoch=best_epoch, dev_accuracy=monitor.rows[best_epoch - 1]["dev_accuracy"],
        metrics=metrics_rows(monitor.rows, best_epoch), n_train=len(train_items), n_replay=len(replay),
        wall_s=round(wall, 3), out_dir=out_dir, selection=selection,
        stopped_early=len(monitor.rows) < config.epochs, precision=precision.reason, note=note,
    )
    if is_main:
        _save_weights(model, tok, out_dir, config.lora)
        write_rows(monitor.rows, best_epoch)
        write_json(sd.stage_json, _stage_record(result, config, name))
    dist.barrier()  # the other ranks may read the saved weights next (gradual run merges them)
    return result


def _save_weights(model: Any, tok: Any, out_dir: Path, lora: bool) -> None:
    with atomic_dir(StageDir(out_dir).weights(lora)) as tmp:
        model.save_pretrained(tmp)
        if not lora:
            tok.save_pretrained(tmp)


def _stage_record(r: StageResult, config: TrainConfig, name: str) -> dict[str, Any]:
    return {
        "name": name, "best_epoch": r.best_epoch, "dev_accuracy": r.dev_accuracy, "n_train": r.n_train,
        "n_replay": r.n_replay, "epochs_run": len(r.metrics), "stopped_early": r.stopped_early,
        "selection": r.selection, "note": r.note, "precision": r.precision, "wall_s": r.wall_s,
        "weights": ADAPTER_DIR if config.lora else MODEL_DIR, "config": dataclasses.asdict(config),
    }


__all__ = ["ADAPTER_DIR", "MODEL_DIR", "StageResult", "train_stage", "merge_into_base", "evaluate_dev",
           "dev_subset"]
