"""What a user sees in the terminal: fast, quiet model-spec errors, range errors that say what is
allowed, tables that fit 80 columns, and one (rich) progress system during training."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradual.errors import UserError
from tests.conftest import write_jsonl
from tests.fake_runs import make_summary

ITEM = {"id": "a", "question": "What is the capital of France?", "answers": ["Paris"], "relation": "capital"}


def _unreachable_hub_env(hf_home: Path) -> dict[str, str]:
    """Online mode, but every hub route (endpoint and proxies) leads to a closed local port: nothing
    can reach an external address, and huggingface_hub would retry for about a minute if asked."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    dead = "http://127.0.0.1:9"
    env.update(HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_ENDPOINT=dead, HF_HOME=str(hf_home),
               HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead, NO_PROXY="", COLUMNS="200")
    env.pop("HF_HUB_CACHE", None)
    return env


def _gradual(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    exe = Path(sys.executable).with_name("gradual")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gradual.cli"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=300)
    return res, time.perf_counter() - t0


def test_unknown_hub_id_fails_fast_and_quietly_when_unreachable(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [ITEM])
    res, wall = _gradual(["probe", "--model", "nosuchmodel", "--data", str(data), "--out", str(tmp_path / "o.jsonl")],
                         _unreachable_hub_env(tmp_path / "hf"))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "Traceback" not in out and "Retrying" not in out and "MaxRetryError" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --model:"), out
    assert "'nosuchmodel'" in out and "unreachable" in out and "smollm2-135m" in out
    # About a second (the spec is checked before torch loads); 5 s leaves room for a busy machine.
    assert wall < 5, f"took {wall:.1f} s"


def _fake_hub_cache(hf_home: Path, repo_id: str, model_dir: Path) -> None:
    """The layout huggingface_hub writes: hub/models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_cached_hub_id_loads_with_the_hub_unreachable(tmp_path: Path, tiny_model_dir: Path) -> None:
    _fake_hub_cache(tmp_path / "hf", "someorg/tiny", tiny_model_dir)
    res, _ = _gradual(["model", "ask", "--model", "someorg/tiny", "--device", "cpu", "--dtype", "fp32",
                       "What is the capital of France?"], _unreachable_hub_env(tmp_path / "hf"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "someorg/tiny" in out and "Retrying" not in out and "thrown while requesting" not in out


def test_locate_rejects_bad_paths_without_the_hub(tmp_path: Path) -> None:
    from gradual.lm.spec import check_model_spec, locate

    with pytest.raises(UserError, match="no such GGUF file"):
        locate(str(tmp_path / "m.gguf"))
    with pytest.raises(UserError, match="no such folder"):
        locate("./not/here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        locate(str(tmp_path / "empty"))
    check_model_spec("smollm2-135m")  # embedded names are checked when loaded, not here


def test_range_errors_name_key_value_and_range(tmp_path: Path) -> None:
    from gradual.config import RANGES, ProbeConfig
    from gradual.run_config import load_run_config
    from gradual.probe.run import validate_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("probe:\n  nex: -3\n  shots: many\ntrain:\n  lr: 0\n  lora_dropout: 1.0\nmax_stages: 0\n")
    with pytest.raises(UserError) as info:
        load_run_config(cfg)
    msg = str(info.value)
    for needle in ("probe.nex: -3 is out of range (>= 1)", "train.lr: 0.0 is out of range (> 0)",
                   "train.lora_dropout: 1.0 is out of range (>= 0 and < 1)", "max_stages: 0 is out of range (>= 1)",
                   "probe.shots: expected an integer, got 'many'"):  # type and range errors together
        assert needle in msg
    with pytest.raises(UserError, match=r"--nex: -3 is out of range \(>= 1\).*--top-k: -1 is out of range \(>= 0\)"):
        validate_config(ProbeConfig(nex=-3, top_k=-1))
    assert RANGES["probe.temperature"].text == "> 0" and not RANGES["probe.temperature"].ok(float("nan"))


def test_train_flags_report_every_range_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gradual.cli import app

    data = write_jsonl(tmp_path / "d.jsonl", [ITEM])
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "o"), "--epochs", "0",
                                   "--lr", "-1"])
    assert isinstance(res.exception, UserError)
    assert "--epochs: 0 is out of range (>= 1)" in str(res.exception)
    assert "--lr: -1.0 is out of range (> 0)" in str(res.exception)


def _render(width: int, monkeypatch: pytest.MonkeyPatch, draw: object) -> list[str]:
    from rich.console import Console

    monkeypatch.setenv("COLUMNS", str(width))  # what rich reads for a console that is not a terminal
    console = Console(file=io.StringIO(), record=True)
    assert console.width == width
    draw(console)  # type: ignore[operator]
    return console.export_text().splitlines()


LONG_NOTE = ("87 of 1000 items: newly MaybeKnown or WeaklyKnown after stage 1 (re-probe); replay pool 62 base "
             "HighlyKnown items at ratio 0.2")


@pytest.mark.parametrize("width", [80, 120])
def test_run_summary_fits_the_console(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradual.console import print_summary

    s = make_summary("gradual", 0)
    s["stages"][0]["composition"] = {"HighlyKnown": 3, "MaybeKnown": 312, "WeaklyKnown": 12, "Unknown": 40}
    s["stages"][1]["note"] = LONG_NOTE
    lines = _render(width, monkeypatch, lambda c: print_summary(s, c))
    assert all(len(ln) <= width for ln in lines)
    text = "\n".join(lines)
    assert "…" not in text  # nothing cut off
    assert " ".join(text.split()).count(LONG_NOTE) == 1  # the whole note, once, below the table
    table = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("└"))]
    assert len(table) <= 4 + 2 * len(s["stages"])  # title, header, rules; at most 2 lines a stage


@pytest.mark.parametrize("width", [80, 120])
def test_comparison_fits_the_console(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradual.console import print_comparison

    ci = {"mean": 0.451, "lo": 0.401, "hi": 0.501, "n": 3}
    row = {"n_runs": 3, "test_accuracy": ci, "acquired": {"mean": 12.3, "lo": 10.3, "hi": 14.3, "n": 3},
           "forgotten": {"mean": 2.3, "lo": 1.0, "hi": 3.6, "n": 3}, "retention": ci,
           "highly_known_after": {"mean": 150.3, "lo": 140.3, "hi": 160.3, "n": 3},
           "stages": [{"n_train": {"mean": 312}}, {"n_train": {"mean": 87}}], "wall_s": {"mean": 400}}
    comp = {"seeds": [0, 1, 2], "strategies": {n: row for n in ("gradual", "maybeknown", "no-unknown")}}
    lines = _render(width, monkeypatch, lambda c: print_comparison(comp, c))
    text = "\n".join(lines)
    assert all(len(ln) <= width for ln in lines)
    assert "…" not in text and "no-unknown" in text and "maybeknown" in text and "6.7m" in text
    assert "45.1%" in text and ("±5.0%" in text or "[40.1%, 50.1%]" in text)


def test_training_progress_is_rich_not_tqdm(tiny_model_dir: Path, sample_items: list[dict], tmp_path: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    from gradual.config import TrainConfig
    from gradual.data.items import item_from_dict
    from gradual.lm.load import load_model
    from gradual.train import train_stage

    tiny_lm = load_model(str(tiny_model_dir), device="cpu", dtype="fp32")  # train_stage adds LoRA in place
    items = [item_from_dict(r, "sample", i) for i, r in enumerate(sample_items)]
    cfg = TrainConfig(epochs=2, batch_size=4, min_dev=1, max_dev=4)
    train_stage(tiny_lm, items, items[:4], cfg, tmp_path / "loud", progress=True, name="loud")
    out, err = capfd.readouterr()
    assert "loud epoch 1: train loss" in err and "loud epoch 2" in err
    assert "steps, epoch 2/2, loss" in err and "ETA" in err  # the rich bar's final state
    assert "it/s]" not in out + err and "{'loss'" not in out + err  # no tqdm bars, no raw log dicts
    train_stage(tiny_lm, items, items[:4], cfg, tmp_path / "quiet", progress=False, name="quiet")
    out, err = capfd.readouterr()
    assert "quiet" not in out + err and "steps" not in out + err  # --quiet: nothing at all
