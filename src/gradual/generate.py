"""Batched greedy generation that stops at the answer's newline: used by eval and dev checks.

The probe has its own faster engine (gradual.probe.engine); this is the plain path for short
zero-shot prompts, where there is no shared prefix to reuse.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from gradual.answers import extract_answer
from gradual.data.items import Item
from gradual.prompts import STOP, probe_prompt

# A fixed 4-shot prompt for sanity checks (`gradual model ask`, the demo's first look).
SANITY_EXEMPLARS = (
    Item("x1", "What is the capital of Germany?", ("Berlin",)),
    Item("x2", "What is the capital of Japan?", ("Tokyo",)),
    Item("x3", "What is the capital of Italy?", ("Rome",)),
    Item("x4", "What is the capital of Canada?", ("Ottawa",)),
)


@torch.no_grad()
def greedy_generate(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 16, batch_size: int = 32,
    answers: Sequence[Sequence[str]] | None = None,
) -> list[str]:
    """Greedy continuations of `prompts`, each cut at the first newline.

    `answers` (per prompt, its accepted answers; for callers that only need right or wrong, as the dev
    check): a row also stops once its text can no longer match any of them (a truncated, wrong text)."""
    from gradual.probe.engine import answer_skeleton, can_still_match
    device = next(model.parameters()).device
    stop_ids = {i for tok, i in tokenizer.get_vocab().items() if STOP in tokenizer.convert_tokens_to_string([tok])}
    if tokenizer.eos_token_id is not None:
        stop_ids.add(tokenizer.eos_token_id)
    stop = torch.tensor(sorted(stop_ids), device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[str] = []
    # Longest first keeps padding low inside a batch; results are restored to input order.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    keys = [[answer_skeleton(a) for a in ans] for ans in answers] if answers is not None else []
    results: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = [tokenizer(prompts[i], add_special_tokens=False)["input_ids"] for i in idx]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for r, e in enumerate(enc):  # left padding so every row ends where generation starts
            ids[r, width - len(e):] = torch.tensor(e)
            mask[r, width - len(e):] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        done = torch.zeros(len(enc), dtype=torch.bool, device=device)
        gen: list[list[int]] = [[] for _ in enc]
        cur_ids, cur_pos = ids, pos
        for _ in range(max_new_tokens):
            res = model(input_ids=cur_ids, attention_mask=mask, position_ids=cur_pos, past_key_values=past,
                        use_cache=True, logits_to_keep=1)
            past = res.past_key_values
            nxt = res.logits[:, -1, :].argmax(-1)
            for r in range(len(enc)):
                if not done[r]:
                    gen[r].append(int(nxt[r]))
            done |= torch.isin(nxt, stop)
            if answers is not None:  # wrong whatever follows: decoding on would only cost steps
                live = [r for r in range(len(enc)) if not done[r]]
                texts = tokenizer.batch_decode([gen[r] for r in live], skip_special_tokens=True)
                for r, text in zip(live, texts):
                    if not can_still_match(text, keys[idx[r]]):
                        done[r] = True
            if bool(done.all()):
                break
            cur_ids = nxt[:, None]
            cur_pos = cur_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((len(enc), 1), dtype=mask.dtype, device=device)], dim=1)
        for r, i in enumerate(idx):
            results[i] = extract_answer(tokenizer.decode(gen[r], skip_special_tokens=True))
    out = [results[i] for i in range(len(prompts))]
    return out


def few_shot_answers(lm: Any, questions: Sequence[str], max_new_tokens: int = 16) -> list[str]:
    prompts = [probe_prompt(SANITY_EXEMPLARS, q) for q in questions]
    return greedy_generate(lm.model, lm.tokenizer, prompts, max_new_tokens=max_new_tokens)
