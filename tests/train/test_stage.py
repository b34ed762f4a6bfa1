"""The stage trainer (gradual.train.stage) on a tiny random Llama: what it trains, what it keeps, what it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gradual.config import TrainConfig
from gradual.data.items import Item
from gradual.prompts import FinetuneFormat
from gradual.train.data import Collator, encode_item
from tests.train.test_trackers import _scalars


FAST = dict(batch_size=4, lr=5e-3, lora_r=4, lora_dropout=0.0, min_dev=2, max_dev=8)


def _base_key(name: str) -> str:
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


def _logits(model, tok, text: str = "Q: What is the capital of France?\nA: Paris\n") -> torch.Tensor:
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def _spy_collator(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Record the example lengths of every batch the stage's Trainer collates, in order."""
    import gradual.train.stage as stage_mod

    seen: list[list[int]] = []

    class Spy(Collator):
        def __call__(self, features):
            seen.append([len(f["input_ids"]) for f in features])
            return super().__call__(features)

    monkeypatch.setattr(stage_mod, "Collator", Spy)
    return seen


def test_batches_are_grouped_by_length(lm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradual.train import train_stage

    seen = _spy_collator(monkeypatch)
    # 24 questions of 7 different lengths, in an order that is not sorted by length.
    items = [Item(f"q{i}", f"What is the capital of {'Great ' * ((i * 5) % 7)}Land {i}?", (f"City {i}",))
             for i in range(24)]
    bs = 2
    train_stage(lm, items, [], TrainConfig(epochs=1, **{**FAST, "batch_size": bs}), tmp_path / "g", progress=False)
    order = [n for batch in seen for n in batch]
    assert sorted(order) == sorted(len(encode_item(it, lm.tokenizer, FinetuneFormat())["input_ids"]) for it in items)
    assert all(len(b) == bs for b in seen)
    # The Trainer's group_by_length: a random permutation cut into mega-batches of
    # min(n // (4 * bs), 50) batches, each sorted by decreasing length, so consecutive batches hold
    # similar lengths. The longest example overall is swapped to the front, which may break the
    # order at each mega-batch's first position only.
    mega = min(len(items) // (4 * bs), 50) * bs
    assert mega > bs  # several batches per mega-batch: grouping is visible
    for k in range(0, len(order), mega):
        chunk = order[k: k + mega]
        assert chunk[1:] == sorted(chunk[1:], reverse=True), (k, chunk)
    assert order[0] == max(order)


def test_stage_trains_lora_only_and_writes_outputs(lm, items, tmp_path: Path) -> None:
    from peft import PeftModel

    from gradual.train import train_stage

    base_before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    train, replay_pool, dev = items[:10], items[10:], items[:4]
    cfg = TrainConfig(epochs=2, replay_ratio=0.2, **FAST)
    res = train_stage(lm, train, dev, cfg, tmp_path / "s1", replay_items=replay_pool, progress=False, name="s1")

    assert isinstance(res.model, PeftModel) and res.n_train == 10 and res.n_replay == 2
    changed_lora = 0
    for name, p in res.model.named_parameters():
        if "lora_" in name:
            changed_lora += int(p.abs().sum() > 0 and "lora_B" in name)  # B starts at zero
        else:
            assert torch.equal(p, base_before[_base_key(name)]), name
    assert changed_lora > 0

    out = tmp_path / "s1"
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "stage.json").exists()
    rows = [json.loads(x) for x in (out / "train_items.jsonl").read_text().splitlines()]
    assert [r["replay"] for r in rows] == [False] * 10 + [True] * 2
    assert {r["id"] for r in rows if r["replay"]} <= {it.id for it in replay_pool}
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2] and sum(m["best"] for m in metrics) == 1
    assert all(m["train_loss"] is not None and m["dev_n"] == 4 for m in metrics)
    assert metrics == res.metrics


def test_saved_adapter_loads_with_same_logits_and_merge(lm, items, tmp_path: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel

    from gradual.lm.load import load_model
    from gradual.lm.load import load_with_adapters
    from gradual.train import merge_into_base, train_stage

    res = train_stage(lm, items[:8], [], TrainConfig(epochs=1, **FAST), tmp_path / "s", progress=False)
    assert res.selection == "last" and res.dev_accuracy is None
    want = _logits(res.model, lm.tokenizer)
    fresh = load_model(str(tiny_model_dir), device="cpu", dtype="fp32")
    assert not torch.allclose(_logits(fresh.model, fresh.tokenizer), want, atol=1e-4)  # training did something
    loaded = PeftModel.from_pretrained(fresh.model, str(tmp_path / "s" / "adapter"))
    assert torch.allclose(_logits(loaded, lm.tokenizer), want, atol=1e-5)

    # The one loader every later step uses (gradual.lm.load): base weights + the saved adapter, merged.
    again = load_with_adapters(str(tiny_model_dir), [tmp_path / "s" / "adapter"], device="cpu", dtype="fp32")
    assert torch.allclose(_logits(again.model, lm.tokenizer), want, atol=1e-4)

    merged = merge_into_base(res.model)
    assert not isinstance(merged, PeftModel)
    assert torch.allclose(_logits(merged, lm.tokenizer), want, atol=1e-4)
    assert merge_into_base(merged) is merged  # identity on a plain model


@pytest.mark.parametrize("patience, epochs_run, best", [(2, 4, 2), (1, 3, 2), (0, 6, 5)])
def test_early_stopping_restores_best_epoch(lm, items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            patience: int, epochs_run: int, best: int) -> None:
    """Stops after `patience` evaluations in a row without a strictly better dev accuracy (0: never),
    and ends with the best epoch's weights in the model and in the saved adapter."""
    import gradual.train.stage as stage_mod
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    accs = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.9])  # epoch 6 only ties epoch 5: not an improvement
    snapshots: list[dict[str, torch.Tensor]] = []

    def fake_dev(model, tokenizer, dev_items, fmt, autocast=None, batch_size=64):
        snapshots.append({k: v.clone() for k, v in get_peft_model_state_dict(model).items()})
        return next(accs)

    monkeypatch.setattr(stage_mod, "evaluate_dev", fake_dev)
    cfg = TrainConfig(epochs=6, patience=patience, **FAST)
    res = stage_mod.train_stage(lm, items[:8], items[8:12], cfg, tmp_path / "es", progress=False)
    assert res.best_epoch == best and res.dev_accuracy == [0.1, 0.5, 0.3, 0.2, 0.9, 0.9][best - 1]
    assert len(res.metrics) == epochs_run and res.stopped_early == (epochs_run < 6)
    assert [m["best"] for m in res.metrics] == [e == best for e in range(1, epochs_run + 1)]
    assert all(m["selection"] == "dev" for m in res.metrics)
    last = snapshots[epochs_run - 1]
    assert not all(torch.equal(snapshots[best - 1][k], last[k]) for k in last)  # weights moved on
    now = get_peft_model_state_dict(res.model)
    assert all(torch.equal(now[k], snapshots[best - 1][k]) for k in snapshots[best - 1])
    saved = load_file(str(tmp_path / "es" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(saved[k], snapshots[best - 1][k]) for k in snapshots[best - 1])
    stage = json.loads((tmp_path / "es" / "stage.json").read_text())
    assert stage["best_epoch"] == best and stage["epochs_run"] == epochs_run
    assert stage["stopped_early"] == (epochs_run < 6)
    assert sorted(p.name for p in (tmp_path / "es").iterdir()) == [  # checkpoints stayed in the scratch dir
        "adapter", "metrics.jsonl", "stage.json", "train_items.jsonl"]


def test_full_finetuning_restores_best_epoch(lm, items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full fine-tuning: the Trainer's best checkpoint holds every weight, and they all come back."""
    import gradual.train.stage as stage_mod
    from gradual.lm.load import load_model

    accs = iter([0.2, 0.6, 0.4, 0.4])
    snapshots: list[dict[str, torch.Tensor]] = []

    def fake_dev(model, tokenizer, dev_items, fmt, autocast=None, batch_size=64):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(accs)

    monkeypatch.setattr(stage_mod, "evaluate_dev", fake_dev)
    cfg = TrainConfig(epochs=4, patience=2, lora=False, **{**FAST, "lr": 1e-3})
    res = stage_mod.train_stage(lm, items[:8], items[8:12], cfg, tmp_path / "full", progress=False)
    assert res.best_epoch == 2 and len(res.metrics) == 4 and not res.stopped_early
    assert not all(torch.equal(snapshots[1][k], snapshots[3][k]) for k in snapshots[1])
    now = res.model.state_dict()
    assert all(torch.equal(now[k], snapshots[1][k]) for k in snapshots[1])
    saved = load_model(str(tmp_path / "full" / "model"), device="cpu", dtype="fp32").model.state_dict()
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in snapshots[1])


def test_small_dev_trains_all_epochs_and_keeps_last(lm, items, tmp_path: Path) -> None:
    from gradual.train import train_stage

    cfg = TrainConfig(epochs=2, **{**FAST, "min_dev": 20})
    res = train_stage(lm, items[:6], items[6:9], cfg, tmp_path / "sd", progress=False)
    assert res.selection == "last" and res.best_epoch == 2 and "min_dev" in res.note
    assert all(m["selection"] == "last" and m["dev_accuracy"] is not None for m in res.metrics)


def test_empty_training_set_is_an_error(lm, tmp_path: Path) -> None:
    from gradual.train import train_stage

    with pytest.raises(ValueError, match="no training items"):
        train_stage(lm, [], [], TrainConfig(), tmp_path / "e", progress=False)


def test_report_to_tensorboard_logs_dev_accuracy_per_epoch(lm, items, tmp_path: Path) -> None:
    from gradual.train import train_stage

    cfg = TrainConfig(epochs=2, report_to="tensorboard", **FAST)
    res = train_stage(lm, items[:8], items[8:12], cfg, tmp_path / "tb", progress=False, name="tb")
    assert list((tmp_path / "tb" / "logs").glob("events.out.tfevents.*"))
    scalars = _scalars(tmp_path / "tb" / "logs")
    dev = scalars["eval/dev_accuracy"]
    assert [step for step, _ in dev] == [m["step"] for m in res.metrics]
    assert [v for _, v in dev] == pytest.approx([m["dev_accuracy"] for m in res.metrics])
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([m["train_loss"] for m in res.metrics])
