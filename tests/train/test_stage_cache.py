"""The compare's stage cache: a stage that two runs would train identically is trained once, and the
run served from the cache ends exactly as if it had trained the stage itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gradual.summary import results_only
from tests.test_two_stage import _config


def test_a_shared_stage_is_trained_once_with_identical_results(two_stage: tuple[Path, Path], tmp_path: Path,
                                                                cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradual.train as train
    from gradual.pipeline import run_pipeline

    model, data = two_stage
    trained: list[str] = []
    real = train.train_stage

    def counting(*args: Any, **kw: Any) -> Any:
        trained.append(kw["name"])
        return real(*args, **kw)

    monkeypatch.setattr(train, "train_stage", counting)
    stages = tmp_path / "stage-cache"
    g = run_pipeline(_config(model, data, "gradual"), tmp_path / "gradual", progress=False, stage_cache=stages)
    assert trained == ["stage1", "stage2"] and [s["stage_cache"] for s in g["stages"]] == ["miss", "miss"]
    # maybeknown's one stage is gradual's stage 1 (base MaybeKnown, same settings and seed): not trained again.
    m = run_pipeline(_config(model, data, "maybeknown"), tmp_path / "maybeknown", progress=False, stage_cache=stages)
    assert trained == ["stage1", "stage2"] and m["stages"][0]["stage_cache"] == "hit"
    # The run writes its own record of the stage; the record of the run that trained it is not copied.
    assert json.loads((tmp_path / "maybeknown" / "stages" / "stage1" / "record.json").read_text())["stage_cache"] == "hit"
    # Without the cache the stage is trained, and everything after it comes out the same.
    plain = run_pipeline(_config(model, data, "maybeknown"), tmp_path / "plain", progress=False)
    assert trained == ["stage1", "stage2", "stage1"] and "stage_cache" not in plain["stages"][0]
    assert results_only(m) == results_only(plain)
    served, own = (tmp_path / d / "stages" / "stage1" / "adapter" / "adapter_model.safetensors"
                   for d in ("maybeknown", "plain"))
    assert served.read_bytes() == own.read_bytes()
    # Other settings are another stage: a different learning rate trains.
    run_pipeline(_config(model, data, "maybeknown", lr=0.02), tmp_path / "lr", progress=False, stage_cache=stages)
    assert trained[-1] == "stage1" and len(trained) == 4


def test_cache_entries_are_whole_and_a_full_cache_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from gradual.train.cache import StageCache

    stage = tmp_path / "stage1"
    (stage / "adapter").mkdir(parents=True)
    (stage / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (stage / "stage.json").write_text("{}")
    (stage / "record.json").write_text("{}")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with caplog.at_level("WARNING"):  # the stage was trained: the run goes on without the entry
        assert StageCache(blocked).try_put("k", stage, lora=True) is False
    assert "could not keep this stage" in caplog.text
    cache = StageCache(tmp_path / "cache")
    assert cache.try_put("k", stage, lora=True) and cache.get("k", lora=True) is not None
    assert cache.get("k", lora=False) is None  # a LoRA entry has no full model/
    assert not (tmp_path / "cache" / "k" / "record.json").exists()  # per-run records stay with their run
    damaged = tmp_path / "cache" / "k" / "stage.json"
    damaged.unlink()  # a hard link to the run's file: replace it, as every gradual write does, not edit it
    damaged.write_text("{trunc")  # damaged: not served, then replaced
    assert cache.get("k", lora=True) is None
    cache.put("k", stage, lora=True)
    assert cache.get("k", lora=True) is not None and [p.name for p in (tmp_path / "cache").iterdir()] == ["k"]
    served = tmp_path / "run" / "stages" / "stage1"
    StageCache.copy_to(tmp_path / "cache" / "k", served)
    assert (served / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
