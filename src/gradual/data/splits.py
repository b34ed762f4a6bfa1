"""Deterministic train/dev/test splits, and the atomic writer of a dataset folder.

Run as: gradual data import --format jsonl items.jsonl --out data/mine --seed 0

A split is grouped by subject (every item about one subject lands in one split, so no test
question asks about an entity the model was fine-tuned on) and stratified by relation (each
relation keeps roughly the requested dev/test shares). Items with a null subject are groups of
their own. The same items and seed give the same split on any machine: the only randomness is a
`random.Random` seeded from a string, whose hashing is fixed across Python runs.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from gradual.atomic import atomic_dir, write_json
from gradual.data.items import SPLITS, Item, write_items
from gradual.errors import UserError
from gradual.preflight import writable_folder

DATASET_FILES = tuple(f"{s}.jsonl" for s in SPLITS) + ("meta.json",)


def check_fracs(dev_frac: float, test_frac: float) -> None:
    """Reject shares that leave no training data; errors name the flag."""
    for flag, frac in (("--dev-frac", dev_frac), ("--test-frac", test_frac)):
        if not 0.0 <= frac < 1.0:
            raise UserError(f"{flag}: must be in [0, 1), got {frac}")
    if dev_frac + test_frac >= 1.0:
        raise UserError(f"--dev-frac/--test-frac: together {dev_frac + test_frac:g} leave no training data")


def _group_key(item: Item) -> str:
    # The "\0" prefix keeps a null-subject item's group apart from any real subject string.
    return item.subject if item.subject is not None else f"\0{item.id}"


def _main_relation(group: Sequence[Item]) -> str:
    counts: dict[str, int] = {}
    for it in group:
        counts[it.relation or ""] = counts.get(it.relation or "", 0) + 1
    return min(counts, key=lambda r: (-counts[r], r))


def split_items(
    items: Sequence[Item], seed: int = 0, dev_frac: float = 0.1, test_frac: float = 0.2
) -> dict[str, list[Item]]:
    """Split items into train/dev/test, grouped by subject and stratified by relation.

    Each subject group joins the stratum of its most frequent relation (a country with capital,
    continent and currency facts is one group; one stratum per relation keeps strata large enough
    for the shares to round well). Within a stratum the groups are shuffled by seed and dealt to
    test, then dev, until each reaches its share of the stratum's items; the rest go to train.
    Output keeps the input order.
    """
    check_fracs(dev_frac, test_frac)
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(_group_key(it), []).append(i)
    strata: dict[str, list[str]] = {}
    for key, idx in groups.items():
        strata.setdefault(_main_relation([items[i] for i in idx]), []).append(key)

    assign: dict[int, str] = {}
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        random.Random(f"gradual-split:{seed}:{stratum}").shuffle(keys)
        total = sum(len(groups[k]) for k in keys)
        want = {"test": round(total * test_frac), "dev": round(total * dev_frac)}
        have = {"test": 0, "dev": 0}
        for key in keys:
            size = len(groups[key])
            # A group goes where it brings the count closest to the target, never past it by
            # more than it fills, so big groups cannot push a small stratum's test share to 100%.
            split = "train"
            for name in ("test", "dev"):
                gap = want[name] - have[name]
                if gap > 0 and size <= 2 * gap:
                    split = name
                    break
            if split != "train":
                have[split] += size
            for i in groups[key]:
                assign[i] = split
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for i, it in enumerate(items):
        out[assign[i]].append(it)
    return out


def subject_overlap(splits: Mapping[str, Sequence[Item]], a: str = "train", b: str = "test") -> set[str]:
    """Subjects (non-null) present in both splits `a` and `b`."""
    sa = {it.subject for it in splits[a] if it.subject is not None}
    return {it.subject for it in splits[b] if it.subject is not None and it.subject in sa}


def check_unique_ids(splits: Mapping[str, Sequence[Item]], source: str) -> None:
    seen: dict[str, str] = {}
    for name in SPLITS:
        for it in splits.get(name, ()):
            if it.id in seen:
                raise UserError(f"{source}: duplicate id {it.id!r} (in {seen[it.id]} and {name})")
            seen[it.id] = name


def _check_out(out: Path) -> None:
    """Refuse to replace anything but an earlier dataset folder (or an empty folder), or a place we may
    not write."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder")
    writable_folder(out.absolute().parent if not out.exists() else out)
    if out.is_dir():
        extra = sorted(p.name for p in out.iterdir() if p.name not in DATASET_FILES)
        if extra and not (out / "meta.json").exists():
            raise UserError(f"--out: {out} exists and is not a dataset folder (holds {', '.join(extra[:3])}); pick another")
        if extra:
            raise UserError(f"--out: {out} holds files other than a dataset's ({', '.join(extra[:3])}); pick another")


def write_dataset(out: Path, splits: Mapping[str, Sequence[Item]], meta: Mapping[str, Any]) -> Path:
    """Write train/dev/test.jsonl and meta.json into `out` as one atomic step.

    The files go into a temp folder beside `out`, which is then renamed into place (an earlier
    dataset at `out` is swapped out and removed), so a reader never sees a half-built dataset and
    a failure leaves no output at all. meta gets the split counts added.
    """
    out = Path(out)
    _check_out(out)
    empty = [s for s in SPLITS if not splits.get(s)]
    if empty:
        # A dataset folder needs all three (dev is the probe's exemplar pool and the early-stopping
        # set): refuse here, before writing, rather than leave a folder no command can read.
        n = sum(len(splits.get(s, ())) for s in SPLITS)
        flags = " / ".join(f"--{s}-frac" for s in empty if s != "train") or "--dev-frac / --test-frac"
        raise UserError(f"the {', '.join(empty)} split{'s' if len(empty) > 1 else ''} of {n} items would be "
                        f"empty (items are split by subject); give more items or change {flags}")
    full_meta = dict(meta)
    full_meta["counts"] = {s: len(splits.get(s, ())) for s in SPLITS}
    with atomic_dir(out) as tmp:
        for s in SPLITS:
            write_items(tmp / f"{s}.jsonl", splits.get(s, ()))
        write_json(tmp / "meta.json", full_meta)
    return out

