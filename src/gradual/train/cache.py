"""Stage cache: a stage trained once serves every run of a compare that would train it again.

Run as: used by gradual.pipeline when `gradual compare` hands its runs OUT/stage-cache/ (a lone
`gradual run` trains every stage itself, so nothing grows behind a user's back).

Why: in a compare most strategies share stage 1 (gradual, gradual-mk, random-stage2, frontier and
maybeknown all train the base MaybeKnown items with train settings and the run seed from the base
weights), and a strategy that ignores the categories (`all`) trains the very same stage under every
exemplar seed. On the 1,000-item compare re-training identical stages was 30% of the run time.

An entry is keyed by everything the trained weights depend on: the starting weights and tokenizer
(LoadedModel.fingerprint), device type, dtype, process count and FSDP/DeepSpeed launch flags, the train
items in order, the replay pool, the dev items, the resolved TrainConfig (seed included; not report_to),
TRAIN_VERSION, PROMPT_VERSION (the fine-tune text format) and the torch / transformers / peft /
accelerate versions. A cache that cannot be written (disk full, read-only) costs a warning, not the
run: the stage was trained, the run goes on without the entry. Training is deterministic for one key on one machine (on CPU the shared stage
1 of `gradual` and `maybeknown` gave equal categories in every block of that compare; GPU kernels
may not be bit-exact, and then a hit gives every sharing run the same one of the possible stage-1
models, which is what a paired comparison wants).

Layout: OUT/stage-cache/<key>/ holds what train_stage wrote (adapter/ or model/, stage.json,
metrics.jsonl, train_items.jsonl), not the pipeline's per-run record.json, logs or scratch. Entries
are written whole (copied to a temp sibling, then renamed), so a killed compare never leaves half
one; an entry without a readable stage.json and its weights is ignored and replaced. Files are hard
links where the file system allows (a full fine-tune's weights are not stored twice). A hit does not
log to `train.report_to` trackers (the stage was logged when it was trained).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from gradual.atomic import read_json
from gradual.data.items import Item
from gradual.rundir import LOGS, SCRATCH, STAGE_RECORD, StageDir

log = logging.getLogger(__name__)

TRAIN_VERSION = 1  # bump when train_stage's results for the same inputs change
# FSDP / DeepSpeed launches train (and checkpoint) differently from plain DDP.
SHARDING_ENV = ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")
_LIBRARIES = ("torch", "transformers", "peft", "accelerate")  # peft builds and initialises the LoRA weights
_NOT_CACHED = (STAGE_RECORD, LOGS, SCRATCH)  # per-run files: the run that hits writes its own


def stage_key(lm: Any, items: Sequence[Item], replay: Sequence[Item], dev: Sequence[Item], train: Any,
              world_size: int) -> str:
    """The cache key of training `items` (+ `replay` pool) from `lm`'s weights with `train` settings."""
    from gradual.probe.cache import items_hash, library_versions
    from gradual.prompts import PROMPT_VERSION

    param = next(iter(lm.model.parameters()))
    parts = {"train_version": TRAIN_VERSION, "prompt_version": PROMPT_VERSION,
             "libraries": library_versions(_LIBRARIES),
             "weights": lm.fingerprint, "device": param.device.type, "dtype": str(param.dtype),
             "world_size": world_size, "sharded": {k: os.environ.get(k, "") for k in SHARDING_ENV},
             "items": items_hash(items), "replay": items_hash(replay), "dev": items_hash(dev),
             # Trackers log the training; they do not change it.
             "train": {k: v for k, v in dataclasses.asdict(train).items() if k != "report_to"}}
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class StageCache:
    """The folder of cached stages (one sub-folder per key)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def get(self, key: str, lora: bool) -> Path | None:
        """The entry for `key` if it is whole (its stage.json reads and its weights are there)."""
        entry = StageDir(self.root / key)
        if not entry.weights(lora).is_dir() or not isinstance(read_json(entry.stage_json), dict):
            return None
        return entry.root

    def put(self, key: str, stage_dir: Path, lora: bool) -> None:
        """Keep a copy of a trained stage folder under `key` (a whole entry already there stays)."""
        if self.get(key, lora) is not None:
            return
        final = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(stage_dir, tmp, ignore=shutil.ignore_patterns(*_NOT_CACHED), copy_function=_link_or_copy)
        shutil.rmtree(final, ignore_errors=True)  # a damaged entry (the check above failed)
        os.replace(tmp, final)

    def try_put(self, key: str, stage_dir: Path, lora: bool) -> bool:
        """put(), but a cache that cannot take the entry is a warning: the cache only saves time."""
        try:
            self.put(key, stage_dir, lora)
            return True
        except OSError as exc:
            shutil.rmtree(self.root / f".{key}.tmp-{os.getpid()}", ignore_errors=True)
            log.warning("stage cache %s: could not keep this stage (%s); runs that share it will train it again",
                        self.root, exc)
            return False

    @staticmethod
    def copy_to(entry: Path, stage_dir: Path) -> None:
        """Give a run the cached stage: its folder appears whole (temp sibling, then rename)."""
        stage_dir = Path(stage_dir)
        tmp = stage_dir.with_name(f".{stage_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(entry, tmp, copy_function=_link_or_copy)
        shutil.rmtree(stage_dir, ignore_errors=True)  # what an interrupted training left
        stage_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, stage_dir)


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows one: a full fine-tune's weights are gigabytes, and
    gradual never rewrites a file in place (writes are temp + rename), so sharing the bytes is safe."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
