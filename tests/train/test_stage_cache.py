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
