"""Metrics on crafted categories (known answers), the t-interval, and greedy eval on the tiny model."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import pytest

from gradual import evaluate as ev
from gradual.data.items import Item

CATS = ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown")
HK, MK, WK, UK = CATS


@pytest.fixture(autouse=True)
def categories_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe package owns CATEGORIES; stand in for it only where it is not built yet."""
    try:
        importlib.import_module("gradual.probe.slick")
    except ModuleNotFoundError:
        fake = types.ModuleType("gradual.probe.slick")
        fake.CATEGORIES = CATS  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "gradual.probe.slick", fake)


BEFORE = {"a": HK, "b": HK, "c": HK, "d": MK, "e": MK, "f": WK, "g": UK, "h": UK, "only_before": HK}
AFTER = {"a": HK, "b": HK, "c": MK, "d": HK, "e": MK, "f": HK, "g": UK, "h": WK, "only_after": UK}


def test_categories_order_matches_probe() -> None:
    from gradual.probe.slick import CATEGORIES

    assert tuple(CATEGORIES) == CATS


def test_transitions_counts_only_shared_ids() -> None:
    m = ev.transitions(BEFORE, AFTER)
    assert m == [
        [2, 1, 0, 0],  # HK -> HK (a, b), HK -> MK (c)
        [1, 1, 0, 0],  # MK -> HK (d), MK -> MK (e)
        [1, 0, 0, 0],  # WK -> HK (f)
        [0, 0, 1, 1],  # UK -> WK (h), UK -> UK (g)
    ]
    assert sum(map(sum, m)) == 8  # only_before / only_after are left out


def test_acquired_forgotten_retention() -> None:
    assert ev.acquired(BEFORE, AFTER) == 2  # d, f
    assert ev.forgotten(BEFORE, AFTER) == 1  # c
    assert ev.retention(BEFORE, AFTER) == pytest.approx(1 - 1 / 3)
    assert ev.retention({"x": MK}, {"x": HK}) is None  # nothing HighlyKnown before
    assert ev.retention({"x": HK}, {"x": HK}) == 1.0
    # Consistency with the matrix: acquired = HK column minus its diagonal, forgotten = HK row off-diagonal.
    m = ev.transitions(BEFORE, AFTER)
    assert ev.acquired(BEFORE, AFTER) == sum(m[r][0] for r in range(1, 4))
    assert ev.forgotten(BEFORE, AFTER) == sum(m[0][1:])


def test_category_counts_always_has_every_key() -> None:
    assert ev.category_counts({"a": MK, "b": MK}) == {HK: 0, MK: 2, WK: 0, UK: 0}
    assert ev.category_counts({}) == dict.fromkeys(CATS, 0)
    with pytest.raises(ValueError):
        ev.category_counts({"a": "Known"})


def test_t_quantile_matches_table() -> None:
    # Two-sided 95% critical values from any t table.
    for df, want in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (1000, 1.962)]:
        assert ev.t_quantile(0.975, df) == pytest.approx(want, abs=1e-3)
    assert ev.t_quantile(0.025, 4) == pytest.approx(-2.776, abs=1e-3)
    assert ev.t_cdf(0.0, 3) == pytest.approx(0.5)


def test_mean_ci_known_values() -> None:
    r = ev.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert r["mean"] == 2.5 and r["n"] == 4
    assert r["sd"] == pytest.approx(1.2909944, rel=1e-6)
    half = 3.182446 * 1.2909944 / 2  # t(0.975, 3) * sd / sqrt(4)
    assert r["lo"] == pytest.approx(2.5 - half, rel=1e-5)
    assert r["hi"] == pytest.approx(2.5 + half, rel=1e-5)
    one = ev.mean_ci([0.4])
    assert one == {"mean": 0.4, "lo": 0.4, "hi": 0.4, "n": 1, "sd": None}
    assert ev.mean_ci([])["mean"] is None
    assert ev.mean_ci([3.0, None, 3.0]) == {"mean": 3.0, "lo": 3.0, "hi": 3.0, "n": 2, "sd": 0.0}
    wider = ev.mean_ci([1.0, 2.0, 3.0, 4.0], level=0.99)
    assert wider["hi"] - wider["lo"] > r["hi"] - r["lo"]


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


def test_evaluate_items_on_tiny_model(tiny_lm) -> None:
    items = [
        Item("q1", "What is the capital of France?", ("Paris",)),
        Item("q2", "Which continent is Peru on?", ("South America",)),
        Item("q3", "What is the currency of Japan?", ("Japanese yen", "yen")),
    ]
    cats = {"q1": HK, "q2": UK, "q3": MK}
    r = ev.evaluate_items(tiny_lm, items, cats, batch_size=2, max_new_tokens=4, progress=False)
    assert r.n == 3 and 0.0 <= r.accuracy <= 1.0
    assert [p["id"] for p in r.predictions] == ["q1", "q2", "q3"]  # input order kept across batches
    for p, it in zip(r.predictions, items):
        assert set(p) == {"id", "question", "prediction", "answers", "correct", "category"}
        assert isinstance(p["prediction"], str) and "\n" not in p["prediction"]
        assert p["answers"] == list(it.answers) and p["category"] == cats[it.id]
    assert set(CATS) <= set(r.by_category)
    assert sum(v["n"] for v in r.by_category.values()) == 3
    assert r.hallucination_rate is None or 0.0 <= r.hallucination_rate <= 1.0
    json.dumps(r.to_dict(with_predictions=True))  # serializable as written by `gradual eval`


def test_eval_command_writes_json_and_predictions(tiny_model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gradual.cli import app

    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"]},
        {"id": "q2", "question": "Which continent is Peru on?", "answers": ["South America"]},
    ]), encoding="utf-8")
    probe = tmp_path / "probe.jsonl"
    probe.write_text(json.dumps({"id": "q1", "category": HK, "p_greedy": 1.0, "p_sample": 1.0}) + "\n"
                     + json.dumps({"id": "q2", "category": UK, "p_greedy": 0.0, "p_sample": 0.0}) + "\n")
    out = tmp_path / "res" / "eval.json"
    args = ["eval", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
            "--device", "cpu", "--dtype", "fp32", "--max-new-tokens", "4"]
    args += ["--categories", str(probe)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["n"] == 2 and got["model"] == str(tiny_model_dir) and got["adapter"] is None
    assert got["by_category"]["HighlyKnown"]["n"] == 1 and got["by_category"]["Unknown"]["n"] == 1
    preds = (tmp_path / "res" / "eval.predictions.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in preds] == ["q1", "q2"]


def test_eval_command_bad_input_is_a_user_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from gradual.evaluate import evaluate_file
    from gradual.errors import UserError

    with pytest.raises(UserError, match="--data"):
        evaluate_file(str(tiny_model_dir), tmp_path / "missing.jsonl", tmp_path / "o.json")
    with pytest.raises(UserError, match="--adapter"):
        (tmp_path / "d.jsonl").write_text(json.dumps({"id": "1", "question": "q?", "answers": ["a"]}) + "\n")
        evaluate_file(str(tiny_model_dir), tmp_path / "d.jsonl", tmp_path / "o.json", adapter=tmp_path / "no-adapter")


def test_mean_ci_bounds_clip_the_interval() -> None:
    r = ev.mean_ci([0.9, 1.0, 1.0], bounds=(0.0, 1.0))
    assert r["hi"] == 1.0 and r["lo"] < r["mean"] < 1.0
    assert ev.mean_ci([0.9, 1.0, 1.0])["hi"] > 1.0  # unclipped, the t-interval overshoots


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


def test_eval_applies_a_peft_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    """An adapter that changes the weights changes the predictions' source model, and is recorded."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a non-zero B matrix, so merging the adapter really moves the weights
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"]}) + "\n")
    out = tmp_path / "e.json"
    got = ev.evaluate_file(str(tiny_model_dir), data, out, adapter=tmp_path / "adapter", device="cpu", dtype="fp32",
                           max_new_tokens=3, progress=False)
    assert got["adapter"] == str(tmp_path / "adapter") and got["n"] == 1
    assert json.loads(out.read_text())["accuracy"] in (0.0, 1.0)

    from gradual.models import load_model, model_fingerprint

    plain = load_model(str(tiny_model_dir), "cpu", "fp32")
    merged = ev.apply_adapter(load_model(str(tiny_model_dir), "cpu", "fp32"), tmp_path / "adapter")
    assert model_fingerprint(merged.model) != model_fingerprint(plain.model)
    assert not any("lora" in n for n, _ in merged.model.named_parameters())  # merged into plain weights
