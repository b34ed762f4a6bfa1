"""Configs as dataclasses: the single source of every default, loaded from YAML plus flag overrides.

Run as: `gradual run --config configs/default.yaml` (flags override YAML values).

Validation reports every bad key or value in one UserError, before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from gradual.errors import UserError


@dataclass
class ProbeConfig:
    """SliCK probe settings; defaults are the paper's protocol (PAPER.md §1)."""

    estimator: Literal["sample", "exact"] = "sample"
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
                errors.append(f"{prefix}{f.name}: expected a mapping")
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


def _ranges(cfg: RunConfig, errors: list[str]) -> None:
    p, t = cfg.probe, cfg.train
    for key, ok in [
        ("probe.nex", p.nex >= 1), ("probe.shots", p.shots >= 0), ("probe.samples", p.samples >= 1),
        ("probe.temperature", p.temperature > 0), ("probe.top_k", p.top_k >= 0),
        ("probe.batch_size", p.batch_size >= 1), ("probe.max_new_tokens", p.max_new_tokens >= 1),
        ("probe.repeat", p.repeat >= 0), ("train.epochs", t.epochs >= 1), ("train.lr", t.lr > 0),
        ("train.batch_size", t.batch_size >= 1), ("train.grad_accum", t.grad_accum >= 1),
        ("train.patience", t.patience >= 0), ("train.min_dev", t.min_dev >= 0), ("train.max_dev", t.max_dev >= 1),
        ("train.lora_r", t.lora_r >= 1),
        ("train.replay_ratio", t.replay_ratio >= 0), ("train.weight_decay", t.weight_decay >= 0),
        ("stage2.replay_ratio", cfg.stage2.replay_ratio >= 0), ("stage2.lr_scale", cfg.stage2.lr_scale > 0),
        ("stage2.epochs", cfg.stage2.epochs >= 1), ("max_stages", cfg.max_stages >= 1),
        ("limit_train", cfg.limit_train >= 0), ("limit_test", cfg.limit_test >= 0),
    ]:
        if not ok:
            errors.append(f"{key}: value out of range")


def _known_strategy(cfg: RunConfig, errors: list[str]) -> None:
    from gradual.strategies import STRATEGIES  # imported late: strategies imports this module

    if cfg.strategy not in STRATEGIES:
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
    errors: list[str] = []
    cfg = _build(RunConfig, data, "", errors)
    if not errors:
        _ranges(cfg, errors)
        _known_strategy(cfg, errors)
    if errors:
        src = f"{path}: " if path else ""
        raise UserError(src + "invalid config:\n  " + "\n  ".join(errors))
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
