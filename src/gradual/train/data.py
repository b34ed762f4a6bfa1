"""Training data for one stage: tokenized examples, the padding collator, replay.

Run as: used by gradual.train.stage (`gradual train`, `gradual run`).

Each item becomes prompt ids + target ids in the zero-shot fine-tune format (gradual.prompts),
with labels -100 on the prompt, so the loss is on the answer tokens only. Prompt and target are
tokenized separately, exactly as greedy evaluation later feeds the prompt alone, so training and
decoding see the same token boundary. Batches are length-grouped by the Trainer (`group_by_length`),
which reads each example's length from its `input_ids`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from gradual.data.items import Item, seeded_subset
from gradual.prompts import FinetuneFormat

IGNORE = -100
MAX_TOKENS = 512  # QA pairs are short; this only guards against a pathological question


def encode_item(item: Item, tokenizer: Any, fmt: FinetuneFormat, max_tokens: int = MAX_TOKENS) -> dict[str, list[int]]:
    """Token ids and labels for one item (labels -100 on the prompt)."""
    prompt = tokenizer(fmt.prompt(item.question, tokenizer), add_special_tokens=False)["input_ids"]
    target = tokenizer(fmt.target(item.answer, tokenizer), add_special_tokens=False)["input_ids"]
    target = target[:max_tokens // 2]
    if len(prompt) + len(target) > max_tokens:
        # Keep the end of the prompt: it holds the question's tail and the "A:" cue.
        prompt = prompt[len(prompt) + len(target) - max_tokens:]
    return {"input_ids": list(prompt) + list(target), "labels": [IGNORE] * len(prompt) + list(target)}


class EncodedDataset(Dataset):
    """A list of encoded examples (tiny: a QA set fits in memory many times over).

    Each example is a dict with `input_ids`: the key the Trainer's length-grouped sampler measures.
    """

    def __init__(self, rows: Sequence[dict[str, list[int]]]):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]

    @property
    def n_tokens(self) -> int:
        return sum(self.lengths)


@dataclass
class Collator:
    """Right-pad a batch; labels are -100 on padding.

    With `slice_logits`, the batch also carries `logits_to_keep` (the sequence positions whose
    logits predict some answer token, as one contiguous range shared by the batch) and the matching
    `shift_labels`. The model then projects only those positions onto the vocabulary: on a small
    model the LM head over a 49k vocabulary is a large share of the compute, and the prompt
    positions it would score carry no loss anyway.
    """

    pad_id: int
    slice_logits: bool = False

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n] = torch.tensor(f["input_ids"])
            labels[r, :n] = torch.tensor(f["labels"])
            mask[r, :n] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.slice_logits:
            cols = (labels != IGNORE).any(0).nonzero().flatten()
            if len(cols):
                # The logit at position t predicts the token at t + 1.
                lo, hi = int(cols.min()) - 1, int(cols.max())
                batch["logits_to_keep"] = torch.arange(lo, hi)
                batch["shift_labels"] = labels[:, lo + 1: hi + 1].contiguous()
        return batch


def replay_count(ratio: float, n_train: int) -> int:
    return int(round(ratio * n_train))


def sample_replay(pool: Sequence[Item], ratio: float, n_train: int, seed: int,
                  exclude: set[str] | frozenset[str] = frozenset()) -> list[Item]:
    """round(ratio * n_train) items from `pool` (seeded, without replacement, capped by the pool).

    Items whose id is in `exclude` (the stage's own items) are never replayed, so no item appears
    twice in one stage.
    """
    candidates = [it for it in pool if it.id not in exclude]
    k = min(replay_count(ratio, n_train), len(candidates))
    if k <= 0:
        return []
    return seeded_subset(candidates, k, seed)  # pool order, for readable files
