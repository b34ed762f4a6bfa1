"""Fixtures of the trainer tests: a fresh tiny model per test (training changes it) and sample items."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradual.data.items import Item, item_from_dict


@pytest.fixture
def lm(tiny_model_dir: Path):
    """A fresh model per test: train_stage injects LoRA layers into it."""
    from gradual.lm.load import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="fp32")


@pytest.fixture
def items(sample_items: list[dict]) -> list[Item]:
    return [item_from_dict(r, "sample", i) for i, r in enumerate(sample_items)]
