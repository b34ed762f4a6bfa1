"""What the compare's stage cache (gradual.train.cache) saves: the same runs with and without it.

Run as: .venv/bin/python benchmarks/stage_cache.py [--train 60] [--test 30] [--dtype auto]

On the embedded default model and the built-in world data, it runs `gradual`, `gradual-mk` and
`maybeknown` (all three train the same stage 1: base MaybeKnown, same settings and seed) twice, in
fresh run folders: once without the stage cache (each run trains its stage 1, as before the cache),
once with one (stage 1 trained once, then served). The probe cache is warm for both: a warm-up run of
`gradual` probes every split first, so the two passes differ in training only; the second pass's
stage-2 re-probes are still computed in each (they follow stage-2 weights, which neither pass shares).

Reports each pass's training time (the runs' stage steps) and wall time, their ratios, and whether
every run's results (summary.json without timings, gradual.summary.results_only) are the same with
and without the cache. Run it alone on the machine. Last line:
`stage_cache: train_speedup=<x> wall_speedup=<y> identical=<bool>`.
"""

from __future__ import annotations

from gradual.openmp import set_wait_policy  # noqa: E402

set_wait_policy()  # as gradual's CLI, before torch loads

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

STRATEGIES = ("gradual", "gradual-mk", "maybeknown")


def _config(strategy: str, args: argparse.Namespace, data: Path) -> Any:
    from gradual.run_config import load_run_config

    return load_run_config(None, {
        "model": "smollm2-135m", "data": str(data), "strategy": strategy, "seed": 0, "dtype": args.dtype,
        "limit_train": args.train, "limit_test": args.test, "probe.estimator": "exact", "probe.nex": 10,
        "train.epochs": 3, "train.patience": 1, "train.max_dev": 40, "stage2.epochs": 2})


def _pass(root: Path, args: argparse.Namespace, data: Path, cache: Path | None) -> tuple[float, float, dict]:
    from gradual.pipeline import run_pipeline

    t0 = time.perf_counter()
    train_s, summaries = 0.0, {}
    for s in STRATEGIES:
        summary = run_pipeline(_config(s, args, data), root / s, resume=False, progress=False, stage_cache=cache)
        train_s += sum(v for k, v in summary["steps_wall_s"].items() if k.startswith("stage"))
        summaries[s] = summary
    return train_s, time.perf_counter() - t0, summaries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=60, help="train items (base MaybeKnown of them is stage 1)")
    ap.add_argument("--test", type=int, default=30, help="test items")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on AVX-512 bf16 / AMX CPUs, else fp32), fp32, bf16")
    args = ap.parse_args()

    import torch

    from gradual.data.world import build_world
    from gradual.lm.load import choose_placement
    from gradual.pipeline import run_pipeline
    from gradual.summary import results_only

    with tempfile.TemporaryDirectory(prefix="gradual-bench-") as tmp:
        root = Path(tmp)
        data = root / "world"
        build_world(data)
        run_pipeline(_config("gradual", args, data), root / "warm-up", progress=False)  # warms the probe cache
        plain_train, plain_wall, plain = _pass(root / "plain", args, data, None)
        cached_train, cached_wall, cached = _pass(root / "cached", args, data, root / "stage-cache")
        same = all(results_only(plain[s]) == results_only(cached[s]) for s in STRATEGIES)
        hits = [st.get("stage_cache") for s in STRATEGIES for st in cached[s]["stages"]]
        shutil.rmtree(root, ignore_errors=True)
    placement = choose_placement(None, args.dtype)
    print(f"CPU {torch.backends.cpu.get_cpu_capability()}, {placement.reason}; "
          f"{args.train} train / {args.test} test items; runs {', '.join(STRATEGIES)}")
    print(f"stage cache entries used: {hits}")
    print(f"without the cache: training {plain_train:.1f} s, wall {plain_wall:.1f} s")
    print(f"with the cache:    training {cached_train:.1f} s, wall {cached_wall:.1f} s")
    print(f"stage_cache: train_speedup={plain_train / cached_train:.2f} wall_speedup={plain_wall / cached_wall:.2f} "
          f"identical={same}")


if __name__ == "__main__":
    main()
