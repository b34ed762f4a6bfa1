"""benchmarks/gpu_check.py, run as the suite can run it: tiny models, the CPU standing in for the GPU.

On a lent GPU machine the same script runs at full size (see its docstring); here it must at least run
end to end and report what it measured, so it is ready when a GPU is."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_runs_on_cpu_tiny(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    gpu_check = _load()
    out = tmp_path / "gpu_check.json"
    rc = gpu_check.main(["--device", "cpu", "--tiny", "--tokenizer", str(tiny_model_dir), "--json", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(out.read_text())
    assert rc == 0, last
    assert last.startswith("gpu_check: device=cpu correct_fp32=true")
    c = report["correctness"]
    # The CPU against itself in fp32: identical, and the items are not all of one category.
    assert c["fp32_same_categories"] == c["items"] and c["fp32_max_abs_dp"] == 0.0
    assert sum(1 for n in c["counts_cpu_fp32"].values() if n) >= 2, c["counts_cpu_fp32"]
    assert report["training"]["loss_fell"] and report["training"]["adapter_reloads"]
    t = report["throughput"]["tiny"]
    assert t["items"] == 12 and t["items_per_s"] > 0 and t["raw_forward_tokens_per_s"] > 0
    assert f"tiny_items_per_s={t['items_per_s']}" in last
