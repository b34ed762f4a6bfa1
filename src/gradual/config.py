"""Configs as dataclasses: the single source of every default, loaded from YAML plus flag overrides.

Run as: `gradual run --config configs/default.yaml` (flags override YAML values).

Validation reports every bad key or value in one UserError, before any model is loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin

import yaml

from gradual.errors import UserError, where
from gradual.strategies import STRATEGIES


# The probe's estimators and backends: these Literals are the one list (validation, help, flags).
Estimator = Literal["sample", "exact"]
Backend = Literal["hf", "vllm"]
# fewshot: SliCK's k-shot prompts (PAPER.md §1); zeroshot: the bare "Q: ...\nA:" the fine-tuned model answers.
ProbeFormat = Literal["fewshot", "zeroshot"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
BACKENDS: tuple[str, ...] = get_args(Backend)
PROBE_FORMATS: tuple[str, ...] = get_args(ProbeFormat)


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
    # (in bf16 a few items near a threshold can differ: see gradual.lm.hf).
    full: bool = False
    # Who runs the model: "hf" (gradual's HFEngine, CPU or GPU) or "vllm" (GPU; pip install 'gradual[vllm]').
    backend: Backend = "hf"
    # The prompt the categories are measured in. zeroshot (Gong et al. 2025's objection to few-shot
    # probing): the fine-tune format, one prompt and no exemplars, so nex and shots do not apply and
    # no item can be MaybeKnown (one greedy answer is right or wrong); see gradual.probe.run.
    format: ProbeFormat = "fewshot"


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
        try:
            return float(value)
        except OverflowError:  # an integer with hundreds of digits
            errors.append(f"{key}: {_shown(value)} is not a finite number")
            return None  # reported: the range checks skip it
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


def _shown(value: Any) -> str:
    """repr(value), cut short when it is absurdly long (an integer with 400 digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _num(x: float) -> str:
    """1000000 as `1000000` (not `1e+06`), 0.5 as `0.5`."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


@dataclass(frozen=True)
class Bound:
    """An allowed numeric interval; the predicate and its human text come from the same numbers,
    so an error message can never disagree with the check.

    lo/hi are what a value means (a dropout below 1); `cap` is a practical ceiling that no real use
    reaches, there to stop an absurd value (probe.nex: 100000) before it reaches an allocator, and
    `why` says what it guards. Every value must also be finite (inf and NaN never pass).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # True: lo itself is not allowed (> lo instead of >= lo)
    hi_open: bool = False
    cap: float | None = None  # value <= cap
    why: str = ""  # the reason for the cap, shown when a value exceeds it

    def ok(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):  # NaN compares false with everything
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        if self.cap is not None and value > self.cap:
            return False
        return True

    @property
    def text(self) -> str:
        """What a value means: `>= 1`, `>= 0 and < 1` (the cap is `limit_text`)."""
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_num(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {_num(self.hi)}")
        return " and ".join(parts)

    @property
    def limit_text(self) -> str:
        """The whole allowed range, cap and its reason included: `>= 1 and <= 100: <why>`."""
        parts = [self.text] if self.text else []
        if self.cap is not None:
            parts.append(f"<= {_num(self.cap)}")
        out = " and ".join(parts)
        return f"{out}: {self.why}" if self.cap is not None and self.why else out


def _ge(lo: float) -> Bound:
    return Bound(lo=lo)


def _gt(lo: float) -> Bound:
    return Bound(lo=lo, lo_open=True)


def _cap(bound: Bound, cap: float, why: str) -> Bound:
    return dataclasses.replace(bound, cap=cap, why=why)


_PROMPT = "each prompt is a full few-shot pass over every item"
_BATCH = "sequences per forward pass; more exhausts any accelerator's memory"
_SEED = "seeds numpy, which takes 0 to 2**32 - 1"
_SEED_MAX = 2**32 - 1

# The one table of numeric ranges, by dotted config key. Run configs (load_run_config) and command
# flags (probe's validate_config, `gradual train`) all check against it; a flag's name is the
# field name with dashes (train.batch_size -> --batch-size). Caps sit far above any real use: they
# stop an absurd value with a message before a model loads, not a crash inside the allocator.
RANGES: dict[str, Bound] = {
    "seed": _cap(_ge(0), _SEED_MAX, _SEED),
    "probe.nex": _cap(_ge(1), 100, _PROMPT),
    "probe.shots": _cap(_ge(0), 64, "every exemplar lengthens every prompt"),
    "probe.samples": _cap(_ge(1), 1024, "sampled answers per prompt are decoded side by side"),
    "probe.temperature": _cap(_gt(0), 100, "beyond this sampling is uniform noise"),
    "probe.top_k": _cap(_ge(0), 1_000_000, "larger than any vocabulary"),
    "probe.seed": _cap(_ge(0), _SEED_MAX, "the range of the training seeds"),
    "probe.batch_size": _cap(_ge(1), 65536, _BATCH),
    "probe.max_new_tokens": _cap(_ge(1), 1024, "decode buffers are preallocated per row; answers are short entities"),
    "probe.repeat": _cap(_ge(0), 100, "each repeat is another full probe"),
    "train.lora_r": _cap(_ge(1), 65536, "wider than any model's hidden size"),
    "train.lora_alpha": _gt(0), "train.lora_dropout": Bound(lo=0, hi=1, hi_open=True),
    "train.epochs": _cap(_ge(1), 10000, "each epoch is a full pass over the training items"),
    "train.lr": _cap(_gt(0), 10, "a larger learning rate only diverges"),
    "train.batch_size": _cap(_ge(1), 65536, _BATCH),
    "train.grad_accum": _cap(_ge(1), 65536, "steps accumulated per optimizer update"),
    "train.weight_decay": _ge(0), "train.warmup_ratio": Bound(lo=0, hi=1), "train.patience": _ge(0),
    "train.min_dev": _ge(0), "train.max_dev": _ge(1), "train.replay_ratio": _ge(0),
    "train.seed": _cap(_ge(0), _SEED_MAX, _SEED),
    "stage2.lr_scale": _cap(_gt(0), 100, "stage 2 should lower the learning rate, not multiply it"),
    "stage2.weight_decay": _ge(0), "stage2.replay_ratio": _ge(0),
    "stage2.epochs": _cap(_ge(1), 10000, "each epoch is a full pass over the training items"),
    "max_stages": _cap(_ge(1), 100, "each stage is a fine-tuning run plus a full re-probe"),
    "limit_train": _ge(0), "limit_test": _ge(0),
}


def out_of_range(label: str, value: Any, bound: Bound) -> str:
    """`probe.nex: -3 is out of range (>= 1)`: the key or flag, the value given, what is allowed.

    A value over the cap gets the whole range and the cap's reason
    (`probe.nex: 100000 is out of range (>= 1 and <= 100: each prompt is ...)`); inf and NaN are
    named as not finite.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"{label}: {value!r} is not a finite number (allowed: {bound.limit_text})"
    over_cap = bound.cap is not None and value > bound.cap
    return f"{label}: {_shown(value)} is out of range ({bound.limit_text if over_cap else bound.text})"


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
    """data[a][b] = value for "a.b". A section that is not a mapping (`probe: 3`) is left as it is,
    for validation to report."""
    cur = data
    *parents, last = dotted.split(".")
    for part in parents:
        cur = cur.setdefault(part, {})
        if not isinstance(cur, dict):
            return
    cur[last] = value


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"duplicate key {key!r} (lines {first} and {second})")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by design
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise _DuplicateKey(key, first, line)
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_mapping(path: str | Path, empty: str = "empty file (expected a YAML mapping)") -> dict[str, Any]:
    """A user's YAML file as a mapping. A missing file, a folder, non-UTF-8 bytes, invalid YAML, a key
    given twice, a top level that is not a mapping, and (with the `empty` message) a file with no
    content are UserErrors naming the file (and line)."""
    from gradual.data.items import read_user_text  # the one reader of user text files

    p = Path(path)
    text = read_user_text(p, allow_empty=True)
    try:
        loaded = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as exc:
        raise UserError(f"{p}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = where(p, mark.line + 1) if mark is not None else str(p)
        raise UserError(f"{loc}: invalid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: invalid YAML ({exc})") from None
    if loaded is None:
        raise UserError(f"{p}: {empty}")
    if not isinstance(loaded, dict):
        raise UserError(f"{p}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML run config, apply dotted-key overrides (from flags), validate everything at once."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise UserError(f"--config: {p}: no such file")
        data = load_yaml_mapping(p, "empty config; write at least model: and data: (see configs/default.yaml)")
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
