"""Training data (gradual.train.data): loss on the answer tokens only, collation, sliced logits, replay."""

from __future__ import annotations

import torch

from gradual.data.items import Item
from gradual.prompts import FinetuneFormat
from gradual.train.data import IGNORE, Collator, encode_item, sample_replay


def test_encode_and_collate_put_loss_on_answer_tokens_only(lm) -> None:
    tok, fmt = lm.tokenizer, FinetuneFormat()
    it = Item("x", "What is the capital of France?", ("Paris",))
    enc = encode_item(it, tok, fmt)
    prompt_ids = tok(fmt.prompt(it.question), add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert enc["input_ids"][:n] == prompt_ids
    assert enc["labels"][:n] == [IGNORE] * n
    answer = [t for t in enc["labels"] if t != IGNORE]
    assert tok.decode(answer) == " Paris\n" and enc["input_ids"][n:] == answer

    short = encode_item(Item("y", "Which continent is Peru on?", ("South America",)), tok, fmt)
    feats = [enc, short]
    batch = Collator(tok.pad_token_id)(feats)
    width = max(len(f["input_ids"]) for f in feats)
    assert batch["input_ids"].shape == (2, width)
    for r, f in enumerate(feats):
        k = len(f["input_ids"])
        assert batch["labels"][r, :k].tolist() == f["labels"]
        assert (batch["labels"][r, k:] == IGNORE).all() and (batch["attention_mask"][r, k:] == 0).all()
        assert (batch["attention_mask"][r, :k] == 1).all()

    # Logits only at answer positions: the same loss as the full forward.
    sliced = Collator(tok.pad_token_id, slice_logits=True)(feats)
    assert (sliced["shift_labels"] != IGNORE).sum() == (batch["labels"] != IGNORE).sum()
    with torch.no_grad():
        full = lm.model(**batch).loss
        part = lm.model(**sliced).loss
    assert torch.allclose(full, part, atol=1e-5)


def test_sample_replay_ratio_and_cap(items) -> None:
    train, pool = items[:6], items[4:]
    got = sample_replay(pool, 0.5, len(train), seed=0, exclude={it.id for it in train})
    assert len(got) == 3 and not {it.id for it in got} & {it.id for it in train}
    assert got == sample_replay(pool, 0.5, len(train), seed=0, exclude={it.id for it in train})
    assert len(sample_replay(pool, 10.0, len(train), seed=0, exclude={it.id for it in train})) == len(pool) - 2
    assert sample_replay(pool, 0.0, len(train), seed=0) == []
