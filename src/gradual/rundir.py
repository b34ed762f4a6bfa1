"""The run folder's layout and the run's identity, in one place.

Run as: used by gradual.pipeline (writes a run folder), gradual.compare (a compare folder of run
folders), gradual.report, gradual.export, gradual.merge and gradual.train.stage (a stage folder).

A run folder (`gradual run --out RUN`)::

    RUN/
      .lock                            held while a process works here (gradual.runlock)
      config.yaml                      the run record: {config, seed, command, versions}
      probe/<name>.jsonl               one probe: base_train, base_test, stage<k>_train (after stage k)
      probe/<name>.summary.json        its summary (gradual.probe.result.summary_path)
      stages/stage<k>/                 one stage folder per planned stage (below)
        record.json                    the pipeline's record of the stage; its presence: the stage is done
      eval/test.json                   greedy exact match on test with the final model
      eval/test.predictions.jsonl      one prediction per test item
      logs/<part>/                     report_to event files of the run's parts (the probe's counts)
      summary.json                     the finished run (its presence: the run is done)
      report.html                      the HTML report

A stage folder (`gradual train --out STAGE`, or a run's stages/stage<k>/)::

    STAGE/
      adapter/ | model/                the kept weights: the LoRA adapter, or full weights
      train_items.jsonl                what the stage trained on (replay marked)
      metrics.jsonl                    one row per epoch, the best marked
      stage.json                       train_stage's record; its presence: the stage finished
      logs/                            report_to event files (tensorboard)
      .trainer/                        the Trainer's epoch checkpoints while the stage trains

A compare folder (`gradual compare --out CMP`)::

    CMP/
      .lock
      runs/<strategy>-seed<k>/         ordinary run folders (gradual.compare.run_name)
      comparison.json, comparison.md   the aggregate
      report.html

The identity rule (`run_identity`): two runs are the same run, so that `--resume` may continue one and
a compare may reuse a finished one, when their configs resolve to the same full config: every field
filled in with its default (a config recorded before a field existed matches one holding that field's
default), WITHOUT train.report_to, since where a run reports is not what it computes. The seed,
strategy, model, data and every probe/train/stage2 field are included. The command line, the library
versions and the folder itself are not.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from gradual.runlock import LOCK_NAME

if TYPE_CHECKING:
    from gradual.config import RunConfig

# A stage folder's contents (train_stage writes them; gradual train --out is one such folder).
ADAPTER_DIR, MODEL_DIR = "adapter", "model"
STAGE_JSON = "stage.json"
METRICS = "metrics.jsonl"
TRAIN_ITEMS = "train_items.jsonl"
LOGS = "logs"
SCRATCH = ".trainer"

# A run folder's contents.
CONFIG = "config.yaml"
SUMMARY = "summary.json"
REPORT = "report.html"
PROBE = "probe"
STAGES = "stages"
STAGE_RECORD = "record.json"
STAGE_CACHE = "stage-cache"
EVAL = "eval"

# A compare folder's contents.
RUNS = "runs"
COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"

_STAGE_DIR = re.compile(r"stage(\d+)")


def run_identity(config: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The one identity rule: what makes two runs the same run (a resume; a finished run a compare
    reuses). It includes the resolved config with every field filled in with its default, so a config
    recorded before a field existed matches one that holds that field's default; it excludes
    train.report_to, since where a run reports is not what it computes. A recorded config this
    version cannot read (or none at all) matches nothing but itself."""
    from gradual.config import RunConfig, to_dict
    from gradual.run_config import config_from_mapping
    from gradual.errors import UserError

    if not isinstance(config, RunConfig):
        if not isinstance(config, Mapping) or not config:
            return {"unreadable": repr(config)}
        try:
            config = config_from_mapping(copy.deepcopy(dict(config)))
        except UserError:
            return {"unreadable": dict(config)}
    out = to_dict(config)
    out["train"].pop("report_to", None)
    return out


def train_probe_name(after_stage: int) -> str:
    """The name of the train split's probe after `after_stage` stages: base_train (0), else stage<k>_train."""
    return "base_train" if after_stage == 0 else f"stage{after_stage}_train"


@dataclass(frozen=True)
class _Folder:
    """A folder gradual writes, by its root (any path-like, kept as a Path)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))


class StageDir(_Folder):
    """One stage folder: `gradual train --out`, or a run's stages/stage<k>/."""

    @property
    def adapter(self) -> Path:
        return self.root / ADAPTER_DIR

    @property
    def full_model(self) -> Path:
        return self.root / MODEL_DIR

    def weights(self, lora: bool) -> Path:
        """Where the stage keeps its weights: adapter/ with LoRA, model/ for full fine-tuning."""
        return self.adapter if lora else self.full_model

    @property
    def stage_json(self) -> Path:
        return self.root / STAGE_JSON

    @property
    def record(self) -> Path:
        """The pipeline's record of a run's stage (train_stage writes its own stage.json)."""
        return self.root / STAGE_RECORD

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def train_items(self) -> Path:
        return self.root / TRAIN_ITEMS

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def scratch(self) -> Path:
        return self.root / SCRATCH


class _OutFolder(_Folder):
    """A folder a command owns (`run --out`, `compare --out`): its lock and its HTML report."""

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME


class RunDir(_OutFolder):
    """One run folder (`gradual run --out`): where each of its files lives, and the run's identity."""

    identity = staticmethod(run_identity)

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY


    def probe(self, name: str) -> Path:
        return self.root / PROBE / f"{name}.jsonl"

    def train_probe(self, after_stage: int) -> Path:
        """The train split's probe after `after_stage` stages (0: the base model's); the items of stage
        k were selected from train_probe(k - 1)."""
        return self.probe(train_probe_name(after_stage))

    @property
    def stages_dir(self) -> Path:
        return self.root / STAGES

    def stage(self, k: int) -> Path:
        return self.stages_dir / f"stage{k}"

    def stage_dir(self, k: int) -> StageDir:
        return StageDir(self.stage(k))

    def adapter(self, k: int) -> Path:
        return self.stage_dir(k).adapter

    def full_model(self, k: int) -> Path:
        return self.stage_dir(k).full_model

    def stage_record(self, k: int) -> Path:
        return self.stage_dir(k).record

    def stages(self) -> list[int]:
        """The stage numbers with a folder (stages/stage<N>/), ascending."""
        if not self.stages_dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.stages_dir.iterdir()
                      if p.is_dir() and (m := _STAGE_DIR.fullmatch(p.name)))

    @property
    def eval_json(self) -> Path:
        return self.root / EVAL / "test.json"

    @property
    def eval_predictions(self) -> Path:
        return self.root / EVAL / "test.predictions.jsonl"

    def logs(self, part: str) -> Path:
        return self.root / LOGS / part

    def read_record(self) -> dict[str, Any] | None:
        """config.yaml's run record ({config, seed, command, versions}; an empty file reads as {}),
        or None when it is missing, unparseable or not a mapping."""
        import yaml

        if not self.config.is_file():
            return None
        try:
            record = yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) else None

    def recorded_identity(self) -> dict[str, Any] | None:
        """The identity of the config this folder's record holds; None without a readable record."""
        record = self.read_record()
        return None if record is None else run_identity(record.get("config") or {})


class CompareDir(_OutFolder):
    """One compare folder (`gradual compare --out`): run folders under runs/, and the aggregate."""

    @property
    def runs_dir(self) -> Path:
        return self.root / RUNS

    @staticmethod
    def run_rel(name: str) -> str:
        """A run's folder relative to the compare folder, as comparison.json records it ("dir")."""
        return f"{RUNS}/{name}"

    def run(self, name: str) -> RunDir:
        return RunDir(self.root / self.run_rel(name))

    @property
    def stage_cache(self) -> Path:
        """Stages trained once for every run of the compare that shares them (gradual.train.cache)."""
        return self.root / STAGE_CACHE

    @property
    def comparison_json(self) -> Path:
        return self.root / COMPARISON_JSON

    @property
    def comparison_md(self) -> Path:
        return self.root / COMPARISON_MD


__all__ = ["ADAPTER_DIR", "MODEL_DIR", "CompareDir", "RunDir", "StageDir", "run_identity", "train_probe_name"]
