"""One process per run folder: a second run or compare on a folder in use exits 2 at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradual.errors import UserError
from gradual.runlock import LOCK_NAME, folder_lock
from tests.test_pipeline import _config, _dataset, _env, _gradual


def test_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with folder_lock(folder):
        with pytest.raises(UserError, match=rf"--out: .*run is in use by pid {os.getpid()}"):
            with folder_lock(folder):
                pass
    with folder_lock(folder):  # released on exit: the next one gets it
        pass


def test_a_refused_new_folder_is_removed_and_a_file_is_no_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="bad config"):
        with folder_lock(tmp_path / "new"):
            raise UserError("bad config")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(UserError):
        with folder_lock(tmp_path / "kept"):
            raise UserError("bad config")
    assert (tmp_path / "kept").is_dir()  # it was there before: left as it was found (but for .lock)
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        with folder_lock(tmp_path / "f"):
            pass


def test_lock_dies_with_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; from gradual.runlock import folder_lock\n"
            "with folder_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            with folder_lock(folder):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder_lock(folder):  # kill -9 needs no cleanup
        pass
    assert (folder / LOCK_NAME).exists()


@pytest.mark.integration
def test_run_on_a_folder_in_use_exits_2_and_writes_nothing(tmp_path: Path, tiny_model_dir: Path,
                                                           sample_items: list[dict]) -> None:
    data = _dataset(tmp_path / "data", sample_items)
    cfg = _config(tmp_path, tiny_model_dir, data)
    out = tmp_path / "run"
    with folder_lock(out):
        for cmd in (["run", "--config", str(cfg), "--out", str(out)],
                    ["compare", "--config", str(cfg), "--strategies", "all", "--seeds", "0", "--out", str(out)]):
            res = _gradual(*cmd, "--quiet", env=_env(tmp_path))
            assert res.returncode == 2, res.stderr
            assert f"is in use by pid {os.getpid()}" in res.stderr and "Traceback" not in res.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


@pytest.mark.integration
def test_two_runs_started_together_do_not_mix(tmp_path: Path, tiny_model_dir: Path, sample_items: list[dict]) -> None:
    data = _dataset(tmp_path / "data", sample_items)
    out = tmp_path / "run"
    for n in (2, 3):
        (tmp_path / f"c{n}").mkdir()
    cfgs = [_config(tmp_path / f"c{n}", tiny_model_dir, data, probe={**_PROBE, "nex": n}) for n in (2, 3)]
    procs = [subprocess.Popen([sys.executable, "-m", "gradual.cli", "run", "--config", str(c), "--out", str(out),
                               "--quiet"], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in cfgs]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    # Refused by the lock while the other ran, or by the finished run it found ("already holds a run").
    assert "is in use by pid" in loser or "already holds a run" in loser
    winner = cfgs[[rc for rc, _ in results].index(0)]
    nex = int(winner.parent.name[1:])
    record = yaml.safe_load((out / "config.yaml").read_text())
    assert record["config"]["probe"]["nex"] == nex
    summary = json.loads((out / "summary.json").read_text())
    base = json.loads((out / "probe" / "base_train.summary.json").read_text())
    assert base["config"]["nex"] == nex and summary["strategy"] == "all"


_PROBE = {"estimator": "exact", "nex": 2, "shots": 2, "max_new_tokens": 4, "batch_size": 8, "repeat": 1}
