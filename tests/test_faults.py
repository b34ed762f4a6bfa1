"""The world outside on a bad day: outputs that cannot be written, full disks, damaged files, a
refused run. Each case: exit 2, one message naming the path or key, no traceback, nothing
half-written, and the folder left as it was found. (One module's own cases: tests/test_atomic.py,
tests/test_cli.py, tests/lm/test_load.py.)"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from gradual.runlock import LOCK_NAME
from tests.conftest import run_cli, sample_rows, write_jsonl
from tests.test_pipeline import _config, _dataset, _strip_times

PROBE_FLAGS = ("--estimator", "exact", "--nex", "2", "--shots", "2", "--max-new-tokens", "4", "--device", "cpu",
               "--dtype", "fp32", "--quiet")


def _refused(res: Any, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    flat = " ".join(res.stderr.split())  # rich may wrap a long line
    for n in needles:
        assert n in flat, (n, res.stderr)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRADUAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def items_file(tmp_path: Path, sample_items: list[dict]) -> Path:
    path = tmp_path / "items.jsonl"
    write_jsonl(path, sample_items)
    return path


# --- outputs that cannot be written are refused before any work ----------------------------------

def test_run_out_an_existing_file(tmp_path: Path, tiny_model_dir: Path, sample_items: list[dict], cache: Path) -> None:
    cfg = _config(tmp_path, tiny_model_dir, _dataset(tmp_path / "data", sample_items))
    (tmp_path / "afile").write_text("mine")
    _refused(run_cli("run", "--config", str(cfg), "--out", str(tmp_path / "afile"), "--quiet"),
             "--out:", "afile is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "mine"


def test_probe_out_a_folder_or_under_a_file_fails_before_probing(tmp_path: Path, tiny_model_dir: Path,
                                                                 items_file: Path, cache: Path) -> None:
    (tmp_path / "taken.jsonl").mkdir()
    _refused(run_cli("probe", "--model", str(tiny_model_dir), "--data", str(items_file),
                     "--out", str(tmp_path / "taken.jsonl"), *PROBE_FLAGS), "--out:", "taken.jsonl is a folder")
    assert not (tmp_path / "taken.summary.json").exists()  # no stray summary beside it
    (tmp_path / "plain").write_text("x")
    _refused(run_cli("probe", "--model", str(tiny_model_dir), "--data", str(items_file),
                     "--out", str(tmp_path / "plain" / "p.jsonl"), *PROBE_FLAGS), "plain is a file, not a folder")
    assert not cache.exists()  # refused before anything was computed or cached


def test_read_only_out_folders_are_refused(tmp_path: Path, tiny_model_dir: Path, sample_items: list[dict],
                                           items_file: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    from gradual import preflight

    real = preflight._can_write
    # Root writes anywhere but on a read-only file system; os.access answers for both, so it is what
    # gradual asks, and what the test makes say no.
    monkeypatch.setattr(preflight, "_can_write", lambda p: False if Path(p).absolute().is_relative_to(ro) else real(p))
    cfg = _config(tmp_path, tiny_model_dir, _dataset(tmp_path / "data", sample_items))
    cases = [
        (("run", "--config", str(cfg), "--out", str(ro / "run"), "--quiet"), f"cannot write in {ro}"),
        (("run", "--config", str(cfg), "--out", str(ro), "--quiet"), f"cannot write in {ro}"),
        (("probe", "--model", str(tiny_model_dir), "--data", str(items_file), "--out", str(ro / "p.jsonl"),
          *PROBE_FLAGS), f"cannot write in {ro}"),
        (("data", "build", "world", "--out", str(ro / "world")), f"cannot write in {ro}"),
        (("data", "import", str(items_file), "--format", "jsonl", "--out", str(ro / "ds")), f"cannot write in {ro}"),
    ]
    for args, needle in cases:
        _refused(run_cli(*args), needle)
    assert list(ro.iterdir()) == []


# --- a full disk is one line, and nothing half-written --------------------------------------------

def test_full_disk_while_writing_a_probe(tmp_path: Path, tiny_model_dir: Path, items_file: Path, cache: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("gradual.atomic.os.fsync", no_space)
    out = tmp_path / "p.jsonl"
    res = run_cli("probe", "--model", str(tiny_model_dir), "--data", str(items_file), "--out", str(out),
                  "--no-cache", *PROBE_FLAGS)
    _refused(res, "no space left on device writing", "free space and run the command again")
    assert len(res.stderr.strip().splitlines()) <= 3  # one message (rich may wrap it), not a traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl"]  # no output, no temp file


# --- a refused run leaves the disk as it found it ------------------------------------------------

def test_a_run_refused_for_its_data_or_backend_writes_nothing(tmp_path: Path, tiny_model_dir: Path,
                                                              sample_items: list[dict], cache: Path) -> None:
    bad = [dict(r) for r in sample_items]
    bad[3]["answers"] = []
    data = _dataset(tmp_path / "data", bad)
    cfg = _config(tmp_path, tiny_model_dir, data)
    _refused(run_cli("run", "--config", str(cfg), "--out", str(tmp_path / "new"), "--quiet"), "train.jsonl")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    _refused(run_cli("run", "--config", str(cfg), "--out", str(tmp_path / "kept"), "--quiet"), "train.jsonl")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == [LOCK_NAME]  # no config.yaml: a retry is not refused
    good = _config(tmp_path, tiny_model_dir, _dataset(tmp_path / "good", sample_items),
                   probe={"estimator": "exact", "nex": 2, "shots": 2, "max_new_tokens": 4, "backend": "vllm"})
    res = run_cli("run", "--config", str(good), "--out", str(tmp_path / "v"), "--quiet")
    _refused(res, "probe.", "vllm")
    assert "model " not in res.stderr  # refused before the model loaded
    assert not (tmp_path / "v").exists() and not cache.exists()


# --- damaged files on resume; scratch and permissions ---------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path, list[str]]:
    """A finished one-stage run of the tiny model, with the scratch folders its stage used."""
    from gradual.train import stage as stage_mod

    root = tmp_path_factory.mktemp("faults-run")
    cfg = _config(root, tiny_model_dir, _dataset(root / "data", sample_rows()))
    scratch: list[str] = []
    real = stage_mod._trainer_scratch
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADUAL_CACHE", str(root / "cache"))

    def spy(out_dir: Path):  # type: ignore[no-untyped-def]
        cm = real(out_dir)

        class Spy:
            def __enter__(self) -> str:
                path = cm.__enter__()
                scratch.append(path)
                return path

            def __exit__(self, *exc: Any) -> Any:
                return cm.__exit__(*exc)

        return Spy()

    mp.setattr(stage_mod, "_trainer_scratch", spy)
    old_umask = os.umask(0o022)
    try:
        res = run_cli("run", "--config", str(cfg), "--out", str(root / "run"), "--quiet")
    finally:
        os.umask(old_umask)
        mp.undo()
    assert res.returncode == 0, res.stderr
    return cfg, root / "run", scratch


def test_trainer_scratch_lives_in_the_run_folder_and_goes(finished_run: tuple[Path, Path, list[str]]) -> None:
    _, run, scratch = finished_run
    assert scratch, "the stage trained"
    for path in scratch:  # inside the run folder (a kill leaves nothing in /tmp), removed at the stage's end
        assert Path(path).is_relative_to(run) and not Path(path).exists()


def test_outputs_follow_the_umask(finished_run: tuple[Path, Path, list[str]]) -> None:
    _, run, _ = finished_run
    adapter = run / "stages" / "stage1" / "adapter"
    assert stat.S_IMODE(adapter.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in adapter.iterdir()} == {0o644}  # safetensors writes 0600
    data = run.parent / "data"
    res = run_cli("data", "import", str(data / "train.jsonl"), "--format", "jsonl", "--out", str(run.parent / "ds"))
    assert res.returncode == 0, res.stderr
    # (created under the test process's umask)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((run.parent / "ds").stat().st_mode) == 0o777 & ~umask


def test_resume_redoes_a_damaged_summary_and_refuses_a_damaged_record(
        finished_run: tuple[Path, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    cfg, run, _ = finished_run
    monkeypatch.setenv("GRADUAL_CACHE", str(run.parent / "cache"))
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    want = json.loads((run / "summary.json").read_text())
    for name in ("summary.json", "eval/test.json"):
        text = (copy / name).read_text()
        (copy / name).write_text(text[: len(text) // 2])  # truncated by a bad day, not by gradual
    res = run_cli("run", "--config", str(cfg), "--out", str(copy), "--resume", "--quiet")
    assert res.returncode == 0, res.stderr
    assert _strip_times(json.loads((copy / "summary.json").read_text())) == _strip_times(want)
    (copy / "config.yaml").write_text("config: [unclosed\n")
    _refused(run_cli("run", "--config", str(cfg), "--out", str(copy), "--resume", "--quiet"),
             "config.yaml is damaged")
    assert yaml.safe_load((run / "config.yaml").read_text())["config"]["strategy"] == "all"


# --- prompts longer than the model's context are refused before any forward ----------------------

def test_a_prompt_longer_than_the_context_names_its_item(tmp_path: Path, tiny_model_dir: Path,
                                                         sample_items: list[dict], cache: Path) -> None:
    rows = [dict(r) for r in sample_items]
    rows[2]["question"] = "Which " + "very " * 2000 + "long question?"  # past the tiny model's 1,024 positions
    path = tmp_path / "long.jsonl"
    write_jsonl(path, rows)
    _refused(run_cli("probe", "--model", str(tiny_model_dir), "--data", str(path), "--out", str(tmp_path / "p.jsonl"),
                     *PROBE_FLAGS), f"item '{rows[2]['id']}': its longest few-shot prompt plus --max-new-tokens needs",
             "more than the model's context of 1024", "--shots")
    assert not (tmp_path / "p.jsonl").exists() and not cache.exists()  # nothing computed, nothing cached
    _refused(run_cli("eval", "--model", str(tiny_model_dir), "--data", str(path), "--out", str(tmp_path / "e.json"),
                     "--device", "cpu", "--dtype", "fp32"), f"item '{rows[2]['id']}'", "context of 1024")
    # An exemplar that is long enough to overflow every prompt it joins is caught too (not only the question).
    rows[2]["question"], rows[5]["answers"] = "What is the capital of Peru?", ["Lima " + "x " * 1500]
    write_jsonl(path, rows)
    res = run_cli("probe", "--model", str(tiny_model_dir), "--data", str(path), "--out", str(tmp_path / "p.jsonl"),
                  *PROBE_FLAGS)
    _refused(res, "more than the model's context of 1024", "items are too long")


def test_an_out_folder_that_cannot_be_made_is_refused_before_work(tmp_path: Path, items_file: Path,
                                                                  tiny_model_dir: Path, cache: Path) -> None:
    # /proc lets root pass os.access but refuses every mkdir: only trying finds out.
    for args in (("probe", "--model", str(tiny_model_dir), "--data", str(items_file),
                  "--out", "/proc/gradual-x/p.jsonl", *PROBE_FLAGS),
                 ("data", "build", "world", "--out", "/proc/gradual-x/world")):
        _refused(run_cli(*args), "cannot write in /proc")
    assert not cache.exists()


def test_a_run_whose_prompt_is_too_long_leaves_no_record(tmp_path: Path, tiny_model_dir: Path,
                                                         sample_items: list[dict], cache: Path) -> None:
    # The context check needs the tokenizer, so it runs after the model loads, but before config.yaml is
    # written: the retry after shortening the question is an ordinary run, not a refused one.
    rows = [dict(r) for r in sample_items]
    rows[1]["question"] = "Which " + "very " * 2000 + "long question?"
    cfg = _config(tmp_path, tiny_model_dir, _dataset(tmp_path / "data", rows))
    out = tmp_path / "run"
    _refused(run_cli("run", "--config", str(cfg), "--out", str(out), "--quiet"), "more than the model's context")
    assert not out.exists()  # the lock's new folder goes again: nothing was written in it
    cfg = _config(tmp_path, tiny_model_dir, _dataset(tmp_path / "data", sample_items))
    res = run_cli("run", "--config", str(cfg), "--out", str(out), "--quiet")  # no --resume needed
    assert res.returncode == 0, res.stderr
