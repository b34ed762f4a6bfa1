"""gradual.merge and `gradual model merge / ask --run`, `gradual eval --run`: the fine-tuned model as one
folder, read back by the tools users load it with (plain transformers, plain peft).

The runs train for real on the two-stage fixture (tests/test_two_stage.py), in fp32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.test_two_stage import _config

CUT = "…"  # gradual.answers.CUT_MARK: the engine stopped an answer that could no longer be right


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, two_stage: tuple[Path, Path]) -> dict[str, Path]:
    """A two-stage `gradual` run and a one-stage `maybeknown` run, finished."""
    import os

    from gradual.pipeline import run_pipeline

    model, data = two_stage
    root = tmp_path_factory.mktemp("merge-runs")
    old = os.environ.get("GRADUAL_CACHE")
    os.environ["GRADUAL_CACHE"] = str(root / "cache")
    try:
        runs = {}
        for strategy in ("gradual", "maybeknown"):
            runs[strategy] = root / strategy
            run_pipeline(_config(model, data, strategy), runs[strategy], progress=False)
    finally:
        if old is None:
            os.environ.pop("GRADUAL_CACHE", None)
        else:
            os.environ["GRADUAL_CACHE"] = old
    return {"model": model, "data": data, **runs}


def _predictions(run: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(x) for x in (run / "eval" / "test.predictions.jsonl").read_text().splitlines()]
    return {r["id"]: r for r in rows}


def _plain_answers(model: Any, tok: Any, rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Greedy answers with plain `model.generate`, one prompt at a time, fp32: what any user would run."""
    import torch

    from gradual.answers import extract_answer
    from gradual.prompts import FinetuneFormat

    fmt = FinetuneFormat()
    out = {}
    for i, r in rows.items():
        enc = tok(fmt.prompt(r["question"]), return_tensors="pt", add_special_tokens=False, return_token_type_ids=False)
        with torch.no_grad():
            g = model.generate(**enc, do_sample=False, max_new_tokens=16, pad_token_id=tok.pad_token_id)
        out[i] = extract_answer(tok.decode(g[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def _assert_same_answers(plain: dict[str, str], rows: dict[str, dict[str, Any]]) -> None:
    from gradual.answers import is_correct

    for i, r in rows.items():
        pred = r["prediction"]
        if pred.endswith(CUT):  # cut as already wrong: the plain answer goes on from there, and is wrong
            assert plain[i].startswith(pred[: -len(CUT)]) and not is_correct(plain[i], r["answers"]), (i, pred, plain[i])
        else:
            assert plain[i] == pred, (i, pred, plain[i])


def test_merged_run_loads_in_plain_transformers_and_answers_as_the_run_did(finished: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = finished["gradual"]
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["stages"]) == 2 and all(s["n_train"] > 0 for s in summary["stages"])
    res = run_cli("model", "merge", "--run", str(run), "--out", str(tmp_path / "final"))
    assert res.returncode == 0, res.stderr
    final = tmp_path / "final"
    assert (final / "model.safetensors").is_file() and (final / "config.json").is_file()
    meta = json.loads((final / "gradual.json").read_text())
    assert (meta["stage"], meta["stages"], meta["strategy"], meta["seed"]) == (2, 2, "gradual", 0)
    assert meta["base_model"] == str(finished["model"]) and meta["dtype"] == "float32"
    assert not list(tmp_path.glob(".final.*"))  # no temp or old folder left

    model = AutoModelForCausalLM.from_pretrained(final).eval()
    tok = AutoTokenizer.from_pretrained(final)
    rows = _predictions(run)
    _assert_same_answers(_plain_answers(model, tok, rows), rows)
    # Not stage 2's adapter on the base: that model was never evaluated, and here it answers otherwise.
    from gradual.lm.load import model_fingerprint

    assert meta["fingerprint"] == model_fingerprint(model)
    after1 = tmp_path / "after1"
    assert run_cli("model", "merge", "--run", str(run), "--stage", "1", "--out", str(after1)).returncode == 0
    assert json.loads((after1 / "gradual.json").read_text())["fingerprint"] != meta["fingerprint"]


def test_one_stage_adapter_loads_with_plain_peft(finished: dict[str, Path]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = finished["maybeknown"]
    base = AutoModelForCausalLM.from_pretrained(finished["model"])
    model = PeftModel.from_pretrained(base, str(run / "stages" / "stage1" / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(finished["model"])
    rows = _predictions(run)
    _assert_same_answers(_plain_answers(model, tok, rows), rows)


def test_eval_and_ask_take_a_run(finished: dict[str, Path], tmp_path: Path) -> None:
    run = finished["gradual"]
    out = tmp_path / "again.json"
    res = run_cli("eval", "--run", str(run), "--data", str(finished["data"] / "test.jsonl"), "--out", str(out))
    assert res.returncode == 0, res.stderr
    again = json.loads(out.read_text())
    assert again["accuracy"] == json.loads((run / "eval" / "test.json").read_text())["accuracy"]
    assert (again["run"], again["stage"]) == (str(run), 2)
    preds = {json.loads(x)["id"]: json.loads(x)["prediction"] for x in out.with_name("again.predictions.jsonl")
             .read_text().splitlines()}
    assert preds == {i: r["prediction"] for i, r in _predictions(run).items()}
    res = run_cli("model", "ask", "Which continent is Zorvia on?", "--run", str(run), "--stage", "1")
    assert res.returncode == 0, res.stderr
    assert "after stage 1 of 2" in res.stdout


def test_merge_refuses_what_it_cannot_do(finished: dict[str, Path], tmp_path: Path) -> None:
    run = finished["gradual"]
    (tmp_path / "taken").mkdir()
    cases = [
        (["--run", str(run), "--out", str(tmp_path / "taken")], "already exists; pass --force"),
        (["--run", str(run), "--stage", "3", "--out", str(tmp_path / "x")], "has stages 1..2"),
        (["--run", str(tmp_path), "--out", str(tmp_path / "x")], "not a run folder"),
        (["--out", str(tmp_path / "x")], "give at least one adapter"),
        (["--run", str(run), "--adapter", str(run), "--out", str(tmp_path / "x")], "not both"),
    ]
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((run / "config.yaml").read_text())
    cases.append((["--run", str(unfinished), "--out", str(tmp_path / "x")], "the run is not finished"))
    for args, msg in cases:
        res = run_cli("model", "merge", *args)
        assert res.returncode == 2 and msg in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()
    # --force replaces the folder, and an adapter chain merges onto a bare model.
    res = run_cli("model", "merge", "--model", str(finished["model"]), "--adapter",
                  str(finished["maybeknown"] / "stages" / "stage1" / "adapter"), "--out", str(tmp_path / "taken"),
                  "--force")
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "taken" / "gradual.json").read_text())
    assert len(meta["adapters"]) == 1 and (tmp_path / "taken" / "model.safetensors").is_file()
