"""`--report-to` (gradual.train.trackers): the value checked before any work, and what a run sends to
TensorBoard, W&B and MLflow, read back by those tools' own readers.

W&B runs offline (WANDB_MODE=offline) and is read from its run file, the `.wandb` transaction log, whose
records are W&B's own protobuf `Record` messages; MLflow logs to a local SQLite store (MLflow 3 refuses
a `file:` store unless told to) and is read with `mlflow.search_runs` and `MlflowClient`.
TensorBoard is read back from its event files (a stage's own logs: tests/train/test_stage.py).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.test_pipeline import _config, _dataset, _env, _gradual

CATEGORIES = ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown")


def _wandb_records(path: Path) -> Iterator[Any]:
    """The records of a W&B run file: a 7-byte header (":W&B", magic, version), then LevelDB log
    framing (32 KiB blocks; per chunk: crc32, length, type FULL=1/FIRST=2/MIDDLE=3/LAST=4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is zero padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _wandb_runs(wandb_dir: Path) -> dict[str, list[dict]]:
    """run name -> its history rows (key -> value), from every offline run under `wandb_dir`."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb")):
        name, history = None, []
        for r in _wandb_records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                name = r.run.display_name
            elif kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        assert name is not None, path
        runs.setdefault(name, []).extend(history)
    return runs


def _tracker_env(tmp: Path) -> dict:
    # Everything W&B and MLflow write stays in the test's folder; nothing goes to the network.
    return dict(_env(tmp), WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(tmp / "wandb"),
                WANDB_CONFIG_DIR=str(tmp / "wandb-config"), WANDB_CACHE_DIR=str(tmp / "wandb-cache"),
                WANDB_DATA_DIR=str(tmp / "wandb-data"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}")


@pytest.mark.integration
def test_run_reports_dev_accuracy_and_probe_counts_to_wandb_and_mlflow(tmp_path: Path, tiny_model_dir: Path,
                                                                      sample_items: list[dict]) -> None:
    data = _dataset(tmp_path / "data", sample_items)
    cfg = _config(tmp_path, tiny_model_dir, data)  # strategy "all": one stage, probed before and after
    (tmp_path / "wandb").mkdir()
    out = tmp_path / "myrun"
    res = _gradual("run", "--config", str(cfg), "--out", str(out), "--quiet", "--report-to", "wandb,mlflow",
                   env=_tracker_env(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    counts = {c["stage"]: c["counts"] for c in summary["categories"]}
    rows = [json.loads(x) for x in (out / "stages" / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2  # two epochs

    # W&B: one run per stage, named after the run folder; the probe's counts one run per probe.
    wb = _wandb_runs(tmp_path / "wandb")
    assert set(wb) == {"myrun/stage1", "myrun/probe"}
    dev = [(h["train/global_step"], h["eval/dev_accuracy"]) for h in wb["myrun/stage1"] if "eval/dev_accuracy" in h]
    assert dev == [(r["step"], pytest.approx(r["dev_accuracy"])) for r in rows]
    probe = sorted((h["train/global_step"], h[f"train/probe_{c}"]) for h in wb["myrun/probe"] for c in CATEGORIES
                   if f"train/probe_{c}" in h)
    assert probe == sorted((stage, n[c]) for stage, n in counts.items() for c in CATEGORIES)

    # MLflow: the same numbers, under the Trainer's metric names, each at its step.
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    by_name: dict[str, list] = {}
    for run in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        assert run.info.status == "FINISHED"
        by_name.setdefault(run.info.run_name, []).append(run)
    assert set(by_name) == {"myrun/stage1", "myrun/probe"}
    (stage1,) = by_name["myrun/stage1"]
    history = client.get_metric_history(stage1.info.run_id, "eval_dev_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(r["step"], pytest.approx(r["dev_accuracy"])) for r in rows]
    logged = sorted((m.step, c, m.value) for run in by_name["myrun/probe"] for c in CATEGORIES
                    for m in client.get_metric_history(run.info.run_id, f"probe_{c}"))
    assert logged == sorted((stage, c, float(n[c])) for stage, n in counts.items() for c in CATEGORIES)


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


@pytest.mark.integration
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
