"""Training progress (gradual.train.callbacks): one rich bar and per-epoch lines, no tqdm, nothing with --quiet."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_training_progress_is_rich_not_tqdm(tiny_model_dir: Path, sample_items: list[dict], tmp_path: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    from gradual.config import TrainConfig
    from gradual.data.items import item_from_dict
    from gradual.lm.load import load_model
    from gradual.train import train_stage

    tiny_lm = load_model(str(tiny_model_dir), device="cpu", dtype="fp32")  # train_stage adds LoRA in place
    items = [item_from_dict(r, "sample", i) for i, r in enumerate(sample_items)]
    cfg = TrainConfig(epochs=2, batch_size=4, min_dev=1, max_dev=4)
    train_stage(tiny_lm, items, items[:4], cfg, tmp_path / "loud", progress=True, name="loud")
    out, err = capfd.readouterr()
    assert "loud epoch 1: train loss" in err and "loud epoch 2" in err
    assert "steps, epoch 2/2, loss" in err and "ETA" in err  # the rich bar's final state
    assert "it/s]" not in out + err and "{'loss'" not in out + err  # no tqdm bars, no raw log dicts
    train_stage(tiny_lm, items, items[:4], cfg, tmp_path / "quiet", progress=False, name="quiet")
    out, err = capfd.readouterr()
    assert "quiet" not in out + err and "steps" not in out + err  # --quiet: nothing at all
