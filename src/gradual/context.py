"""Prompts that fit the model: checked once the tokenizer is loaded, before any forward pass.

Run as: used by gradual.probe.run (few-shot prompt + answer budget) and gradual.evaluate (zero-shot
prompt + answer budget).

A prompt longer than the model's context window does not fail cleanly: positions past the window
are garbage or an index error, and a 5 MB question asks the allocator for terabytes. So the longest
prompt is measured first and refused with its item id, its length and what to change.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from gradual.errors import UserError

# Config fields that hold a causal LM's context length, in the order transformers' model families use them.
_WINDOW_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_window(model: Any) -> int | None:
    """The model's context length in tokens, or None when its config does not say."""
    cfg = getattr(model, "config", None)
    for name in _WINDOW_FIELDS:
        value = getattr(cfg, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def token_lengths(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Token count of each text, as the engines encode it (no special tokens)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def check_fits(needs: Iterable[tuple[str, int]], window: int | None, what: str, fix: str) -> None:
    """UserError (exit 2) naming the longest item when any (item id, tokens needed) exceeds `window`."""
    if window is None:
        return
    over = [(n, i) for i, n in needs if n > window]
    if not over:
        return
    n, ident = max(over)
    more = f" ({len(over)} items are too long)" if len(over) > 1 else ""
    raise UserError(f"item {ident!r}: {what} needs {n} tokens, more than the model's context of {window}{more}; {fix}")
