"""A tiny model that has memorized a few facts, so a test knows exactly what it answers.

The random tiny Llama of conftest answers the same junk to every question ("::::"), so a test on
it can only check types and ranges, which pass whatever the code does. A few seconds of training
make it answer FACTS exactly, both zero-shot (the fine-tune/eval format) and after the sanity
few-shot prefix (`gradual model ask`); tests can then assert exact predictions and accuracies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest

from tests.conftest import build_tiny_model

FACTS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "Paris"),
    ("Which continent is Peru on?", "South America"),
    ("What is the currency of Japan?", "Japanese yen"),
    ("Which country is the city of Lyon in?", "France"),
)


def memorize(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], max_steps: int = 400, lr: float = 1e-2) -> None:
    """Train `model`'s trainable parameters until each prompt's greedy continuation is its target.

    Teacher-forced: when every target token is the argmax after its prefix, greedy decoding
    produces the target. Each must beat the runner-up by a logit margin of 1, so the result
    survives the slightly different arithmetic of batched, left-padded generation. (A margin, not
    a small loss: a LoRA adapter behind the final norm of a 32-wide model cannot make the
    distribution sharp, yet easily makes its target the clear argmax.)
    """
    import torch

    rows = []
    for prompt, target in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"]
        rows.append((p + t, [-100] * len(p) + t))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in rows])
    labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in rows])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in rows])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    torch.manual_seed(0)
    for _ in range(max_steps):
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        with torch.no_grad():
            scored = labels[:, 1:] != -100
            logits = out.logits[:, :-1][scored]
            gold = labels[:, 1:][scored]
            target = logits.gather(1, gold[:, None]).squeeze(1)
            runner_up = logits.scatter(1, gold[:, None], float("-inf")).max(-1).values
            if bool((target - runner_up >= 1.0).all()):
                model.eval()
                return
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    raise RuntimeError(f"the tiny model did not memorize {len(pairs)} answers in {max_steps} steps")


def fact_pairs(facts: Sequence[tuple[str, str]] = FACTS) -> list[tuple[str, str]]:
    """(prompt, continuation) for each fact, zero-shot and behind the sanity few-shot prefix."""
    from gradual.prompts import SANITY_EXEMPLARS, answer_continuation, probe_prompt, query

    pairs = []
    for q, a in facts:
        pairs.append((query(q), answer_continuation(a)))
        pairs.append((probe_prompt(SANITY_EXEMPLARS, q), answer_continuation(a)))
    return pairs


def build_memorized_model(out: Path) -> Path:
    """The conftest tiny Llama (seed 0) after memorizing FACTS, saved as a HF model folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_model(out.parent / f"{out.name}-base")
    model = AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    memorize(model, tok, fact_pairs())
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


_BUILT: dict[Path, Path] = {}


def memorized_model_dir(factory: pytest.TempPathFactory) -> Path:
    """Built once per test session, whichever test module asks first."""
    key = factory.getbasetemp()
    if key not in _BUILT:
        _BUILT[key] = build_memorized_model(factory.mktemp("memorized") / "model")
    return _BUILT[key]
