"""The prompt formats, in one place: the few-shot probe format and the zero-shot fine-tune format.

Probe (PAPER.md §1), plain completion:
    Q: <exemplar question>\nA: <exemplar answer>\n   (k times)
    Q: <question>\nA:
The model's answer is what follows "A:" up to the first newline (STOP).

Fine-tune / eval (zero-shot): the same "Q: ...\nA:" query with no exemplars, target
" <answer>\n", so the trained model answers in the probe's format and stops at the newline. With
chat=True the tokenizer's chat template wraps the question as a user turn instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from gradual.data.items import Item

STOP = "\n"
# Version of the text formats below (probe prompt and fine-tune prompt/target). Bump it whenever the probe
# or fine-tune text format changes: it is part of every probe cache key (gradual.probe.cache), so
# entries computed with an older format are recomputed, never served.
PROMPT_VERSION = 1


def query(question: str) -> str:
    return f"Q: {question}\nA:"


def exemplar(question: str, answer: str) -> str:
    return f"{query(question)} {answer}{STOP}"


def probe_prefix(exemplars: Sequence[Item]) -> str:
    """The shared part of every probe prompt that uses this exemplar set (its KV cache is reused)."""
    return "".join(exemplar(e.question, e.answer) for e in exemplars)


def probe_prompt(exemplars: Sequence[Item], question: str) -> str:
    return probe_prefix(exemplars) + query(question)


def answer_continuation(answer: str) -> str:
    """What the model must produce after "A:" for `answer` to count, stop included."""
    return f" {answer}{STOP}"


@dataclass(frozen=True)
class FinetuneFormat:
    """Zero-shot prompt/target pair used for training and for greedy evaluation."""

    chat: bool = False

    def prompt(self, question: str, tokenizer: Any = None) -> str:
        if not self.chat:
            return query(question)
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("chat format needs a tokenizer with a chat template")
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )

    def target(self, answer: str, tokenizer: Any = None) -> str:
        if not self.chat:
            return answer_continuation(answer)
        eos = getattr(tokenizer, "eos_token", None) or ""
        return f"{answer}{eos}"


# A fixed 4-shot prompt for sanity checks (`gradual model ask`, the demo's first look).
SANITY_EXEMPLARS = (
    Item("x1", "What is the capital of Germany?", ("Berlin",)),
    Item("x2", "What is the capital of Japan?", ("Tokyo",)),
    Item("x3", "What is the capital of Italy?", ("Rome",)),
    Item("x4", "What is the capital of Canada?", ("Ottawa",)),
)
