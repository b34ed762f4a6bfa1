"""Tests of one source per config fact (gradual.config): every field carries its help text, every probe
field says what it does to the cache key, the cache key of a default probe is exactly what it was (so a
refactor cannot silently orphan every cache entry), and the flags of `gradual probe` / `gradual train`
are generated from the fields with their defaults and help. Every numeric range (RANGES) rejects non-finite
values and says why it caps what it caps.

Run as: .venv/bin/pytest tests/test_config.py
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import pytest
import typer
from rich.markup import escape

from gradual.commands import config_from, one_of
from gradual.config import (BACKENDS, ESTIMATORS, KEY_KINDS, PROBE_FORMATS, RANGES, Bound, EvalConfig, ProbeConfig, RunConfig,
                            Stage2Config, TrainConfig, _f, field_help, range_errors)
from gradual.errors import UserError

# What a default probe's cache key holds from its config (probe/run.py's base_key, the seed per pass).
# Changing this dict changes every cache key: existing entries stop hitting. Do it on purpose only.
DEFAULT_RESULT_FIELDS = {"estimator": "sample", "nex": 10, "shots": 4, "samples": 16, "temperature": 0.5,
                         "top_k": 40, "max_new_tokens": 12, "full": False, "backend": "hf"}


@pytest.mark.parametrize("cls", [ProbeConfig, TrainConfig, Stage2Config, RunConfig])
def test_every_field_has_help(cls: type) -> None:
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help")
        assert isinstance(text, str) and text.strip(), f"{cls.__name__}.{f.name}: no help metadata"
        assert field_help(cls, f.name) == text


def test_every_probe_field_says_what_it_does_to_the_cache_key() -> None:
    for f in dataclasses.fields(ProbeConfig):
        assert "key" in f.metadata, f"ProbeConfig.{f.name}: no 'key' metadata (is it in the cache key or not?)"
        kind = f.metadata["key"]
        assert any(kind is k if isinstance(k, bool) else kind == k for k in KEY_KINDS), (f.name, kind)
        if kind is False:
            assert f.metadata.get("why", "").strip(), f"ProbeConfig.{f.name}: left out of the key without a 'why'"
    keyed = {f.name: f.metadata["key"] for f in dataclasses.fields(ProbeConfig)}
    assert keyed == {"estimator": True, "nex": True, "shots": True, "samples": True, "temperature": True,
                     "top_k": True, "seed": "per_pass", "batch_size": False, "max_new_tokens": True,
                     "repeat": False, "cache": False, "full": True, "backend": True, "format": False}


def test_default_result_fields_are_todays() -> None:
    assert ProbeConfig().result_fields() == DEFAULT_RESULT_FIELDS
    changed = ProbeConfig(nex=3, batch_size=8, cache=False, repeat=2, seed=5).result_fields()
    assert changed == {**DEFAULT_RESULT_FIELDS, "nex": 3}  # speed, bookkeeping and the seed are not in it


def test_non_default_field_is_keyed_only_when_set() -> None:
    """A result-changing field added later ("non_default") leaves the key of a probe at its default as it
    was, so the entries written before it existed still hit."""

    @dataclass
    class Later(ProbeConfig):
        novelty: int = _f(0, "A setting added after cache entries were written.", key="non_default")

    assert Later().result_fields() == DEFAULT_RESULT_FIELDS
    assert Later(novelty=2).result_fields() == {**DEFAULT_RESULT_FIELDS, "novelty": 2}


def test_zeroshot_is_keyed_as_the_computation_it_is() -> None:
    """format is keyed through as_computed: zeroshot is fewshot with nex 1 and shots 0, the same prompts."""
    from gradual.probe.run import as_computed

    zero = as_computed(ProbeConfig(format="zeroshot")).result_fields()
    assert zero == {**DEFAULT_RESULT_FIELDS, "nex": 1, "shots": 0} != ProbeConfig().result_fields()
    assert zero == as_computed(ProbeConfig(nex=1, shots=0)).result_fields()


def test_probe_cache_key_parts_of_a_default_config(tiny_lm, sample_items: list[dict], tmp_path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The dict probe() hands to the cache for a default config: today's keys and values, exactly."""
    import transformers

    from gradual.data.items import item_from_dict
    from gradual.probe import cache as pcache
    from gradual.probe import probe
    from gradual.probe.run import SCORER_VERSION

    class Stop(Exception):
        pass

    seen: list[dict[str, Any]] = []

    def record(parts: dict[str, Any]) -> str:
        seen.append(dict(parts))
        raise Stop  # the key is all this test needs: no pass is computed

    monkeypatch.setattr(pcache, "entry_key", record)
    items = [item_from_dict(r, "test", i) for i, r in enumerate(sample_items, 1)]
    with pytest.raises(Stop):
        probe(tiny_lm, items, None, ProbeConfig(), progress=False, cache_dir=tmp_path)
    (parts,) = seen
    lm_parts = {"fingerprint": tiny_lm.fingerprint, "device": "cpu", "dtype": "float32",
                "items": pcache.items_hash(items), "exemplars": "self:" + pcache.items_hash(items)}
    assert parts == {**DEFAULT_RESULT_FIELDS, **lm_parts, "scorer": SCORER_VERSION, "seed": 0,
                     "backend": {"name": "hf", "version": transformers.__version__}}


def _params(command: str) -> dict[str, Any]:
    from gradual.cli import app

    return {p.name: p for p in typer.main.get_command(app).commands[command].params}  # type: ignore[attr-defined]


def _expected_help(cls: type, name: str) -> str:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    choices = {("ProbeConfig", "estimator"): ESTIMATORS, ("ProbeConfig", "backend"): BACKENDS,
               ("ProbeConfig", "format"): PROBE_FORMATS, ("EvalConfig", "backend"): BACKENDS}.get((cls.__name__, name))
    text = one_of(choices, f.metadata["help"]) if choices else f.metadata.get("flag_help", f.metadata["help"])
    return escape(text)


# Every flag of the two commands, in --help order, as (name, flags, secondary flags): their spelling is
# part of the interface (scripts use them), so a generated flag must not rename one.
PROBE_FLAGS = [("data", ["--data"]), ("out", ["--out"]), ("model", ["--model"]), ("exemplars", ["--exemplars"]),
               ("estimator", ["--estimator"]), ("nex", ["--nex"]), ("shots", ["--shots"]), ("samples", ["--samples"]),
               ("temperature", ["--temperature"]), ("top_k", ["--top-k"]), ("seed", ["--seed"]),
               ("batch_size", ["--batch-size"]), ("max_new_tokens", ["--max-new-tokens"]), ("full", ["--full"]),
               ("cache", ["--no-cache"]), ("repeat", ["--repeat"]), ("limit", ["--limit"]), ("device", ["--device"]),
               ("dtype", ["--dtype"]), ("quiet", ["--quiet"]), ("backend", ["--backend"]), ("format", ["--format"])]
TRAIN_FLAGS = [("data", ["--data"]), ("out", ["--out"]), ("model", ["--model"]), ("dev", ["--dev"]),
               ("lora", ["--lora", "--full"]), ("epochs", ["--epochs"]), ("lr", ["--lr"]),
               ("batch_size", ["--batch-size"]), ("grad_accum", ["--grad-accum"]),
               ("weight_decay", ["--weight-decay"]), ("replay", ["--replay"]), ("replay_ratio", ["--replay-ratio"]),
               ("seed", ["--seed"]), ("lora_r", ["--lora-r"]), ("patience", ["--patience"]), ("max_dev", ["--max-dev"]),
               ("min_dev", ["--min-dev"]), ("device", ["--device"]), ("dtype", ["--dtype"]),
               ("chat", ["--chat", "--no-chat"]), ("report_to", ["--report-to"]), ("quiet", ["--quiet"])]
EVAL_FLAGS = [("model", ["--model"]), ("adapter", ["--adapter"]), ("run", ["--run"]), ("stage", ["--stage"]),
              ("data", ["--data"]), ("out", ["--out"]), ("categories", ["--categories"]),
              ("chat", ["--chat", "--no-chat"]), ("device", ["--device"]), ("dtype", ["--dtype"]),
              ("batch_size", ["--batch-size"]), ("max_new_tokens", ["--max-new-tokens"]), ("backend", ["--backend"])]


@pytest.mark.parametrize("command,cls,flags", [("probe", ProbeConfig, PROBE_FLAGS), ("train", TrainConfig, TRAIN_FLAGS),
                                               ("eval", EvalConfig, EVAL_FLAGS)])
def test_command_flags_come_from_the_fields(command: str, cls: type, flags: list) -> None:
    params = _params(command)
    assert [(p.name, p.opts + p.secondary_opts) for p in params.values()] == flags
    fields = {f.name: f for f in dataclasses.fields(cls)}
    generated = [name for name in params if name in fields and name != "replay_ratio"]
    # Every eval field is a flag; probe and train keep a few fields config-only (lora_alpha, warmup_ratio, ...).
    assert len(generated) == len(fields) if command == "eval" else len(generated) >= 12
    for name in generated:
        p, f = params[name], fields[name]
        negated = f.metadata.get("flag") == f"--no-{name}"
        assert p.default == (False if negated else f.default), name
        assert p.help == _expected_help(cls, name), name
    # train's --replay-ratio is its own (its default depends on --replay), its help the field's.
    if command == "train":
        assert params["replay_ratio"].default is None
        assert params["replay_ratio"].help.startswith(field_help(TrainConfig, "replay_ratio").removesuffix("."))


def test_config_from_turns_a_no_flag_back_into_its_field() -> None:
    assert config_from(ProbeConfig, {"cache": True, "nex": 3}) == ProbeConfig(cache=False, nex=3)
    assert config_from(ProbeConfig, {"cache": False}) == ProbeConfig()
    assert config_from(TrainConfig, {"lora": False, "chat": True}, replay_ratio=0.2) == TrainConfig(
        lora=False, chat=True, replay_ratio=0.2)


# -- numeric ranges --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_bound_rejects_non_finite_values(value: float) -> None:
    for key, bound in RANGES.items():
        assert not bound.ok(value), key
    assert not Bound().ok(value)  # even a bound with no limits


def test_non_finite_flag_values_name_the_flag() -> None:
    from gradual.probe.run import validate_config

    with pytest.raises(UserError, match=r"--temperature: inf is not a finite number"):
        validate_config(ProbeConfig(temperature=math.inf))
    assert range_errors(TrainConfig(lr=math.nan), "train", flags=True) == [
        "--lr: nan is not a finite number (allowed: > 0 and <= 10: a larger learning rate only diverges)"]


def test_every_cap_has_a_reason_and_admits_the_defaults() -> None:
    from gradual.config import RunConfig

    for key, bound in RANGES.items():
        assert bound.cap is None or bound.why, key
    cfg = RunConfig()
    assert not range_errors(cfg, "") and not any(range_errors(getattr(cfg, s), s) for s in ("probe", "train", "stage2"))
    assert not range_errors(EvalConfig(), "eval")
    # The largest value a cap admits passes; one more does not.
    assert RANGES["probe.nex"].ok(100) and not RANGES["probe.nex"].ok(101)
