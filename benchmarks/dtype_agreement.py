"""How much of the probe depends on how rows are batched, in fp32 and in bf16 (correctness, not speed).

Run as: .venv/bin/python benchmarks/dtype_agreement.py [--dtype bf16] [--items 100] [--estimator sample]

The engine's per-row randomness is counter-based (gradual.lm.sampling), so a row's draws never
depend on its batch; its *logits* can. In fp32 a row's logits are the same whatever it is batched
with (every probe here gives identical categories), so early exit, --full and any batch size give
the same categories. In bf16 the matmul kernels' blocking (and so the rounding of every sum) follows
the batch's shape, a row's logits move at bf16 resolution, and a sample that lands near the inverse-CDF
boundary between two tokens, or a greedy argmax between two near-tied tokens, can come out the other
way. This script measures how often that moves a category, on a fixed sample of the world benchmark's
train split (its dev split the exemplar pool), the default protocol (nex 10, 4 shots, 16 samples,
T 0.5, top-k 40), cache off:

  early   the default probe (early exit, batch_size 256)
  full    --full: every prompt, sample and score (other rows, so other batches)
  small   early exit with batch_size 16 (other batches again)

Last line: dtype_agreement: dtype=<model dtype> isa=<CPU ISA> estimator=<e> items=<n>
  early_vs_full=<categories that differ> early_vs_small=<...> greedy_answers_differ=<prompts whose greedy
  answer differs between early and small> seconds=<wall>
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from probe_speed import fixed_sample, load_data  # noqa: E402

from gradual.config import ProbeConfig  # noqa: E402
from gradual.lm.load import cpu_isa, load_model  # noqa: E402
from gradual.probe import probe  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="auto", help="auto (what gradual picks here), fp32 or bf16")
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--estimator", default="sample", choices=["sample", "exact"])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    lm = load_model(args.model, device="cpu", dtype=args.dtype)
    train, dev, _ = load_data(args.seed)
    items = fixed_sample(train, args.items, args.seed)
    cfg = ProbeConfig(estimator=args.estimator, cache=False, seed=args.seed)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory():
        early = probe(lm, items, dev, cfg, progress=False)
        full = probe(lm, items, dev, dataclasses.replace(cfg, full=True), progress=False)
        small = probe(lm, items, dev, dataclasses.replace(cfg, batch_size=16), progress=False)
    ce, cf, cs = early.categories(), full.categories(), small.categories()
    vs_full = sorted(i for i in ce if ce[i] != cf[i])
    vs_small = sorted(i for i in ce if ce[i] != cs[i])
    greedy = sum(a != b for e, s in zip(early.rows, small.rows) for a, b in zip(e.greedy_answers, s.greedy_answers))
    for name, ids, other in (("full", vs_full, cf), ("small", vs_small, cs)):
        for i in ids:
            print(f"  early vs {name}: {i}: {ce[i]} -> {other[i]}")
    dtype = str(lm.placement.dtype).removeprefix("torch.")
    print(f"dtype_agreement: dtype={dtype} isa={cpu_isa()} estimator={args.estimator} items={len(items)} "
          f"early_vs_full={len(vs_full)} early_vs_small={len(vs_small)} greedy_answers_differ={greedy} "
          f"seconds={time.perf_counter() - t0:.0f}")


if __name__ == "__main__":
    main()
