"""How far apart are two probes of the same items? (e.g. two exemplar seeds of a compare's base probe)

Run as: .venv/bin/python benchmarks/category_agreement.py A.jsonl B.jsonl [--out agreement.json]
  e.g. results/compare-1000/runs/gradual-ex0-seed0/probe/base_train.jsonl and the -ex1- one

Cross-tabulates the categories of the items both files probed, and counts the items that cross the
line the two-stage strategies select on: from WeaklyKnown/Unknown (greedy never right) to MaybeKnown/
HighlyKnown, and back. On an untrained model every such move is chance (another exemplar draw), so
it is the noise floor under `gradual`'s stage 2, which trains on the items that made that move during
stage 1. No model is loaded: it reads the two probe files only.

Last line: category_agreement: items=<n> same=<share with the same category> up=<LOW->HIGH items>
  down=<HIGH->LOW items> maybeknown_overlap=<|MK in both| / |MK in either|>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gradual.categories import CATEGORIES
from gradual.metrics import category_agreement
from gradual.probe import load_probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path, help="A probe file (rows JSONL, as gradual probe / gradual run write them).")
    ap.add_argument("b", type=Path, help="Another probe file of the same items.")
    ap.add_argument("--out", type=Path, default=None, help="Write the figures as JSON.")
    args = ap.parse_args()
    r = category_agreement(load_probe(args.a).categories(), load_probe(args.b).categories())
    corner = "A \\ B"
    print(f"{corner:<14}" + "".join(f"{c:>13}" for c in CATEGORIES))
    for c, row in zip(CATEGORIES, r["table"]):  # type: ignore[call-overload]
        print(f"{c:<14}" + "".join(f"{v:>13}" for v in row))
    if args.out:
        args.out.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    fmt = lambda x: "none" if x is None else f"{x:.3f}"  # noqa: E731  (no shared items / no MaybeKnown)
    print(f"category_agreement: items={r['items']} same={fmt(r['same'])} up={r['up']} down={r['down']} "
          f"maybeknown_overlap={fmt(r['maybeknown_overlap'])}")


if __name__ == "__main__":
    main()
