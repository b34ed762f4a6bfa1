"""Prompts (gradual.prompts): the probe's few-shot prompt and the fine-tune format."""

from __future__ import annotations

from gradual.data.items import Item
from gradual.prompts import FinetuneFormat, probe_prompt


def test_probe_prompt_format() -> None:
    ex = [Item("a", "Q1?", ("A1",)), Item("b", "Q2?", ("A2", "alias"))]
    assert probe_prompt(ex, "Q3?") == "Q: Q1?\nA: A1\nQ: Q2?\nA: A2\nQ: Q3?\nA:"
    fmt = FinetuneFormat()
    assert fmt.prompt("Q3?") + fmt.target("A3") == "Q: Q3?\nA: A3\n"
