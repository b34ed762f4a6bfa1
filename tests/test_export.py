"""`gradual export`: probe categories or a run stage as alpaca / chat / trl data (offline, no model).

Every output is loaded back with `datasets` (as LLaMA-Factory and TRL load it) and its fields checked;
bad input exits 2 with one line and leaves no output file behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gradual.probe.slick import CATEGORIES
from gradual.prompts import FinetuneFormat, query
from tests.conftest import Result, run_cli

PROBE_ROWS = [
    ("q1", "HighlyKnown", "What is the capital of France?", ["Paris"]),
    ("q2", "MaybeKnown", "What is the capital of Peru?", ["Lima"]),
    ("q3", "MaybeKnown", "Which continent is Chad on?", ["Africa"]),
    ("q4", "WeaklyKnown", "What is the currency of Japan?", ["Japanese yen", "yen"]),
    ("q5", "Unknown", "Which country is the city of Tulcea in?", ["Romania"]),
]


cli = run_cli  # in-process, as the installed `gradual` script runs


def write_probe(path: Path, rows: list[tuple[str, str, str, list[str]]] = PROBE_ROWS) -> Path:
    # The fields gradual probe writes (ProbeRow), trimmed to what matters here plus a few numbers.
    with open(path, "w", encoding="utf-8") as fh:
        for ident, cat, q, answers in rows:
            fh.write(json.dumps({"id": ident, "category": cat, "p_greedy": 0.5, "p_sample": 0.1,
                                 "greedy_answers": [], "relation": "capital", "question": q,
                                 "answers": answers}) + "\n")
    return path


def make_run(root: Path) -> Path:
    """A run folder in the pipeline's layout: stage 1 trained on MaybeKnown, stage 2 on items that moved
    up plus one replay item, stage 3 selected nothing (record.json only)."""
    run = root / "run"
    (run / "probe").mkdir(parents=True)
    write_probe(run / "probe" / "base_train.jsonl")
    # After stage 1: q4 moved up from WeaklyKnown to MaybeKnown, q5 to HighlyKnown.
    moved = [(i, {"q4": "MaybeKnown", "q5": "HighlyKnown"}.get(i, c), q, a) for i, c, q, a in PROBE_ROWS]
    write_probe(run / "probe" / "stage1_train.jsonl", moved)
    by_id = {r[0]: r for r in PROBE_ROWS}

    def stage(k: int, ids: list[str], replay_ids: list[str]) -> None:
        sdir = run / "stages" / f"stage{k}"
        sdir.mkdir(parents=True)
        with open(sdir / "train_items.jsonl", "w", encoding="utf-8") as fh:
            for i, rep in [(i, False) for i in ids] + [(i, True) for i in replay_ids]:
                _, _, q, a = by_id[i]
                fh.write(json.dumps({"id": i, "question": q, "answers": a, "relation": "capital",
                                     "subject": None, "replay": rep}) + "\n")

    stage(1, ["q2", "q3"], [])
    stage(2, ["q4", "q5"], ["q1"])
    (run / "stages" / "stage3").mkdir()
    (run / "stages" / "stage3" / "record.json").write_text(json.dumps({"note": "nothing moved up"}))
    return run


def load(path: Path, tmp_path: Path) -> Any:
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))


def ok(r: Result) -> None:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


# --- formats ---------------------------------------------------------------------------------------

def test_alpaca_from_probe_with_dataset_info(tmp_path: Path) -> None:
    probe = write_probe(tmp_path / "probe.jsonl")
    out = tmp_path / "lf" / "mk.json"
    r = cli("export", "--probe", str(probe), "--categories", "MaybeKnown,WeaklyKnown", "--format", "alpaca",
            "--out", str(out))
    ok(r)
    assert "wrote 3 items" in r.stdout and "MaybeKnown 2, WeaklyKnown 1" in r.stdout
    assert isinstance(json.loads(out.read_text()), list)  # .json -> one JSON array (the Alpaca convention)
    ds = load(out, tmp_path)
    assert set(ds.column_names) == {"instruction", "input", "output"}
    assert ds["instruction"] == [PROBE_ROWS[i][2] for i in (1, 2, 3)]
    assert ds["input"] == ["", "", ""]
    assert ds["output"] == ["Lima", "Africa", "Japanese yen"]  # the canonical answer, no alias
    info = json.loads((out.parent / "dataset_info.json").read_text())
    entry = info["mk"]
    assert entry["file_name"] == "mk.json" and entry.get("formatting", "alpaca") == "alpaca"
    assert entry["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    assert set(entry["columns"].values()) <= set(ds.column_names)


def test_chat_from_probe_is_openai_messages_with_sharegpt_entry(tmp_path: Path) -> None:
    probe = write_probe(tmp_path / "probe.jsonl")
    out = tmp_path / "chat.jsonl"
    ok(cli("export", "--probe", str(probe), "--categories", "maybeknown", "--format", "chat", "--out", str(out),
           "--name", "gradual_mk"))
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x).keys() == {"messages"} for x in lines)  # JSON Lines
    ds = load(out, tmp_path)
    assert ds.column_names == ["messages"]
    assert ds[0]["messages"] == [{"role": "user", "content": "What is the capital of Peru?"},
                                 {"role": "assistant", "content": "Lima"}]
    entry = json.loads((tmp_path / "dataset_info.json").read_text())["gradual_mk"]
    assert entry["formatting"] == "sharegpt" and entry["file_name"] == "chat.jsonl"
    assert entry["columns"] == {"messages": "messages"}
    tags = entry["tags"]
    msg = ds[0]["messages"]
    assert {tags["role_tag"], tags["content_tag"]} == set(msg[0])
    assert [m[tags["role_tag"]] for m in msg] == [tags["user_tag"], tags["assistant_tag"]]


def test_trl_prompt_completion_uses_the_finetune_format(tmp_path: Path) -> None:
    probe = write_probe(tmp_path / "probe.jsonl")
    out = tmp_path / "trl.jsonl"
    r = cli("export", "--probe", str(probe), "--categories", "all", "--format", "trl", "--out", str(out))
    ok(r)
    assert "dataset_info" not in r.stdout and not (tmp_path / "dataset_info.json").exists()
    ds = load(out, tmp_path)
    assert set(ds.column_names) == {"prompt", "completion"}
    assert len(ds) == len(PROBE_ROWS)
    fmt = FinetuneFormat(chat=False)
    for row, (_, _, q, answers) in zip(ds, PROBE_ROWS):
        assert row["prompt"] == query(q) == fmt.prompt(q)
        assert row["completion"] == fmt.target(answers[0]) == f" {answers[0]}\n"


def test_json_array_output_for_trl_and_meta_columns(tmp_path: Path) -> None:
    probe = write_probe(tmp_path / "probe.jsonl")
    out = tmp_path / "trl.json"
    ok(cli("export", "--probe", str(probe), "--categories", "Unknown,HighlyKnown", "--format", "trl",
           "--out", str(out), "--meta"))
    ds = load(out, tmp_path)
    assert ds["id"] == ["q1", "q5"]  # file order, not category order
    assert ds["category"] == ["HighlyKnown", "Unknown"]
    assert ds["relation"] == ["capital", "capital"] and ds["replay"] == [False, False]


# --- run stages ------------------------------------------------------------------------------------

def test_run_stage_includes_replay_by_default_and_can_drop_it(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = tmp_path / "s2.jsonl"
    r = cli("export", "--run", str(run), "--stage", "2", "--format", "trl", "--out", str(out), "--meta")
    ok(r)
    assert "1 replay" in r.stdout
    ds = load(out, tmp_path)
    assert ds["id"] == ["q4", "q5", "q1"] and ds["replay"] == [False, False, True]
    # Categories come from the probe stage 2 was planned from (the re-probe after stage 1).
    assert ds["category"] == ["MaybeKnown", "HighlyKnown", "HighlyKnown"]
    assert ds[0]["prompt"] == query("What is the currency of Japan?")

    out2 = tmp_path / "s2_noreplay.jsonl"
    ok(cli("export", "--run", str(run), "--stage", "2", "--format", "trl", "--out", str(out2), "--no-replay"))
    assert [json.loads(x)["prompt"] for x in out2.read_text().splitlines()] == [
        query(PROBE_ROWS[3][2]), query(PROBE_ROWS[4][2])]


def test_run_stage_filtered_by_category(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = tmp_path / "s2_mk.json"
    ok(cli("export", "--run", str(run), "--stage", "2", "--categories", "MaybeKnown", "--format", "alpaca",
           "--out", str(out)))
    ds = load(out, tmp_path)
    assert ds["output"] == ["Japanese yen"]
    out1 = tmp_path / "s1.jsonl"
    ok(cli("export", "--run", str(run), "--stage", "1", "--format", "chat", "--out", str(out1), "--meta"))
    assert load(out1, tmp_path)["category"] == ["MaybeKnown", "MaybeKnown"]  # from base_train.jsonl


def test_dataset_info_merges_and_updates(tmp_path: Path) -> None:
    probe = write_probe(tmp_path / "probe.jsonl")
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"alpaca_en": {"file_name": "alpaca_en.json"}}))
    ok(cli("export", "--probe", str(probe), "--categories", "MaybeKnown", "--format", "alpaca",
           "--out", str(tmp_path / "a.json")))
    r = cli("export", "--probe", str(probe), "--categories", "MaybeKnown", "--format", "chat",
            "--out", str(tmp_path / "b.jsonl"), "--name", "a")
    ok(r)
    assert "updated entry 'a'" in r.stdout
    reg = json.loads(info.read_text())
    assert list(reg) == ["alpaca_en", "a"]  # the user's entries are kept, ours replaced in place
    assert reg["a"]["file_name"] == "b.jsonl" and reg["a"]["formatting"] == "sharegpt"
    ok(cli("export", "--probe", str(probe), "--categories", "MaybeKnown", "--format", "alpaca",
           "--out", str(tmp_path / "c.json"), "--no-dataset-info"))
    assert "c" not in json.loads(info.read_text())


def test_parse_categories_uses_the_probe_constant() -> None:
    from gradual.export import parse_categories

    assert parse_categories("weaklyknown, MaybeKnown") == ("MaybeKnown", "WeaklyKnown")
    assert parse_categories("all") == tuple(CATEGORIES)


# --- bad input -------------------------------------------------------------------------------------

def _bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    probe, run = str(tmp / "probe.jsonl"), str(tmp / "run")
    base = ["--format", "trl", "--out", str(tmp / "out" / "x.jsonl")]
    return [
        (["--probe", str(tmp / "nope.jsonl"), "--categories", "all", *base], "nope.jsonl: no such probe file"),
        (["--probe", probe, "--categories", "Maybe", *base], "--categories: 'Maybe' is not a category"),
        (["--probe", probe, "--categories", "MaybeKnown", "--format", "parquet", "--out", str(tmp / "out" / "x")],
         "--format: 'parquet' is not one of alpaca, chat, trl"),
        (["--probe", probe, *base], "--categories: required with --probe"),
        (["--probe", probe, "--run", run, "--categories", "all", *base], "--probe / --run: give exactly one"),
        ([*base, "--categories", "all"], "--probe / --run: give exactly one"),
        (["--probe", probe, "--categories", "all", "--stage", "1", *base], "--stage: only with --run"),
        (["--probe", probe, "--categories", "all", "--no-replay", *base], "--replay/--no-replay: only with --run"),
        (["--run", run, "--stage", "7", *base], "--stage 7: "),
        (["--run", run, *base], "--stage: required with --run"),
        (["--run", run, "--stage", "3", *base], "the stage trained nothing: nothing moved up"),
        (["--run", str(tmp / "norun"), "--stage", "1", *base], "no such run folder"),
        (["--run", str(tmp), "--stage", "1", *base], "not a run folder"),
        (["--run", run, "--stage", "1", "--categories", "Unknown", *base], "--stage 1: no items of category Unknown"),
        (["--probe", str(tmp / "badcat.jsonl"), "--categories", "all", *base], "badcat.jsonl:2: 'category' 'Known'"),
        (["--probe", str(tmp / "noq.jsonl"), "--categories", "all", *base], "noq.jsonl:1: missing or blank 'question'"),
        (["--probe", probe, "--categories", "all", "--format", "alpaca", "--out", str(tmp / "broken" / "x.json")],
         "dataset_info.json: malformed JSON"),
        (["--probe", probe, "--categories", "all", "--format", "trl", "--dataset-info", *base[2:]],
         "--dataset-info: LLaMA-Factory entries are written for alpaca and chat, not trl"),
    ]


@pytest.mark.parametrize("case", range(18))
def test_bad_input_exits_2_with_one_message_and_no_output(tmp_path: Path, case: int) -> None:
    write_probe(tmp_path / "probe.jsonl")
    make_run(tmp_path)
    (tmp_path / "badcat.jsonl").write_text(
        (tmp_path / "probe.jsonl").read_text().splitlines()[0] + "\n"
        + json.dumps({"id": "z", "category": "Known", "question": "q?", "answers": ["a"]}) + "\n")
    (tmp_path / "noq.jsonl").write_text(json.dumps({"id": "z", "category": "Unknown", "answers": ["a"]}) + "\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset_info.json").write_text("{not json")
    cases = _bad_cases(tmp_path)
    assert len(cases) == 18
    args, expected = cases[case]
    before = {p for p in tmp_path.rglob("*")}
    r = cli("export", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert {p for p in tmp_path.rglob("*")} == before, "an output or temp file was left behind"
    assert (tmp_path / "broken" / "dataset_info.json").read_text() == "{not json"


def test_failed_export_keeps_the_previous_output(tmp_path: Path) -> None:
    probe = write_probe(tmp_path / "probe.jsonl")
    out = tmp_path / "x.jsonl"
    ok(cli("export", "--probe", str(probe), "--categories", "MaybeKnown", "--format", "chat", "--out", str(out)))
    old = out.read_text()
    r = cli("export", "--probe", str(probe), "--categories", "Bogus", "--format", "chat", "--out", str(out))
    assert r.returncode == 2 and out.read_text() == old
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")], "temp files left behind"
