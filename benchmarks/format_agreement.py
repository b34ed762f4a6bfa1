"""Do few-shot (SliCK) and zero-shot probing pick the same items? (Gong et al. 2025's objection.)

Run as: .venv/bin/python benchmarks/format_agreement.py --fewshot runs/x/probe/base_train.jsonl \
            [--data data/world] [--dtype fp32] [--out format_agreement.json]

Probes the items of an existing few-shot probe file again with `probe.format: zeroshot` (the bare
"Q: ...\\nA:" prompt the fine-tuned model is trained and evaluated in; one prompt, no exemplars),
same model, estimator and decoding settings, and cross-tabulates the two categorizations. A
zero-shot probe has no MaybeKnown (one greedy answer is right or wrong), so the question it answers
is where few-shot MaybeKnown items, the ones gradual's stage 1 trains on, stand in the fine-tune
format: already HighlyKnown there (the exemplars only unlock the format), WeaklyKnown (reachable
by sampling), or Unknown.

Last line: format_agreement: items=<n> dtype=<d> isa=<isa> mk_zero_hk=<share of few-shot MK that are
  zero-shot HK> mk_zero_unknown=<share that are zero-shot Unknown> same=<share with the same category>
  seconds=<wall of the zero-shot probe>
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

from gradual.categories import CATEGORIES
from gradual.config import ProbeConfig
from gradual.data.items import load_dataset_dir
from gradual.lm.load import cpu_isa, load_model
from gradual.probe import load_probe, probe


def cross_table(few: dict[str, str], zero: dict[str, str]) -> dict[str, dict[str, int]]:
    """few-shot category -> zero-shot category -> items."""
    table = {c: {z: 0 for z in CATEGORIES} for c in CATEGORIES}
    for ident, cat in few.items():
        table[cat][zero[ident]] += 1
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fewshot", type=Path, required=True, help="A few-shot probe file (its summary beside it).")
    ap.add_argument("--data", type=Path, default=Path("data/world"), help="The dataset folder it probed.")
    ap.add_argument("--dtype", default=None, help="Model dtype (default: the few-shot probe's).")
    ap.add_argument("--out", type=Path, default=None, help="Write the table and figures as JSON.")
    args = ap.parse_args()

    few = load_probe(args.fewshot)
    s = few.summary
    cfg = dataclasses.replace(ProbeConfig(**{k: v for k, v in s["config"].items() if k in
                                             {f.name for f in dataclasses.fields(ProbeConfig)}}),
                              format="zeroshot", repeat=0, cache=False)
    ds = load_dataset_dir(args.data)
    by_id = {it.id: it for it in ds.train}
    items = [by_id[r.id] for r in few.rows]
    dtype = args.dtype or s["model"]["dtype"].replace("float32", "fp32").replace("bfloat16", "bf16")
    lm = load_model(s["model"]["spec"], "cpu", dtype)
    t0 = time.perf_counter()
    zero = probe(lm, items, ds.dev, cfg, progress=True, desc="zero-shot probe")
    took = time.perf_counter() - t0
    table = cross_table(few.categories(), zero.categories())
    n = len(items)
    mk = sum(table["MaybeKnown"].values()) or 1
    same = sum(table[c][c] for c in CATEGORIES) / n
    corner = "few-shot \\ zero-shot"
    print(f"{corner:<22}" + "".join(f"{z:>13}" for z in CATEGORIES))
    for c in CATEGORIES:
        print(f"{c:<22}" + "".join(f"{table[c][z]:>13}" for z in CATEGORIES))
    result = {"items": n, "dtype": str(lm.placement.dtype).removeprefix("torch."), "isa": cpu_isa(),
              "fewshot_counts": dict(Counter(few.categories().values())), "zeroshot_counts": zero.counts(),
              "table": table, "mk_zero_hk": table["MaybeKnown"]["HighlyKnown"] / mk,
              "mk_zero_unknown": table["MaybeKnown"]["Unknown"] / mk, "same": same, "seconds": round(took, 1)}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"format_agreement: items={n} dtype={result['dtype']} isa={result['isa']} "
          f"mk_zero_hk={result['mk_zero_hk']:.3f} mk_zero_unknown={result['mk_zero_unknown']:.3f} "
          f"same={same:.3f} seconds={took:.0f}")


if __name__ == "__main__":
    main()
