"""Scaling out: the probe's items/s with 1 process and with N processes on the same machine.

Run as: .venv/bin/python benchmarks/scale.py [--processes 2] [--items 40] [--estimator sample] [--model smollm2-135m]

Setup: `gradual probe` as a user runs it, once as one process and once under
`accelerate launch --multi_gpu --num_processes N` (torch elastic: N processes; on a machine without a
GPU every rank computes on the CPU, over gloo). Items: a fixed sample (seed 0) of `--items` items of the
world benchmark's train split, its dev split as the exemplar pool, the probe's default protocol
(nex 10, 4 shots, 16 samples, early exit), cache off. The two runs get the same cores: one process
uses all of them (OMP_NUM_THREADS = cores), each of N processes cores / N.

items/s is n_items / compute_s of the probe summary: the probe pass itself, from its start to the last
rank's end (the slowest shard), model loading excluded; wall_s is the whole command (interpreter start
and every rank's model load included). The categories of the two runs must be equal (checked).

Last line: scale: items_per_s_1=<1 process> items_per_s_N=<N processes> scale_x=<ratio> wall_s_1=...
  wall_s_N=... processes=N threads_1=<threads of the single process> threads_N=<threads per process>
  cores=<usable cores> dtype=<model dtype> isa=<CPU vector ISA> items=<n> same_categories=<true|false>
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _probe(cmd_prefix: list[str], args: argparse.Namespace, data: Path, pool: Path, out: Path,
           threads: int) -> tuple[dict[str, Any], dict[str, str], float]:
    """Run `gradual probe` (behind `cmd_prefix`); returns (summary, {id: category}, wall seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", TOKENIZERS_PARALLELISM="false")
    cmd = [*cmd_prefix, "-m", "gradual.cli", "probe", "--model", args.model, "--data", str(data), "--exemplars",
           str(pool), "--out", str(out), "--estimator", args.estimator, "--no-cache", "--quiet"]
    if args.device:
        cmd += ["--device", args.device]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"scale: {' '.join(cmd)} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    summary = json.loads(out.with_name(out.stem + ".summary.json").read_text(encoding="utf-8"))
    cats = {r["id"]: r["category"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    return summary, cats, wall


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--estimator", default="sample", choices=["sample", "exact"])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="", help="cpu, cuda or empty (choose_placement decides)")
    args = ap.parse_args(argv)

    from gradual.data.items import read_items, seeded_subset
    from gradual.data.world import ensure_world
    from gradual.lm.load import choose_placement, cpu_isa

    world = ensure_world(ROOT / "data" / "world", seed=0)
    items = seeded_subset(read_items(world / "train.jsonl"), args.items, seed=0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_proc = max(1, cores // args.processes)
    placement = choose_placement(args.device or None, None)
    with tempfile.TemporaryDirectory(prefix="gradual-scale-") as tmp:
        data = Path(tmp) / "items.jsonl"
        data.write_text("".join(json.dumps(it.to_dict()) + "\n" for it in items), encoding="utf-8")
        one, cats1, wall1 = _probe([sys.executable], args, data, world / "dev.jsonl", Path(tmp) / "one.jsonl", cores)
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                  str(args.processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        many, cats_n, wall_n = _probe(launch, args, data, world / "dev.jsonl", Path(tmp) / "many.jsonl", per_proc)
    n = args.processes
    ips1 = len(items) / one["compute_s"]
    ips_n = len(items) / many["compute_s"]
    assert many["processes"] == n, many["processes"]
    print(f"1 process  ({cores} threads): {ips1:.2f} items/s (probe {one['compute_s']:.1f} s, command {wall1:.1f} s, "
          f"{one['tokens_processed']} model tokens)")
    print(f"{n} processes ({per_proc} thread(s) each): {ips_n:.2f} items/s (probe {many['compute_s']:.1f} s, "
          f"command {wall_n:.1f} s, {many['tokens_processed']} model tokens: each rank recomputes its own "
          "exemplar prefixes)")
    print(f"scale: items_per_s_1={ips1:.3f} items_per_s_{n}={ips_n:.3f} scale_x={ips_n / ips1:.2f} "
          f"wall_s_1={wall1:.1f} wall_s_{n}={wall_n:.1f} processes={n} threads_1={cores} threads_{n}={per_proc} "
          f"cores={cores} device={placement.device.type} dtype={one['model']['dtype']} isa={cpu_isa()} "
          f"items={len(items)} same_categories={str(cats1 == cats_n).lower()}")


if __name__ == "__main__":
    main()
