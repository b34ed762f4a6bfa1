"""The stage trainer on a tiny random Llama: what it trains, what it keeps, what it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gradual.config import TrainConfig
from gradual.data.items import Item, item_from_dict
from gradual.prompts import FinetuneFormat
from gradual.train.data import IGNORE, Collator, encode_item, sample_replay

FAST = dict(batch_size=4, lr=5e-3, lora_r=4, lora_dropout=0.0, min_dev=2, max_dev=8)


@pytest.fixture
def lm(tiny_model_dir: Path):
    """A fresh model per test: train_stage injects LoRA layers into it."""
    from gradual.lm.load import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="fp32")


@pytest.fixture
def items(sample_items: list[dict]) -> list[Item]:
    return [item_from_dict(r, "sample", i) for i, r in enumerate(sample_items)]


def _base_key(name: str) -> str:
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


def _logits(model, tok, text: str = "Q: What is the capital of France?\nA: Paris\n") -> torch.Tensor:
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


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


def test_sample_replay_ratio_and_cap(items) -> None:
    train, pool = items[:6], items[4:]
    got = sample_replay(pool, 0.5, len(train), seed=0, exclude={it.id for it in train})
    assert len(got) == 3 and not {it.id for it in got} & {it.id for it in train}
    assert got == sample_replay(pool, 0.5, len(train), seed=0, exclude={it.id for it in train})
    assert len(sample_replay(pool, 10.0, len(train), seed=0, exclude={it.id for it in train})) == len(pool) - 2
    assert sample_replay(pool, 0.0, len(train), seed=0) == []


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


def test_cli_train(tiny_model_dir: Path, sample_items: list[dict], tmp_path: Path, monkeypatch, capsys) -> None:
    import sys

    from gradual.cli import main
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "train.jsonl", sample_items[:8])
    dev = write_jsonl(tmp_path / "dev.jsonl", sample_items[8:])
    out = tmp_path / "cli"
    args = ["gradual", "train", "--model", str(tiny_model_dir), "--data", str(data), "--dev", str(dev),
            "--out", str(out), "--epochs", "2", "--batch-size", "4", "--min-dev", "2", "--device", "cpu",
            "--dtype", "fp32", "--quiet"]
    monkeypatch.setattr(sys, "argv", args)
    main()  # returns normally on success
    text = capsys.readouterr().out
    assert "best epoch" in text and (out / "adapter" / "adapter_model.safetensors").exists()

    monkeypatch.setattr(sys, "argv", args[:-1] + ["--replay-ratio", "0.3"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "--replay-ratio" in capsys.readouterr().err


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the TensorBoard event files under `log_dir`: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


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


def test_log_to_trackers_writes_probe_counts(tmp_path: Path) -> None:
    from gradual.train import log_to_trackers

    log_to_trackers("none", tmp_path / "none", "probe", {"probe_MaybeKnown": 3})
    assert not (tmp_path / "none").exists()
    for stage, counts in enumerate([{"probe_HighlyKnown": 5, "probe_MaybeKnown": 3},
                                    {"probe_HighlyKnown": 7, "probe_MaybeKnown": 1}]):
        log_to_trackers("tensorboard", tmp_path / "probe", "probe", counts, step=stage)
    scalars = _scalars(tmp_path / "probe")
    # Keys without eval_/test_ get the Trainer integrations' "train/" prefix: counts of the train split.
    assert scalars["train/probe_HighlyKnown"] == [(0, 5.0), (1, 7.0)]
    assert scalars["train/probe_MaybeKnown"] == [(0, 3.0), (1, 1.0)]


def test_report_to_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.integrations.integration_utils as iu

    from gradual.train import parse_report_to, report_to_errors

    assert parse_report_to("none") == [] and parse_report_to(" tensorboard, wandb ") == ["tensorboard", "wandb"]
    assert report_to_errors("none") == []
    assert "unknown integration 'tensorbord'" in report_to_errors("tensorbord")[0]
    assert "stand alone" in report_to_errors("none,wandb")[0]
    monkeypatch.setattr(iu, "get_available_reporting_integrations", lambda: [])
    assert report_to_errors("tensorboard,comet_ml", "train.report_to") == [
        "train.report_to: tensorboard is not installed (pip install tensorboard)",
        "train.report_to: comet_ml is not installed (pip install comet-ml)"]


def test_cli_report_to_not_installed_exits_2(tmp_path: Path, sample_items: list[dict], monkeypatch, capsys) -> None:
    import sys

    import transformers.integrations.integration_utils as iu

    from gradual.cli import main
    from tests.conftest import write_jsonl

    monkeypatch.setattr(iu, "get_available_reporting_integrations", lambda: [])
    data = write_jsonl(tmp_path / "train.jsonl", sample_items[:8])
    for argv in (["gradual", "train", "--model", "smollm2-135m", "--data", str(data), "--out", str(tmp_path / "t"),
                  "--report-to", "wandb"],
                 ["gradual", "run", "--out", str(tmp_path / "r"), "--report-to", "wandb"]):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        assert "--report-to: wandb is not installed (pip install wandb)" in capsys.readouterr().err
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()  # nothing started


def test_run_reports_stages_and_probe_counts_to_tensorboard(tmp_path: Path, tiny_model_dir: Path,
                                                           sample_items: list[dict]) -> None:
    from tests.test_pipeline import _config, _dataset, _env, _gradual

    data = _dataset(tmp_path / "data", sample_items)
    cfg = _config(tmp_path, tiny_model_dir, data)  # strategy "all": one stage
    out = tmp_path / "run"
    res = _gradual("run", "--config", str(cfg), "--out", str(out), "--quiet", "--report-to", "tensorboard",
                   env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    probe = _scalars(out / "logs" / "probe")
    for cat in ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown"):  # the train split's counts per stage
        assert probe[f"train/probe_{cat}"] == [(c["stage"], float(c["counts"][cat])) for c in summary["categories"]]
    rows = [json.loads(x) for x in (out / "stages" / "stage1" / "metrics.jsonl").read_text().splitlines()]
    dev = _scalars(out / "stages" / "stage1" / "logs")["eval/dev_accuracy"]
    assert dev == [(r["step"], pytest.approx(r["dev_accuracy"])) for r in rows]
    # Where a run reports is not part of what it computes: resuming without the flag is allowed.
    again = _gradual("run", "--config", str(cfg), "--out", str(out), "--quiet", "--resume", env=_env(tmp_path))
    assert again.returncode == 0, again.stderr
