"""Which tokens end an answer: the decoder's stop set, and the stops that keep the answer intact.

Run as: used by gradual.lm.hf (decoding and exact scores) and gradual.lm.backends (vLLM's STOP_OK).

An answer is the text after "A:" up to the first newline (gradual.prompts.STOP), so a token stops
decoding when its text contains a newline, or is an end-of-sequence token. STOP_OK, the stops whose
text before the newline is only punctuation or white space, end an answer without changing it: the
exact estimator's stop factor is the probability of that set.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from gradual.answers import PUNCTUATION


def stop_sets(tokenizer: Any, model: Any, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool masks over the model's vocab: tokens that stop decoding, and stops that keep the answer intact.

    Kept on the tokenizer (decoding the whole vocab takes ~0.5 s, and eval and the trainer's dev check
    build an engine per batch)."""
    eos_ids = tuple(sorted(_eos_ids(tokenizer, model)))
    memo = getattr(tokenizer, "_gradual_stop_sets", None)
    key = (len(tokenizer), vocab, str(device), eos_ids)
    if memo is not None and memo[0] == key:
        return memo[1]
    sets = _compute_stop_sets(tokenizer, vocab, device, eos_ids)
    try:
        tokenizer._gradual_stop_sets = (key, sets)
    except AttributeError:  # a tokenizer that takes no attributes just recomputes
        pass
    return sets


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    eos: set[int] = set()
    for src in (tokenizer.eos_token_id, getattr(getattr(model, "config", None), "eos_token_id", None),
                getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(src, int):
            eos.add(src)
        elif isinstance(src, (list, tuple)):
            eos.update(int(x) for x in src)
    return eos


def _compute_stop_sets(tokenizer: Any, vocab: int, device: torch.device,
                       eos: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(len(tokenizer), vocab)
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    stop = torch.zeros(vocab, dtype=torch.bool)
    ok = torch.zeros(vocab, dtype=torch.bool)
    for i, text in enumerate(texts):
        if "\n" in text:
            stop[i] = True
            head = text.split("\n", 1)[0]
            ok[i] = all(ch.isspace() or ch in PUNCTUATION for ch in head)
    for e in eos:
        if 0 <= e < vocab:
            stop[e] = ok[e] = True
    return stop.to(device), ok.to(device)
