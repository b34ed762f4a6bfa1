"""Answers, prompts, item io, config and model loading on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradual.answers import extract_answer, is_correct, normalize
from gradual.run_config import load_run_config
from gradual.data.items import Item, read_items, write_items
from gradual.errors import UserError
from gradual.prompts import FinetuneFormat, probe_prompt
from tests.conftest import write_jsonl
from tests.memorized import FACTS, memorized_model_dir


def test_normalize_and_match() -> None:
    assert normalize("  The  Côte d'Ivoire! ") == "cote d ivoire"
    assert is_correct("Paris\nQ: next", ["paris"])
    assert is_correct(" the United Kingdom", ["UK", "United Kingdom"])
    assert not is_correct("Lyon", ["Paris"])
    assert not is_correct("\nParis", ["Paris"])  # empty first line is no answer
    assert extract_answer(" Lima\nQ:") == "Lima"


def test_probe_prompt_format() -> None:
    ex = [Item("a", "Q1?", ("A1",)), Item("b", "Q2?", ("A2", "alias"))]
    assert probe_prompt(ex, "Q3?") == "Q: Q1?\nA: A1\nQ: Q2?\nA: A2\nQ: Q3?\nA:"
    fmt = FinetuneFormat()
    assert fmt.prompt("Q3?") + fmt.target("A3") == "Q: Q3?\nA: A3\n"


def test_items_roundtrip(tmp_path: Path, sample_items: list) -> None:
    p = write_jsonl(tmp_path / "a.jsonl", sample_items)
    items = read_items(p)
    assert len(items) == len(sample_items) and items[0].answer == "Paris"
    write_items(tmp_path / "b.jsonl", items)
    assert read_items(tmp_path / "b.jsonl") == items


@pytest.mark.parametrize(
    "content, needle",
    [
        ('{"id": "1", "question": "q", "answers": ["a"]}\n{bad json\n', "a.jsonl:2: malformed JSON"),
        ('{"id": "1", "question": " ", "answers": ["a"]}\n', "a.jsonl:1: missing or blank 'question'"),
        ('{"id": "1", "question": "q", "answers": []}\n', "a.jsonl:1: 'answers' is empty"),
        ('{"id": "1", "question": "q", "answers": "a"}\n', "a.jsonl:1: 'answers' must be a list"),
        ('{"id": "1", "question": "q", "answers": ["a"]}\n{"id": "1", "question": "r", "answers": ["b"]}\n',
         "a.jsonl:2: duplicate id '1'"),
        ("", "a.jsonl: no items"),
    ],
)
def test_bad_items(tmp_path: Path, content: str, needle: str) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=needle.replace("'", "'")):
        read_items(p)


def test_non_utf8(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"id": "1", "question": "q", "answers": ["a"]}\n{"id": "2", "question": "\xff"}\n')
    with pytest.raises(UserError, match="a.jsonl:2: not valid UTF-8"):
        read_items(p)


def test_config_reports_every_error(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("strategy: gradual\nprobe:\n  nex: ten\n  estimator: magic\ntrain:\n  lr: fast\nbogus: 1\n")
    with pytest.raises(UserError) as info:
        load_run_config(p)
    msg = str(info.value)
    for needle in ("probe.nex", "probe.estimator", "train.lr", "bogus: unknown key"):
        assert needle in msg
    cfg = load_run_config(None, {"probe.nex": 3, "seed": 7})
    assert cfg.probe.nex == 3 and cfg.seed == 7


def test_run_identity_fills_defaults_and_ignores_where_a_run_reports() -> None:
    from gradual.config import to_dict
    from gradual.rundir import run_identity

    cfg = load_run_config(None, {"probe.nex": 3, "seed": 7})
    recorded = to_dict(cfg)
    # A config recorded before a field existed (here: probe.backend) is the same run while that field
    # holds its default; so is one that reported elsewhere.
    del recorded["probe"]["backend"]
    recorded["train"]["report_to"] = "tensorboard"
    assert run_identity(recorded) == run_identity(cfg)
    recorded["probe"]["backend"] = "vllm"
    assert run_identity(recorded) != run_identity(cfg)
    assert run_identity({"probe": {"nex": "ten"}}) != run_identity(cfg)  # unreadable: matches nothing
    assert run_identity({}) != run_identity(load_run_config(None))  # a record without a config is no run


def test_few_shot_answers_are_what_the_model_learned(tmp_path_factory: pytest.TempPathFactory, tiny_lm) -> None:
    """`gradual model ask` on a model that memorized FACTS behind the sanity few-shot prefix gives
    exactly those answers, batched (left-padded, lengths differ) and in the order asked."""
    from gradual.evaluate import few_shot_answers
    from gradual.lm.load import load_model

    path = str(memorized_model_dir(tmp_path_factory))
    lm = load_model(path, device="cpu", dtype="fp32")
    questions = [q for q, _ in reversed(FACTS)]
    assert few_shot_answers(lm, questions, max_new_tokens=8) == [a for _, a in reversed(FACTS)]
    assert few_shot_answers(lm, questions[:1], max_new_tokens=1) == ["France"]  # one token, no newline yet
    # The fingerprint keys the probe cache: the same weights give the same one, other weights another.
    assert len(lm.fingerprint) == 16 and int(lm.fingerprint, 16) >= 0
    assert load_model(path, device="cpu", dtype="fp32").fingerprint == lm.fingerprint
    assert tiny_lm.fingerprint != lm.fingerprint


def test_cli_registers_every_command_and_a_missing_one_is_an_import_error() -> None:
    import typer

    from gradual import cli

    names = set(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]
    assert names == {"data", "model", "probe", "train", "run", "eval", "compare", "report", "export"}
    with pytest.raises(ModuleNotFoundError, match="gradual.commands.nope"):
        cli.register_commands(typer.Typer(), ("data", "nope"))


def test_bad_model_spec() -> None:
    from gradual.lm.load import load_model

    with pytest.raises(UserError, match="no such folder"):
        load_model("./does/not/exist")
    with pytest.raises(UserError, match="--dtype"):
        load_model("smollm2-135m", dtype="int3")


@pytest.mark.real_model
def test_default_model_knows_paris() -> None:
    from gradual.evaluate import few_shot_answers
    from gradual.lm.load import load_model

    lm = load_model("smollm2-135m")
    assert few_shot_answers(lm, ["What is the capital of France?"]) == ["Paris"]


def test_bf16_is_not_picked_where_torch_dispatches_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    """ATEN_CPU_CAPABILITY=avx2 (how an AVX2-only CPU is emulated) makes bf16 ~7x slower than fp32 even
    on a CPU whose flags list avx512_bf16: placement must follow torch's dispatch, not the flags alone."""
    import torch

    from gradual.lm import load as models

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    models.cpu_has_bf16.cache_clear()
    try:
        assert models.choose_placement("cpu").dtype == torch.float32
    finally:
        models.cpu_has_bf16.cache_clear()
