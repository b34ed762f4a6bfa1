"""Training throughput of one stage against the model's raw forward+backward speed.

Run as: .venv/bin/python benchmarks/train_speed.py [--items 256] [--batch-size 16] [--precisions]

What it measures, on the embedded default model (smollm2-135m) and world-facts QA items:

- stage: `gradual.train.train_stage` (the transformers Trainer path: its length-grouped batches, loss
  on answer tokens, optimizer, scheduler, callbacks), timed over its last epoch (the first warms up
  the kernels), counting only non-padding tokens;
- raw: a plain loop of forward + backward on the SAME LoRA model, the SAME batches (those the stage's
  Trainer drew in its last epoch, recorded by wrapping the stage's collator), the same precision,
  counting every position of every batch as useful
  (no padding waste charged), no optimizer step. Two variants: the model's standard forward
  (logits at every position), and the forward with logits only at answer positions as the stage
  computes them; the efficiency reported on the last line is against the faster of the two, so it
  charges the stage for padding and loop overhead and credits it for nothing else.

efficiency = stage tokens/s / raw tokens/s. With --precisions it first times raw forward+backward
under each candidate precision and checks the loss and gradient against fp32 (the numbers behind
gradual.train.choose_precision). Peak memory is the process's peak resident set (CPU) or peak CUDA
allocation. Last line: `train_speed: efficiency=<ratio> tokens_per_s=<n>`.
"""

from __future__ import annotations


# Before torch loads OpenMP. Spinning waiters hurt only when other processes share the cores (measured
# then: dropout on a 16x18x576 tensor 23 ms ACTIVE vs 1.4 ms PASSIVE); see gradual.openmp.
from gradual.openmp import set_wait_policy  # noqa: E402

set_wait_policy()  # as gradual's CLI, before torch loads

import argparse
import math
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gradual.config import TrainConfig
from gradual.data.items import Item
from gradual.lm.load import load_model
from gradual.prompts import FinetuneFormat
from gradual.train.data import Collator, encode_item

Features = list[dict[str, list[int]]]
RECORDED: list[Features] = []  # every batch the stage's Trainer collated, in order


class RecordingCollator(Collator):
    """The stage's collator, also recording each batch's examples (installed in place of
    gradual.train.stage.Collator), so the raw loop replays exactly the stage's batches."""

    def __call__(self, features: Features) -> dict[str, torch.Tensor]:
        RECORDED.append(list(features))
        return super().__call__(features)


def bench_items(n: int, seed: int = 0) -> list[Item]:
    """n world-facts items, spread over relations (seeded)."""
    from gradual.data.world import world_items

    items = world_items(seed)
    return random.Random(seed).sample(items, min(n, len(items)))


def peak_mem_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def grouped_features(tok: Any, items: list[Item], batch_size: int, seed: int) -> list[Features]:
    """Length-grouped batches of encoded items, grouped the way the Trainer's group_by_length does."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    fmt = FinetuneFormat()
    rows = [encode_item(it, tok, fmt) for it in items]
    order = get_length_grouped_indices([len(r["input_ids"]) for r in rows], batch_size,
                                       generator=torch.Generator().manual_seed(seed))
    return [[rows[i] for i in order[k: k + batch_size]] for k in range(0, len(order), batch_size)]


def collate(tok: Any, batches: list[Features], slice_logits: bool) -> list[dict[str, torch.Tensor]]:
    """Tensor batches as the stage builds them (optionally with logits only at answer positions)."""
    fn = Collator(tok.pad_token_id, slice_logits=slice_logits)
    return [fn(b) for b in batches]


def time_raw(model: Any, batches: list[dict[str, torch.Tensor]], autocast: torch.dtype | None,
             repeats: int = 1, warm: bool = True) -> tuple[float, float]:
    """(tokens/s counting every position, seconds) of forward+backward over `batches` after a warm-up pass."""
    device = next(model.parameters()).device
    model.train()

    def one_pass() -> None:
        for b in batches:
            b = {k: v.to(device) for k, v in b.items()}
            with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                loss = model(**b).loss
            loss.backward()
            model.zero_grad(set_to_none=True)

    if warm:  # first sight of each batch shape builds kernels; not part of steady throughput
        one_pass()
    tokens = sum(b["input_ids"].numel() for b in batches) * repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        one_pass()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return tokens / dt, dt


def compare_precisions(spec: str, items: list[Item], batch_size: int, rounds: int = 3) -> None:
    """Raw forward+backward speed and agreement with fp32 for each candidate precision (LoRA r16).

    The candidates are timed in interleaved rounds (median reported), so load from other processes
    drifts over all of them alike.
    """
    from peft import LoraConfig, get_peft_model

    cands = [("fp32 weights, no autocast", "fp32", None), ("fp32 weights, bf16 autocast", "fp32", torch.bfloat16),
             ("bf16 base + fp32 LoRA, bf16 autocast", "bf16", torch.bfloat16),
             ("bf16 base + fp32 LoRA, no autocast", "bf16", None)]
    built = []
    for label, dtype, autocast in cands:
        lm = load_model(spec, device="cpu", dtype=dtype)
        torch.manual_seed(0)
        model = get_peft_model(lm.model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                    target_modules="all-linear", task_type="CAUSAL_LM"))
        # Non-zero B so gradients reach A too and the comparison covers both factors.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn_like(p) * 0.01)
        batches = collate(lm.tokenizer, grouped_features(lm.tokenizer, items, batch_size, 0), slice_logits=True)
        built.append((label, model, batches, autocast))
    speeds: dict[str, list[float]] = {label: [] for label, *_ in built}
    for r in range(rounds):
        for label, model, batches, autocast in built:
            speeds[label].append(time_raw(model, batches, autocast, warm=r == 0)[0])
    ref_loss = ref_grad = None
    print(f"{'precision':40s} {'tok/s':>8s} {'loss':>8s} {'|dloss|':>8s} {'grad cos':>8s}   (median of {rounds} rounds)")
    for label, model, batches, autocast in built:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast is not None):
            loss = model(**batches[0]).loss
        loss.backward()
        loss = loss.detach()
        grad = torch.cat([p.grad.flatten().double() for n, p in model.named_parameters() if p.requires_grad])
        model.zero_grad(set_to_none=True)
        if ref_grad is None:
            ref_loss, ref_grad = float(loss), grad
        cos = float(grad @ ref_grad / (grad.norm() * ref_grad.norm()))
        tps = sorted(speeds[label])[len(speeds[label]) // 2]
        print(f"{label:40s} {tps:8.0f} {float(loss):8.4f} {abs(float(loss) - ref_loss):8.4f} {cos:8.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--items", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--epochs", type=int, default=2, help="stage epochs; the last one is timed")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--precisions", action="store_true", help="first compare candidate precisions (CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import gradual.train.stage as stage_mod
    from gradual.train import train_stage

    items = bench_items(args.items)
    if args.precisions:
        compare_precisions(args.model, items[:64], args.batch_size)  # a subset: 4 candidates x 2 passes

    lm = load_model(args.model, args.device, args.dtype)
    device = lm.placement.device
    print(f"model {args.model} on {lm.placement.reason}; {len(items)} items, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0)
    stage_mod.Collator = RecordingCollator  # type: ignore[misc]  # see RecordingCollator
    with tempfile.TemporaryDirectory() as tmp:
        res = train_stage(lm, items, [], cfg, Path(tmp) / "stage", progress=False, name="bench")
    stage_mod.Collator = Collator  # type: ignore[misc]
    last_epoch = RECORDED[-math.ceil(len(items) / cfg.batch_size):]  # one collator call per batch
    last = res.metrics[-1]
    stage_tps = last["tokens"] / last["train_s"]
    print(f"stage ({res.precision}): epoch {last['epoch']}: {last['tokens']} tokens in {last['train_s']:.2f}s "
          f"= {stage_tps:.0f} non-padding tokens/s; whole stage {res.wall_s:.1f}s; "
          f"peak memory {peak_mem_mib(device):.0f} MiB")

    from gradual.train import choose_precision

    # The trained PeftModel, put back in training mode: same weights, adapters, precision.
    model = res.model
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    autocast = choose_precision(model, lora=True).autocast
    results = {}
    for slice_logits in (False, True):
        batches = collate(lm.tokenizer, last_epoch, slice_logits)
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        total = sum(b["input_ids"].numel() for b in batches)
        tps, dt = time_raw(model, batches, autocast)
        results[slice_logits] = tps
        what = "logits at answer positions" if slice_logits else "standard forward (all logits)"
        print(f"raw fwd+bwd, {what}: {total} positions ({real} non-padding, {total - real} padding) in {dt:.2f}s "
              f"= {tps:.0f} tokens/s; efficiency vs this {stage_tps / tps:.3f}")
    best_raw = max(results.values())
    print(f"peak memory {peak_mem_mib(device):.0f} MiB")
    print(f"train_speed: efficiency={stage_tps / best_raw:.3f} tokens_per_s={stage_tps:.0f}")


if __name__ == "__main__":
    sys.exit(main())
