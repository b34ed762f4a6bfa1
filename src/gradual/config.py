"""Configs as dataclasses: the single source of every default, help text and range.

Run as: `gradual run --config configs/default.yaml` (flags override YAML values; gradual.run_config
loads and validates a run's config, gradual.commands builds the probe and train flags from these fields).

Each field's metadata holds its help (and, for ProbeConfig, whether it changes a probe's results);
RANGES holds the numeric ranges every value is checked against, for YAML keys and flags alike.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from gradual.lm.backends import BACKENDS
from gradual.lm.spec import DEFAULT_MODEL


# The probe's estimators and backends: these Literals are the one list (validation, help, flags).
Estimator = Literal["sample", "exact"]
Backend = Literal[BACKENDS]  # type: ignore[valid-type]  # the registry's names (gradual.lm.backends)
# fewshot: SliCK's k-shot prompts (PAPER.md §1); zeroshot: the bare "Q: ...\nA:" the fine-tuned model answers.
ProbeFormat = Literal["fewshot", "zeroshot"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
PROBE_FORMATS: tuple[str, ...] = get_args(ProbeFormat)
# What the backends are (the probe's --backend help, and eval's).
BACKEND_HELP = "hf runs on CPU or GPU; vllm on a GPU (pip install 'gradual[vllm]')."


# Each field's metadata is the one source of its facts: "help" (the field's text, and its flag's in
# `gradual probe` / `gradual train`, which are generated from the fields: gradual.commands.options_from),
# "flag" where the flag is not --field-name, and for the probe "key": what the field does to the cache key.
# A probe field's "key" is one of:
#   True           it changes the results: in every probe cache key (ProbeConfig.result_fields)
#   "non_default"  it changes the results, and was added after cache entries were written: keyed only
#                  when it is not its default, so entries written before it existed (at the default) still hit
#   "per_pass"     the seed: each pass (the probe and its repeats) is keyed by its own seed in probe()
#   False          it changes no result (speed, bookkeeping) or is already keyed another way: "why" says which
KEY_KINDS: tuple[Any, ...] = (True, "non_default", "per_pass", False)

_T = typing.TypeVar("_T")


def _f(default: _T, help: str, **meta: Any) -> _T:
    """A dataclass field with its default, its help text and any other metadata (see KEY_KINDS)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class ProbeConfig:
    """SliCK probe settings; defaults are the paper's protocol (PAPER.md §1)."""

    estimator: Estimator = _f("sample", "sample: --samples answers at --temperature per prompt (the paper's "
                              "protocol); exact: their probability by teacher forcing (README: The method, as built).",
                              key=True)
    nex: int = _f(10, "Few-shot prompts (exemplar sets) per question.", key=True)
    shots: int = _f(4, "Exemplars per prompt.", key=True)
    samples: int = _f(16, "Sampled answers per prompt.", key=True)
    temperature: float = _f(0.5, "Sampling temperature.", key=True)
    top_k: int = _f(40, "Top-k for sampling (0 = whole vocabulary).", key=True)
    seed: int = _f(0, "Exemplar and sampling seed.", key="per_pass")
    # A question with 16 samples is 17 sequences.
    batch_size: int = _f(256, "Sequences per forward pass.", key=False,
                         why="speed only: how many sequences share a forward pass changes no answer")
    max_new_tokens: int = _f(12, "Tokens decoded per answer (answers are short entities; decoding also stops at "
                             "the newline).", key=True)
    repeat: int = _f(0, "Extra probes with fresh exemplar seeds (noise control).", key=False,
                     why="each repeat is one more pass, keyed by its own seed (seed + r): the passes are keyed, "
                         "not their number")
    cache: bool = _f(True, "Reuse a cached probe pass (served only when its entry proves itself: gradual.probe.cache).",
                     key=False, why="bookkeeping: whether the cache is used, not what is computed",
                     flag="--no-cache", flag_help="Recompute even if a cached probe exists.")
    # Off: each item stops at the evidence that settles its category; the categories are the same in
    # fp32, the work far less (in bf16 a few items near a threshold can differ: see gradual.lm.hf).
    full: bool = _f(False, "Use every prompt, sample and score for every item (full p_greedy / p_sample "
                    "estimates). Default: stop each item once its category is settled (same categories, far "
                    "less work).", key=True)
    # probe() keys the backend's identity (name and version: gradual.lm.backends.backend_identity) in
    # place of its name: backends differ in sampler and kernels.
    backend: Backend = _f("hf", BACKEND_HELP + " --device is ignored under vllm: vLLM uses the GPU.", key=True)
    # zeroshot (Gong et al. 2025's objection to few-shot probing): the fine-tune format, one prompt and no
    # exemplars, so nex and shots do not apply and no item can be MaybeKnown (one greedy answer is right
    # or wrong); see gradual.probe.run.
    format: ProbeFormat = _f("fewshot", "fewshot: --shots exemplars per prompt, --nex prompts (SliCK); zeroshot: "
                             "the bare question as fine-tuning and eval ask it, one prompt (no MaybeKnown).",
                             key=False,
                             why="keyed as what it computes: probe() keys as_computed(config), where zeroshot is "
                                 "fewshot with nex 1 and shots 0 (the same prompts: '' + 'Q: ...\\nA:'), so the "
                                 "keyed nex and shots already hold what the format changes, and a zeroshot probe "
                                 "shares its entries with the identical fewshot nex 1, shots 0 computation. Key it "
                                 "(\"non_default\") the day zeroshot computes anything else")

    def result_fields(self) -> dict[str, Any]:
        """The fields that change a probe's results, by name, for its cache key (gradual.probe.run): every
        field whose "key" is True, and each "non_default" one that is not its default. The seed
        ("per_pass") is left out: probe() keys each pass with its own. A field whose "key" is False never is.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            kind, value = f.metadata["key"], getattr(self, f.name)
            if kind is True or (kind == "non_default" and value != f.default):
                out[f.name] = value
        return out


@dataclass
class TrainConfig:
    """One stage of fine-tuning (LoRA by default)."""

    lora: bool = _f(True, "LoRA on all linear layers, or full fine-tuning.", flag="--lora/--full")
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA scaling (alpha).")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA layers' input.")
    epochs: int = _f(10, "Most epochs to train (early stopping may end sooner).")
    lr: float = _f(1e-4, "Learning rate.")
    # One optimizer step sees the global batch batch_size * grad_accum, however many processes share it
    # (gradual.distributed.per_process_batch).
    batch_size: int = _f(16, "Items per batch (all processes together).")
    grad_accum: int = _f(1, "Batches accumulated per optimizer step.")
    weight_decay: float = _f(0.0, "Weight decay.")
    warmup_ratio: float = _f(0.0, "Share of the training steps spent warming up the learning rate.")
    patience: int = _f(2, "Epochs without dev improvement before stopping (0: never).")
    min_dev: int = _f(20, "Fewer dev items than this: train all epochs, keep the last.")
    max_dev: int = _f(300, "Dev items evaluated per epoch (a fixed subset).")  # a fixed subset keeps epochs cheap
    replay_ratio: float = _f(0.0, "Replay items per training item.")
    seed: int = _f(0, "Seed of the LoRA initialisation, data order and subsets (a run sets it to the run's seed).")
    chat: bool = _f(False, "Wrap questions in the tokenizer's chat template.", flag="--chat/--no-chat")
    # A run also reports the probe's category counts per stage.
    report_to: str = _f("none", "Trackers for train loss and dev accuracy per epoch: none, tensorboard (event files "
                        "in OUT/logs), wandb, mlflow, ... (comma-separated; what the transformers Trainer takes).")


@dataclass
class Stage2Config:
    """What changes after the first stage (PAPER.md §2: lower lr, weight decay 0.01, replay 0.2)."""

    lr_scale: float = _f(0.5, "Stage 2+ learning rate: train.lr times this.")
    weight_decay: float = _f(0.01, "Stage 2+ weight decay.")
    replay_ratio: float = _f(0.2, "Stage 2+ replay items per training item (from the earlier stages' items).")
    epochs: int = _f(3, "Stage 2+ most epochs.")


@dataclass
class EvalConfig:
    """Greedy exact match in the zero-shot fine-tune format: `gradual eval`'s flags (generated from these
    fields) and the defaults of gradual.evaluate. Not part of RunConfig: a run's test evaluation takes
    these defaults and train.chat, so adding the section would change every recorded run's identity."""

    batch_size: int = _f(32, "Questions per generate call.")
    max_new_tokens: int = _f(16, "Tokens decoded per answer.")
    chat: bool = _f(False, "Wrap questions in the tokenizer's chat template.", flag="--chat/--no-chat")
    backend: Backend = _f("hf", BACKEND_HELP + " Under vllm --adapter rides on a LoRA request where vLLM allows.")


@dataclass
class RunConfig:
    model: str = _f(DEFAULT_MODEL, "Model spec (embedded name, HF folder, .gguf, hub id).")
    data: str = _f("data/world", "Dataset folder (train/dev/test.jsonl); built automatically when it is the world "
                   "default.")
    strategy: str = _f("gradual", "Fine-tuning strategy (gradual.strategies.STRATEGIES).")
    seed: int = _f(0, "The run's seed: every stage's training seed and the strategies' subsets.")
    max_stages: int = _f(3, "Stage cap for the frontier strategy.")
    limit_train: int = _f(0, "Train items used: 0 = all; otherwise a deterministic subset (for quick runs).")
    limit_test: int = _f(0, "Test items evaluated: 0 = all; otherwise a deterministic subset.")
    device: str = _f("auto", "Where the model runs (auto, cpu, cuda, ...).")
    dtype: str = _f("auto", "Weights' dtype (auto, fp32, bf16, fp16).")
    probe: ProbeConfig = field(default_factory=ProbeConfig, metadata={"help": "Probe settings."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Stage 1 training settings."})
    stage2: Stage2Config = field(default_factory=Stage2Config, metadata={"help": "What changes after stage 1."})


def field_help(cls: type, name: str) -> str:
    """The help text of field `name` of dataclass `cls`."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


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
_DECODE = "decode buffers are preallocated per row; answers are short entities"
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
    "probe.max_new_tokens": _cap(_ge(1), 1024, _DECODE),
    "probe.repeat": _cap(_ge(0), 100, "each repeat is another full probe"),
    "eval.batch_size": _cap(_ge(1), 65536, _BATCH),
    "eval.max_new_tokens": _cap(_ge(1), 1024, _DECODE),
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


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
