"""Configs as dataclasses: the single source of every default, loaded from YAML plus flag overrides.

Run as: `gradual run --config configs/default.yaml` (flags override YAML values).

Validation reports every bad key or value in one UserError, before any model is loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin

import yaml

from gradual.errors import UserError
from gradual.strategies import STRATEGIES


# The probe's estimators and backends: these Literals are the one list (validation, help, flags).
Estimator = Literal["sample", "exact"]
Backend = Literal["hf", "vllm"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
BACKENDS: tuple[str, ...] = get_args(Backend)


@dataclass
class ProbeConfig:
    """SliCK probe settings; defaults are the paper's protocol (PAPER.md §1)."""

    estimator: Estimator = "sample"
    nex: int = 10  # few-shot prompts (exemplar sets) per question
    shots: int = 4  # exemplars per prompt
    samples: int = 16  # sampled answers per prompt
    temperature: float = 0.5
    top_k: int = 40
    seed: int = 0
    batch_size: int = 256  # sequences per forward pass (a question with 16 samples is 17 sequences)
    max_new_tokens: int = 12  # answers are short entities; decoding also stops at the newline
    repeat: int = 0  # extra probes with fresh exemplar seeds, to measure chance category flips
    cache: bool = True
    # Every prompt, sample and score for every item (the paper's full estimates). Off: each item stops
    # at the evidence that settles its category; the categories are the same in fp32, the work far less
    # (in bf16 a few items near a threshold can differ: see gradual.probe.engine).
    full: bool = False
    # Who runs the model: "hf" (gradual's HFEngine, CPU or GPU) or "vllm" (GPU; pip install 'gradual[vllm]').
    backend: Backend = "hf"


@dataclass
class TrainConfig:
    """One stage of fine-tuning (LoRA by default)."""

    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 16
    grad_accum: int = 1  # gradient accumulation steps (effective batch = batch_size * grad_accum * devices)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    patience: int = 2  # epochs without dev improvement before stopping
    min_dev: int = 20  # below this many dev items early stopping is unreliable: train all epochs
    max_dev: int = 300  # dev items evaluated per epoch (a fixed subset keeps epochs cheap)
    replay_ratio: float = 0.0
    seed: int = 0
    chat: bool = False  # wrap questions in the tokenizer's chat template
    # Where the Trainer reports loss and dev exact match per epoch (and a run the probe's category
    # counts per stage): "none", or integrations it takes, comma-separated ("tensorboard", "wandb,mlflow").
    report_to: str = "none"


@dataclass
class Stage2Config:
    """What changes after the first stage (PAPER.md §2: lower lr, weight decay 0.01, replay 0.2)."""

    lr_scale: float = 0.5
    weight_decay: float = 0.01
    replay_ratio: float = 0.2
    epochs: int = 3


@dataclass
class RunConfig:
    model: str = "smollm2-135m"
    data: str = "data/world"  # a dataset folder; built automatically when it is the world default
    strategy: str = "gradual"
    seed: int = 0
    max_stages: int = 3  # for the frontier strategy
    limit_train: int = 0  # 0 = all; otherwise a deterministic subset (for quick runs)
    limit_test: int = 0
    device: str = "auto"
    dtype: str = "auto"
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)


def _check(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            errors.append(f"{key}: {value!r} is not one of {', '.join(map(str, get_args(tp)))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{key}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            errors.append(f"{prefix}{key}: unknown key (known: {', '.join(sorted(names))})")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        val, tp = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(val, dict):
                errors.append(f"{prefix}{f.name}: expected a mapping, got {val!r}")
                continue
            kwargs[f.name] = _build(tp, val, f"{prefix}{f.name}.", errors)
        else:
            kwargs[f.name] = _check(val, tp, prefix + f.name, errors)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # only reachable after errors were recorded
        errors.append(f"{prefix.rstrip('.') or 'config'}: {exc}")
        obj = cls()
    return obj


@dataclass(frozen=True)
class Bound:
    """An allowed numeric interval; the predicate and its human text come from the same numbers,
    so an error message can never disagree with the check."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # True: lo itself is not allowed (> lo instead of >= lo)
    hi_open: bool = False

    def ok(self, value: float) -> bool:
        if value != value:  # NaN compares false with everything; reject it explicitly
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    @property
    def text(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return " and ".join(parts)


def _ge(lo: float) -> Bound:
    return Bound(lo=lo)


def _gt(lo: float) -> Bound:
    return Bound(lo=lo, lo_open=True)


# The one table of numeric ranges, by dotted config key. Run configs (load_run_config) and command
# flags (probe's validate_config, `gradual train`) all check against it; a flag's name is the
# field name with dashes (train.batch_size -> --batch-size).
RANGES: dict[str, Bound] = {
    "probe.nex": _ge(1), "probe.shots": _ge(0), "probe.samples": _ge(1), "probe.temperature": _gt(0),
    "probe.top_k": _ge(0), "probe.batch_size": _ge(1), "probe.max_new_tokens": _ge(1), "probe.repeat": _ge(0),
    "train.lora_r": _ge(1), "train.lora_alpha": _gt(0), "train.lora_dropout": Bound(lo=0, hi=1, hi_open=True),
    "train.epochs": _ge(1), "train.lr": _gt(0), "train.batch_size": _ge(1), "train.grad_accum": _ge(1),
    "train.weight_decay": _ge(0), "train.warmup_ratio": Bound(lo=0, hi=1), "train.patience": _ge(0),
    "train.min_dev": _ge(0), "train.max_dev": _ge(1), "train.replay_ratio": _ge(0),
    "stage2.lr_scale": _gt(0), "stage2.weight_decay": _ge(0), "stage2.replay_ratio": _ge(0), "stage2.epochs": _ge(1),
    "max_stages": _ge(1), "limit_train": _ge(0), "limit_test": _ge(0),
}


def out_of_range(label: str, value: Any, bound: Bound) -> str:
    """`probe.nex: -3 is out of range (>= 1)`: the key or flag, the value given, what is allowed."""
    return f"{label}: {value!r} is out of range ({bound.text})"


def range_errors(obj: Any, section: str, flags: bool = False) -> list[str]:
    """Every field of `obj` (the config section `section`, "" for RunConfig's own fields) outside RANGES.

    Messages name the dotted key, or with `flags` the command-line flag (`--max-new-tokens`).
    """
    errors = []
    for key, bound in RANGES.items():
        sec, _, name = key.rpartition(".")
        if sec != section:
            continue
        value = getattr(obj, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not bound.ok(value):
            errors.append(out_of_range("--" + name.replace("_", "-") if flags else key, value, bound))
    return errors


def _ranges(cfg: RunConfig, errors: list[str]) -> None:
    errors.extend(range_errors(cfg, ""))
    for section in ("probe", "train", "stage2"):
        errors.extend(range_errors(getattr(cfg, section), section))


def _known_strategy(cfg: RunConfig, errors: list[str]) -> None:
    if isinstance(cfg.strategy, str) and cfg.strategy not in STRATEGIES:
        errors.append(f"strategy: unknown strategy {cfg.strategy!r} (known: {', '.join(sorted(STRATEGIES))})")


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    cur = data
    *parents, last = dotted.split(".")
    for part in parents:
        cur = cur.setdefault(part, {})
    cur[last] = value


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML run config, apply dotted-key overrides (from flags), validate everything at once."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise UserError(f"--config: {p}: no such file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{p}: invalid YAML ({exc})") from None
        except UnicodeDecodeError:
            raise UserError(f"{p}: not valid UTF-8") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{p}: expected a mapping at the top level")
        data = loaded or {}
    for key, val in (overrides or {}).items():
        if val is not None:
            set_dotted(data, key, val)
    return config_from_mapping(data, str(path) if path else "")


def config_from_mapping(data: dict[str, Any], src: str = "") -> RunConfig:
    """A RunConfig from a mapping (a YAML file's, or the `config` a run folder's config.yaml records),
    validated at once; `src` names where it came from in the error."""
    errors: list[str] = []
    cfg = _build(RunConfig, data, "", errors)
    # Range and strategy checks skip values of the wrong type (already reported above), so a config
    # with both kinds of mistakes gets every message in one go.
    _ranges(cfg, errors)
    _known_strategy(cfg, errors)
    if errors:
        raise UserError((f"{src}: " if src else "") + "invalid config:\n  " + "\n  ".join(errors))
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def run_identity(config: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run (a resume, a finished run a compare reuses): the resolved
    config with every field filled in, so a config recorded before a field existed matches one that
    holds that field's default; without train.report_to, since where a run reports is not what it
    computes. A recorded config this version cannot read matches nothing but itself."""
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
