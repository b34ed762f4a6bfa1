"""Several processes: `gradual run` under `accelerate launch` on CPU equals the single-process run.

The launch test starts two CPU processes with `accelerate launch --multi_gpu --num_processes 2` (torch
elastic; on a machine without a GPU every rank computes on the CPU over gloo). `--cpu --num_processes 2`
would not do: without an mpirun hostfile accelerate starts one process for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradual import distributed as dist
from gradual.errors import UserError
from gradual.runlock import LOCK_NAME
from tests.conftest import write_jsonl


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    return {**env, "GRADUAL_CACHE": str(tmp), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", **extra}


# --- helpers, in one process ----------------------------------------------------------------------


@pytest.mark.parametrize("n,world", [(7, 2), (14, 2), (5, 3), (3, 3)])
def test_shard_then_gather_restores_the_order(n: int, world: int) -> None:
    items = list(range(n))
    parts = [items[r::world] for r in range(world)]
    assert sorted(x for p in parts for x in p) == items
    assert dist.unshard(parts) == items


def test_single_process_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (dist.world_size(), dist.rank(), dist.is_main(), dist.is_distributed()) == (1, 0, True, False)
    assert dist.shard([1, 2, 3]) == [1, 2, 3] and dist.gather([1, 2, 3]) == [1, 2, 3]
    assert dist.on_main(lambda: 5) == 5 and dist.broadcast("x") == "x" and dist.all_gather(4) == [4]
    dist.barrier()  # no process group, nothing to wait for
    dist.check_shardable(1, "--data")
    assert dist.per_process_batch(6, 3) == (6, 3)


def test_global_batch_is_kept_across_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dist.per_process_batch(4, 1) == (2, 1)
    assert dist.per_process_batch(16, 2) == (16, 1)  # per device stays <= batch_size; 16 x 2 ranks = 32
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert dist.per_process_batch(4, 2) == (1, 1)
    for bs, ga in [(16, 1), (8, 3), (4, 2)]:
        per, acc = dist.per_process_batch(bs, ga)
        assert per * acc * 8 == bs * ga and per <= bs
    with pytest.raises(UserError, match="cannot be split evenly across 8 processes"):
        dist.per_process_batch(6, 1)
    with pytest.raises(UserError, match="cannot be split across 8 processes"):
        dist.check_shardable(5, "--data")
    with pytest.raises(UserError, match="cannot run under a 8-process launch"):
        dist.refuse("--backend vllm", "why")


@pytest.mark.integration
def test_more_processes_than_items_exits_2_before_loading(tmp_path: Path, tiny_model_dir: Path,
                                                           sample_items: list) -> None:
    # Rank 0 of a 20-process launch (the variables torchrun and accelerate launch set): the check comes
    # before the model loads and before any process group, so this one process needs no peers.
    data = write_jsonl(tmp_path / "items.jsonl", sample_items)  # 14 items
    env = _env(tmp_path, WORLD_SIZE="20", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="20",
               MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
    res = subprocess.run([sys.executable, "-m", "gradual.cli", "probe", "--model", str(tiny_model_dir), "--data",
                          str(data), "--out", str(tmp_path / "p.jsonl"), "--device", "cpu", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "14 item(s) cannot be split across 20 processes" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "p.jsonl").exists()


# --- two processes under accelerate launch -------------------------------------------------------


def _run_dir_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _categories(run: Path, name: str) -> dict[str, str]:
    return {r["id"]: r["category"] for r in map(json.loads, (run / "probe" / f"{name}.jsonl").read_text().splitlines())}


@pytest.mark.integration
def _launch_config(tmp_path: Path, model: Path, sample_items: list) -> Path:
    """A run config of 13 items per split (shards of 7 and 6) and one small real stage, written to a file."""
    for split in ("train", "dev", "test"):
        write_jsonl(tmp_path / "data" / f"{split}.jsonl",
                    [dict(r, id=f"{split}-{r['id']}") for r in sample_items[:13]])
    cfg = {
        "model": str(model), "data": str(tmp_path / "data"), "strategy": "all", "seed": 0,
        "device": "cpu", "dtype": "fp32",
        "probe": {"estimator": "sample", "nex": 2, "shots": 2, "samples": 2, "max_new_tokens": 4, "batch_size": 8},
        # A real DDP stage (2 epochs, checkpoints, best-epoch reload, merge) with a learning rate so small
        # that the stage-1 model is the same for 1 and 2 processes up to float rounding: the re-probe and
        # the test predictions after training must then agree too. (Batches are split differently, so
        # the weights are not bit-identical.)
        "train": {"epochs": 2, "batch_size": 4, "lr": 1e-6, "min_dev": 1, "max_dev": 8},
    }
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return cfg_path


def test_two_processes_match_one(tmp_path: Path, tiny_model_dir: Path, sample_items: list,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from gradual.run_config import load_run_config
    from gradual.pipeline import run_pipeline

    cfg_path = _launch_config(tmp_path, tiny_model_dir, sample_items)

    one, two = tmp_path / "one", tmp_path / "two"
    monkeypatch.setenv("GRADUAL_CACHE", str(tmp_path / "cache1"))
    run_pipeline(load_run_config(cfg_path, {}), one, resume=False, progress=False)

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "gradual.cli", "run", "--config", str(cfg_path), "--out", str(two)]
    # A cache of its own: the two processes must compute every probe, not read the one-process run's.
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path / "cache2"), timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    # Tables and messages come once (from rank 0), and no rank wrote a progress bar.
    assert res.stdout.count("test accuracy") == 1 and res.stderr.count("gradual model") == 1

    # Every output file exists once, complete (each JSON and JSONL parses), no temp or scratch left.
    files = _run_dir_files(two)
    assert files == _run_dir_files(one)
    # The run folder's lock file stays (unlinking it would race a waiting process); nothing else hidden.
    assert LOCK_NAME in files
    assert not [f for f in files if f != LOCK_NAME and (f.endswith(".tmp") or "/." in "/" + f)]
    for f in files:
        text = (two / f).read_text(encoding="utf-8", errors="replace")
        if f.endswith(".json"):
            json.loads(text)
        elif f.endswith(".jsonl"):
            assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())

    for name in ("base_train", "base_test", "stage1_train"):
        assert _categories(two, name) == _categories(one, name), name
        assert json.loads((two / "probe" / f"{name}.summary.json").read_text())["processes"] == 2
    preds = [(two / "eval" / "test.predictions.jsonl"), (one / "eval" / "test.predictions.jsonl")]
    assert preds[0].read_text() == preds[1].read_text()
    # The same optimizer steps: the global batch is train.batch_size whatever the process count.
    steps = [[r["step"] for r in map(json.loads, (run / "stages" / "stage1" / "metrics.jsonl").read_text().splitlines())]
             for run in (one, two)]
    assert steps[0] == steps[1] == [4, 8]  # 13 items, batch 4: 4 steps per epoch


def test_two_processes_share_a_compare_stage(tmp_path: Path, tiny_model_dir: Path, sample_items: list) -> None:
    """The stage cache under a launch: `all` trains the same stage under both exemplar seeds, so the
    second run is served the first one's stage (every rank agrees, main copies it) and ends whole."""
    cfg_path = _launch_config(tmp_path, tiny_model_dir, sample_items)
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "gradual.cli", "compare", "--config", str(cfg_path), "--strategies", "all", "--seeds", "0",
           "--exemplar-seeds", "0,1", "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path / "cache"), timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    first, second = (json.loads((out / "runs" / f"all-ex{e}-seed0" / "summary.json").read_text()) for e in (0, 1))
    assert [s["stage_cache"] for s in (first["stages"][0], second["stages"][0])] == ["miss", "hit"]
    adapters = [(out / "runs" / f"all-ex{e}-seed0" / "stages" / "stage1" / "adapter" / "adapter_model.safetensors")
                for e in (0, 1)]
    assert adapters[0].read_bytes() == adapters[1].read_bytes()
    assert first["test_accuracy"] == second["test_accuracy"]  # the same trained model, evaluated alike
    assert not [p for p in (out / "stage-cache").iterdir() if p.name.startswith(".")]  # no temp entry left
