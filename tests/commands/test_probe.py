"""`gradual probe` as users run it: the real command in a subprocess (its outputs, exit 2 on a bad flag,
Ctrl-C and kill -9 leave nothing half-written), and flag errors that come before the model loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradual.probe.result import summary_path
from tests.conftest import run_cli
from tests.data.test_items import ITEM


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _gradual() -> list[str]:
    return [sys.executable, "-m", "gradual.cli"]


@pytest.mark.integration
def test_cli_probe_writes_outputs(tiny_model_dir: Path, sample_items: list[dict], tmp_path: Path) -> None:
    data = _write(tmp_path / "items.jsonl", sample_items)
    out = tmp_path / "p.jsonl"
    env = {**os.environ, "GRADUAL_CACHE": str(tmp_path / "cache")}
    cmd = _gradual() + ["probe", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                        "--nex", "2", "--shots", "2", "--samples", "2", "--max-new-tokens", "3", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HighlyKnown" in res.stdout and len(out.read_text().splitlines()) == len(sample_items)
    assert json.loads(summary_path(out).read_text())["n_items"] == len(sample_items)
    bad = subprocess.run(cmd + ["--estimator", "magic"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "--estimator" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_probe_leaves_nothing_half_written(tiny_model_dir: Path, tmp_path: Path, sig: int) -> None:
    rows = [{"id": f"i{i}", "question": f"What is item {i}?", "answers": [f"a{i}"], "relation": f"r{i % 3}"}
            for i in range(300)]
    data = _write(tmp_path / "items.jsonl", rows)
    out = tmp_path / "p.jsonl"
    env = {**os.environ, "GRADUAL_CACHE": str(tmp_path / "cache")}
    cmd = _gradual() + ["probe", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                        "--samples", "64", "--batch-size", "130", "--device", "cpu", "--dtype", "fp32", "--quiet"]
    # A child inherits an ignored SIGINT (e.g. from a background shell job); Ctrl-C must reach it.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "model ... items": probing has started
    assert "model" in line, proc.stderr.read() if proc.stderr else ""
    time.sleep(1.0)
    assert proc.poll() is None, "probe finished before it could be interrupted; make it longer"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode in (130, -signal.SIGKILL)
    assert not out.exists() and not summary_path(out).exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".json" and "cache" in p.parts]
    for p in leftovers:  # any cache entry present is complete
        assert len(json.loads(p.read_text())["rows"]) == len(rows)


def test_temperature_inf_flag_exits_2_before_the_model_loads(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(ITEM) + "\n", encoding="utf-8")
    r = run_cli("probe", "--data", str(data), "--out", str(tmp_path / "p.jsonl"), "--temperature", "inf")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--temperature: inf is not a finite number" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.jsonl").exists()


def test_bad_format_is_a_flag_error(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    res = run_cli("probe", "--data", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "p.jsonl"), "--format", "oneshot")
    assert res.returncode == 2 and "--format" in res.stderr and "fewshot" in res.stderr
