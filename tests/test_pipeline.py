"""`gradual run` end to end on the tiny model: run folder contract, edge cases, kill -9 + --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_jsonl


def _dataset(root: Path, sample_items: list) -> Path:
    # Same items in every split keeps the tiny dataset valid; ids must be unique per file only.
    for split in ("train", "dev", "test"):
        write_jsonl(root / f"{split}.jsonl", [dict(r, id=f"{split}-{r['id']}") for r in sample_items])
    return root


def _config(tmp: Path, model_dir: Path, data: Path, strategy: str = "all", **extra) -> Path:
    cfg = {
        "model": str(model_dir), "data": str(data), "strategy": strategy, "seed": 0,
        "device": "cpu", "dtype": "fp32",
        "probe": {"estimator": "exact", "nex": 2, "shots": 2, "max_new_tokens": 4, "batch_size": 8, "repeat": 1},
        "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "min_dev": 1, "max_dev": 8},
        "stage2": {"epochs": 1},
    }
    cfg.update(extra)
    path = tmp / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _gradual(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradual.cli", *args], capture_output=True, text=True,
                          env=env, **kw)


def _env(tmp: Path) -> dict:
    return dict(os.environ, GRADUAL_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1")


def _strip_times(obj):
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items() if not k.endswith("wall_s")}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


@pytest.mark.integration
def test_run_writes_contract(tmp_path: Path, tiny_model_dir: Path, sample_items: list) -> None:
    data = _dataset(tmp_path / "data", sample_items)
    cfg = _config(tmp_path, tiny_model_dir, data)
    out = tmp_path / "run"
    res = _gradual("run", "--config", str(cfg), "--out", str(out), "--quiet", env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    for key in ("strategy", "model", "seed", "stages", "categories", "transitions", "acquired", "forgotten",
                "retention", "test_accuracy", "wall_s"):
        assert key in summary
    assert summary["stages"][0]["n_train"] == len(sample_items)
    assert sum(map(sum, summary["transitions"]["counts"])) == len(sample_items)
    # The base probe's noise control (probe.repeat = 1) reaches the summary as a chance flip rate.
    assert summary["noise"]["repeats"] == 1 and 0.0 <= summary["noise"]["flip_rate"] <= 1.0
    assert (out / "stages" / "stage1" / "adapter" / "adapter_config.json").exists()
    assert (out / "config.yaml").exists() and (out / "probe" / "base_train.jsonl").exists()
    # A second run into the same folder without --resume is refused with exit 2.
    again = _gradual("run", "--config", str(cfg), "--out", str(out), "--quiet", env=_env(tmp_path))
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.integration
def test_gradual_without_maybeknown_stops_cleanly(tmp_path: Path, tiny_model_dir: Path, sample_items: list) -> None:
    # A random tiny model knows nothing: no MaybeKnown items, so stage 1 has nothing to train.
    data = _dataset(tmp_path / "data", sample_items)
    cfg = _config(tmp_path, tiny_model_dir, data, strategy="gradual")
    out = tmp_path / "run"
    res = _gradual("run", "--config", str(cfg), "--out", str(out), "--quiet", env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"][0]["n_train"] == 0 and summary["stages"][0]["note"]
    assert summary["acquired"] == 0


@pytest.mark.integration
def test_kill9_then_resume_matches_uninterrupted(tmp_path: Path, tiny_model_dir: Path, sample_items: list) -> None:
    data = _dataset(tmp_path / "data", sample_items)
    cfg = _config(tmp_path, tiny_model_dir, data)
    env = _env(tmp_path)
    ref = tmp_path / "ref"
    assert _gradual("run", "--config", str(cfg), "--out", str(ref), "--quiet", env=env).returncode == 0

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "gradual.cli", "run", "--config", str(cfg), "--out", str(out),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # Kill during training: after the base probe exists, before the stage has finished.
    while time.time() < deadline and not (out / "probe" / "base_test.jsonl").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    res = _gradual("run", "--config", str(cfg), "--out", str(out), "--resume", "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert _strip_times(a) == _strip_times(b)
    # wall_s sums every step, including the base probes the killed process finished.
    probe_s = json.loads((out / "probe" / "base_train.summary.json").read_text())["wall_s"]
    assert b["steps_wall_s"]["probe base_train"] == pytest.approx(probe_s, abs=0.05)
    assert b["wall_s"] == pytest.approx(sum(b["steps_wall_s"].values()), abs=0.5)
    # A finished run with --resume only reprints its summary.
    again = _gradual("run", "--config", str(cfg), "--out", str(out), "--resume", "--quiet", env=env)
    assert again.returncode == 0 and json.loads((out / "summary.json").read_text()) == b


@pytest.mark.integration
def test_bad_config_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: nope\ntrain:\n  epochs: many\n")
    res = _gradual("run", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "train.epochs" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()
