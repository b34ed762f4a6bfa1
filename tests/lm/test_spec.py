"""Model specs (gradual.lm.spec): an unknown hub id fails fast and quietly when the hub is unreachable, a
cached one loads without it, and bad paths are refused without asking the hub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradual.errors import UserError
from tests.conftest import write_jsonl


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


@pytest.mark.integration
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


@pytest.mark.integration
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
