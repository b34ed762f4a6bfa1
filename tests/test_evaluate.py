"""Greedy eval on a tiny model that has memorized a few facts, so every prediction and accuracy is
known in advance (movement metrics and intervals: tests/test_metrics.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gradual import evaluate as ev
from gradual.categories import CATEGORIES as CATS
from gradual.data.items import Item
from gradual.errors import UserError
from tests.memorized import FACTS, memorize, memorized_model_dir

HK, MK, WK, UK = CATS


@pytest.fixture(scope="session")
def memorized_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return memorized_model_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def memorized_lm(memorized_dir: Path) -> Any:
    from gradual.lm.load import load_model

    return load_model(str(memorized_dir), device="cpu", dtype="fp32")


def test_score_predictions_by_category_and_hallucination() -> None:
    rows = [
        {"id": "1", "prediction": "Paris", "correct": True, "category": HK},
        {"id": "2", "prediction": "Rome", "correct": False, "category": HK},
        {"id": "3", "prediction": "Lima", "correct": False, "category": UK},  # confident and wrong
        {"id": "4", "prediction": "", "correct": False, "category": UK},  # abstained: not a hallucination
        {"id": "5", "prediction": "Oslo", "correct": True, "category": UK},
        {"id": "6", "prediction": "x", "correct": False, "category": None},
    ]
    r = ev.score_predictions(rows, with_categories=True)
    assert r.n == 6 and r.accuracy == pytest.approx(2 / 6)
    assert r.by_category[HK] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert r.by_category[MK] == {"n": 0, "correct": 0, "accuracy": None}
    assert r.by_category["Uncategorized"]["n"] == 1
    assert r.hallucination_rate == pytest.approx(1 / 3)
    plain = ev.score_predictions(rows, with_categories=False)
    assert plain.by_category == {} and plain.hallucination_rate is None


def test_evaluate_items_scores_known_answers(memorized_lm: Any) -> None:
    """The memorized model answers each question one known way; the gold answers are set so that
    three of four are right, and one base-Unknown item gets a confident wrong answer."""
    items = [
        Item("q1", "What is the capital of France?", ("Paris",)),
        Item("q2", "Which continent is Peru on?", ("Asia",)),  # it says South America: wrong
        Item("q3", "What is the currency of Japan?", ("yen", "Japanese yen")),  # right by its alias
        Item("q4", "Which country is the city of Lyon in?", ("France",)),
    ]
    cats = {"q1": HK, "q2": UK, "q3": MK, "q4": UK}
    # batch_size 3 over prompts of different lengths: one left-padded batch, one single, order restored.
    r = ev.evaluate_items(memorized_lm, items, cats, batch_size=3, max_new_tokens=8, progress=False)
    assert [p["id"] for p in r.predictions] == ["q1", "q2", "q3", "q4"]
    assert [p["prediction"] for p in r.predictions] == ["Paris", "South America", "Japanese yen", "France"]
    assert [p["correct"] for p in r.predictions] == [True, False, True, True]
    assert [p["category"] for p in r.predictions] == [HK, UK, MK, UK]
    assert r.predictions[2]["answers"] == ["yen", "Japanese yen"]
    assert r.n == 4 and r.accuracy == 0.75
    assert r.by_category == {
        HK: {"n": 1, "correct": 1, "accuracy": 1.0},
        MK: {"n": 1, "correct": 1, "accuracy": 1.0},
        WK: {"n": 0, "correct": 0, "accuracy": None},
        UK: {"n": 2, "correct": 1, "accuracy": 0.5},
    }
    assert r.hallucination_rate == 0.5  # q2 of the two Unknown items
    json.dumps(r.to_dict(with_predictions=True))  # serializable as written by `gradual eval`
    plain = ev.evaluate_items(memorized_lm, items, None, batch_size=32, max_new_tokens=8, progress=False)
    assert plain.accuracy == 0.75 and plain.by_category == {} and plain.hallucination_rate is None
    assert [p["prediction"] for p in plain.predictions] == [p["prediction"] for p in r.predictions]
    # Eval checks each gold answer as a draft in the prompt pass; plain decoding gives the same answers.
    from gradual.lm.hf import greedy_answers
    from gradual.prompts import query

    decoded = greedy_answers(memorized_lm.model, memorized_lm.tokenizer, [query(it.question) for it in items],
                             max_new_tokens=8)
    assert decoded == [p["prediction"] for p in r.predictions]


def test_eval_command_writes_json_and_predictions(memorized_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gradual.cli import app

    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"]},
        {"id": "q2", "question": "Which continent is Peru on?", "answers": ["Asia"]},  # it says South America
    ]), encoding="utf-8")
    probe = tmp_path / "probe.jsonl"
    probe.write_text(json.dumps({"id": "q1", "category": HK, "p_greedy": 1.0, "p_sample": 1.0}) + "\n"
                     + json.dumps({"id": "q2", "category": UK, "p_greedy": 0.0, "p_sample": 0.0}) + "\n")
    out = tmp_path / "res" / "eval.json"
    args = ["eval", "--model", str(memorized_dir), "--data", str(data), "--out", str(out),
            "--device", "cpu", "--dtype", "fp32", "--max-new-tokens", "4"]
    args += ["--categories", str(probe)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["n"] == 2 and got["model"] == str(memorized_dir) and got["adapter"] is None
    assert got["accuracy"] == 0.5 and got["hallucination_rate"] == 1.0
    assert got["by_category"]["HighlyKnown"] == {"n": 1, "correct": 1, "accuracy": 1.0}
    assert got["by_category"]["Unknown"] == {"n": 1, "correct": 0, "accuracy": 0.0}
    preds = [json.loads(x) for x in (tmp_path / "res" / "eval.predictions.jsonl").read_text().splitlines()]
    assert [(p["id"], p["prediction"], p["correct"]) for p in preds] == [("q1", "Paris", True), ("q2", "South America", False)]


def test_eval_command_bad_input_is_a_user_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from gradual.evaluate import evaluate_file

    with pytest.raises(UserError, match="--data"):
        evaluate_file(str(tiny_model_dir), tmp_path / "missing.jsonl", tmp_path / "o.json")
    with pytest.raises(UserError, match="--adapter"):
        (tmp_path / "d.jsonl").write_text(json.dumps({"id": "1", "question": "q?", "answers": ["a"]}) + "\n")
        evaluate_file(str(tiny_model_dir), tmp_path / "d.jsonl", tmp_path / "o.json", adapter=tmp_path / "no-adapter")


def test_eval_flags_out_of_range_are_named_at_once(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gradual.cli import app

    res = CliRunner().invoke(app, ["eval", "--model", "no-such-model", "--data", str(tmp_path / "d.jsonl"), "--out",
                                   str(tmp_path / "o.json"), "--batch-size", "0", "--max-new-tokens", "5000"])
    # Both flags in one message, before the model spec is even looked at; nothing written.
    assert isinstance(res.exception, UserError), res.output
    assert str(res.exception) == ("--batch-size: 0 is out of range (>= 1); --max-new-tokens: 5000 is out of range "
                                  "(>= 1 and <= 1024: decode buffers are preallocated per row; answers are short entities)")
    assert not (tmp_path / "o.json").exists()


def test_load_categories_errors_name_file_and_line(tmp_path: Path) -> None:
    from gradual.errors import UserError

    p = tmp_path / "p.jsonl"
    p.write_text('{"id": "a", "category": "HighlyKnown"}\n{"id": "b", "category": "Known"}\n')
    with pytest.raises(UserError, match=r"p.jsonl:2: unknown category 'Known'"):
        ev.load_categories(p)
    p.write_text('{"id": "a", "category": "HighlyKnown"}\n\n{"id": 7, "category": "Unknown", "p_greedy": 0}\n')
    assert ev.load_categories(p) == {"a": "HighlyKnown", "7": "Unknown"}
    with pytest.raises(UserError, match="--categories"):
        ev.load_categories(tmp_path / "missing.jsonl")


def test_eval_applies_a_peft_adapter(memorized_dir: Path, tmp_path: Path) -> None:
    """An adapter taught a different answer ("Lyon") is what eval scores: right with it, wrong without."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gradual.prompts import answer_continuation, query

    question = "What is the capital of France?"
    base = AutoModelForCausalLM.from_pretrained(memorized_dir)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]))
    memorize(peft_model, AutoTokenizer.from_pretrained(memorized_dir), [(query(question), answer_continuation("Lyon"))])
    peft_model.save_pretrained(tmp_path / "adapter")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "q1", "question": question, "answers": ["Lyon"]}) + "\n")

    def run(out: Path, adapter: Path | None) -> tuple[dict[str, Any], str]:
        got = ev.evaluate_file(str(memorized_dir), data, out, adapter=adapter, device="cpu", dtype="fp32",
                               max_new_tokens=8, progress=False)
        assert json.loads(out.read_text()) == got
        return got, json.loads(ev.predictions_path(out).read_text())["prediction"]

    with_adapter, pred = run(tmp_path / "e.json", tmp_path / "adapter")
    assert with_adapter["adapter"] == str(tmp_path / "adapter") and with_adapter["n"] == 1
    assert pred == "Lyon" and with_adapter["accuracy"] == 1.0
    without, pred = run(tmp_path / "plain.json", None)
    assert pred == "Paris" and without["accuracy"] == 0.0 and without["adapter"] is None

    from gradual.lm.load import load_model, load_with_adapters, model_fingerprint

    plain = load_model(str(memorized_dir), "cpu", "fp32")
    merged = load_with_adapters(str(memorized_dir), [tmp_path / "adapter"], "cpu", "fp32")
    assert model_fingerprint(merged.model) != model_fingerprint(plain.model)
    assert not any("lora" in n for n, _ in merged.model.named_parameters())  # merged into plain weights


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


@pytest.mark.real_model
def test_default_model_knows_paris() -> None:
    from gradual.evaluate import few_shot_answers
    from gradual.lm.load import load_model

    lm = load_model("smollm2-135m")
    assert few_shot_answers(lm, ["What is the capital of France?"]) == ["Paris"]
