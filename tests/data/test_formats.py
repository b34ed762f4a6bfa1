"""Importers (gradual.data.formats): every format round-trips, every bad input exits 2 naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradual.data.formats import FORMATS, ImportOptions, import_dataset, json_array_with_lines, load_source
from gradual.data.items import SPLITS, Item, load_dataset_dir
from gradual.data.splits import subject_overlap
from gradual.errors import UserError
from tests.conftest import Result, run_cli


FIX = Path(__file__).resolve().parents[1] / "fixtures"
cli = run_cli  # in-process: fast, and a bug's exception propagates and fails the test


def subprocess_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "gradual.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def all_items(path: Path) -> list[Item]:
    ds = load_dataset_dir(path)
    return [it for s in SPLITS for it in ds.split(s)]


# --- importers round-trip ------------------------------------------------------------------------

def test_jsonl_roundtrip(tmp_path: Path) -> None:
    out = import_dataset("jsonl", FIX / "items.jsonl", tmp_path / "ds", seed=3)
    items = all_items(out)
    assert len(items) == 20
    by_id = {it.id: it for it in items}
    assert by_id["capital:Italy"].answers == ("Rome", "Roma")
    assert by_id["items:2"].relation == "continent"  # generated id: <stem>:<line>
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == "jsonl" and meta["seed"] == 3 and meta["split"] == "seeded"
    assert sum(meta["counts"].values()) == 20 and meta["created_by"].startswith("gradual ")
    assert not subject_overlap({s: load_dataset_dir(out).split(s) for s in SPLITS})


def test_csv_roundtrip_aliases_and_columns(tmp_path: Path) -> None:
    out = import_dataset("csv", FIX / "qa.csv", tmp_path / "ds")
    by_id = {it.id: it for it in all_items(out)}
    assert len(by_id) == 20
    assert by_id["cap-Chile"].answers == ("Santiago", "Santiago de Chile")
    assert by_id["cap-Chile"].subject == "Chile" and by_id["cont-Peru"].relation == "continent"


def test_tsv_roundtrip_named_columns(tmp_path: Path) -> None:
    opts = ImportOptions(question_col="q", answer_col="a", alias_sep=";", relation_col="rel", subject_col="subj")
    out = import_dataset("tsv", FIX / "qa.tsv", tmp_path / "ds", opts=opts)
    items = all_items(out)
    assert len(items) == 10
    ukr = next(it for it in items if it.subject == "Ukraine")
    assert ukr.answers == ("Kyiv", "Kiev") and ukr.relation == "capital" and ukr.id == "qa:9"


def test_entityquestions_keeps_splits_and_derives_subjects(tmp_path: Path) -> None:
    out = import_dataset("entityquestions", FIX / "entityquestions", tmp_path / "ds")
    ds = load_dataset_dir(out)
    assert [len(ds.split(s)) for s in SPLITS] == [12, 4, 4]
    assert {it.relation for it in ds.train} == {"P30", "P36"}
    chile = next(it for it in ds.test if it.relation == "P36" and "Chile" in it.question)
    assert chile.subject == "Chile" and chile.answers == ("Santiago", "Santiago de Chile")
    assert next(it for it in ds.dev if it.relation == "P30").subject == "Kenya"
    assert json.loads((out / "meta.json").read_text())["split"] == "source"


def test_popqa_roundtrip(tmp_path: Path) -> None:
    out = import_dataset("popqa", FIX / "popqa.tsv", tmp_path / "ds")
    by_id = {it.id: it for it in all_items(out)}
    assert len(by_id) == 20
    assert by_id["1002"].answers == ("Rome", "Roma") and by_id["1002"].subject == "Italy"
    assert by_id["2001"].relation == "continent" and by_id["2001"].answers == ("Europe",)  # unquoted cell


def test_triviaqa_roundtrip_dedupes_aliases(tmp_path: Path) -> None:
    out = import_dataset("triviaqa", FIX / "triviaqa.json", tmp_path / "ds")
    by_id = {it.id: it for it in all_items(out)}
    assert len(by_id) == 10
    # "rome"/"Rome" are one answer after normalization; the Value stays canonical.
    assert by_id["tc_2"].answers == ("Rome", "roma")
    assert by_id["tc_2"].relation is None and by_id["tc_2"].subject is None


def test_nq_open_roundtrip(tmp_path: Path) -> None:
    out = import_dataset("nq-open", FIX / "nq_open.jsonl", tmp_path / "ds")
    by_id = {it.id: it for it in all_items(out)}
    assert len(by_id) == 10 and by_id["nq_open:8"].answers == ("Kyiv", "Kiev")


def _save_hf(path: Path, splits: dict[str, dict[str, list]]) -> Path:
    import datasets  # a dependency of gradual: its absence is a failure, not a skip

    datasets.disable_progress_bars()
    dd = datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()})
    dd.save_to_disk(str(path))
    return path


def test_hf_roundtrip_keeps_splits(tmp_path: Path) -> None:
    def part(qs: list[str]) -> dict[str, list]:
        return {"question": qs, "answer": [{"value": q.upper(), "aliases": [q.upper() + "!", "x" + q]} for q in qs]}

    src = _save_hf(tmp_path / "hf", {"train": part(["a?", "b?", "c?"]), "validation": part(["d?"]), "test": part(["e?"])})
    out = import_dataset("hf", src, tmp_path / "ds")
    ds = load_dataset_dir(out)
    assert [len(ds.split(s)) for s in SPLITS] == [3, 1, 1]
    assert ds.dev[0].id == "validation:0" and ds.dev[0].answers == ("D?", "xd?")  # "D?!" == "D?" normalized


def test_hf_single_split_is_resplit(tmp_path: Path) -> None:
    import datasets

    src = tmp_path / "hf"
    datasets.disable_progress_bars()
    rows = {"question": [f"q{i}?" for i in range(20)], "answers": [[f"a{i}"] for i in range(20)], "id": [f"r{i}" for i in range(20)]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(src))
    out = import_dataset("hf", src, tmp_path / "ds", seed=1)
    ds = load_dataset_dir(out)
    assert [len(ds.split(s)) for s in SPLITS] == [14, 2, 4]
    assert {it.id for s in SPLITS for it in ds.split(s)} == set(rows["id"])


def test_hf_json_encoded_answer_lists_are_split(tmp_path: Path) -> None:
    """PopQA on the hub keeps `possible_answers` as a JSON list inside a string: each alias is an answer."""

    def part(rows: list[tuple[str, str]]) -> dict[str, list]:
        return {"question": [q for q, _ in rows], "possible_answers": [a for _, a in rows], "id": [q for q, _ in rows]}

    src = _save_hf(tmp_path / "popqa-hf", {
        "train": part([("Capital of France?", '["Paris", "City of Light"]'), ("Capital of Peru?", "Lima")]),
        "validation": part([("Capital of Italy?", ' ["Rome", "Roma", ""] ')]),
        "test": part([("Capital of Japan?", '["Tokyo"]')]),
    })
    r = cli("data", "import", "--format", "hf", str(src), "--answer-col", "possible_answers", "--out", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    ds = load_dataset_dir(tmp_path / "ds")
    by_id = {it.id: it for s in SPLITS for it in ds.split(s)}
    assert by_id["Capital of France?"].answers == ("Paris", "City of Light")
    assert by_id["Capital of Peru?"].answers == ("Lima",)  # a plain string stays one answer
    assert by_id["Capital of Italy?"].answers == ("Rome", "Roma")  # blank aliases dropped
    assert [it.answers for it in ds.test] == [("Tokyo",)]


@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("tsv", "\t")])
def test_table_json_encoded_answer_lists_are_split(tmp_path: Path, fmt: str, sep: str) -> None:
    # The JSON list holds the alias separator "|" and, in the csv, commas: it is not split further.
    src = tmp_path / f"qa.{fmt}"
    with src.open("w", newline="", encoding="utf-8") as f:
        import csv

        w = csv.writer(f, delimiter=sep)
        w.writerow(["id", "question", "answers"])
        w.writerow(["fr", "Capital of France?", J(["Paris", "City of Light", "Lutetia|Lutèce"])])
        w.writerow(["pe", "Capital of Peru?", "Lima|Ciudad de los Reyes"])
        w.writerow(["ci", "Capital of Côte d'Ivoire?", J(["Yamoussoukro", "Abidjan, former"])])
    by_id = {it.id: it for it in load_source(fmt, src).items}
    assert by_id["fr"].answers == ("Paris", "City of Light", "Lutetia|Lutèce")
    assert by_id["pe"].answers == ("Lima", "Ciudad de los Reyes")
    assert by_id["ci"].answers == ("Yamoussoukro", "Abidjan, former")


# A cell that starts with "[" but is not a JSON list of strings is a broken export, not an answer:
# kept as the literal "[Paris" it would be an answer no model output ever matches.
MALFORMED_CELLS = [
    ("[Paris", "'answers' is not a JSON list (Expecting value); a cell starting with '[' is read as a JSON list"),
    ('["Paris", "City of Light"', "'answers' is not a JSON list"),
    ("[1, 2]", "'answers' must be a JSON list of strings, item 0 is int"),
    ("[]", "'answers' is empty"),
]


@pytest.mark.parametrize("cell,expected", MALFORMED_CELLS, ids=[c for c, _ in MALFORMED_CELLS])
def test_table_malformed_json_answer_cell_exits_2(tmp_path: Path, cell: str, expected: str) -> None:
    (tmp_path / "bad.tsv").write_text(f"question\tanswers\nQ?\tx\nR?\t{cell}\n", encoding="utf-8")
    r = cli("data", "import", "--format", "tsv", "bad.tsv", "--out", "out", cwd=tmp_path)
    _assert_user_error(r, f"bad.tsv:3: {expected}", tmp_path / "out")


def test_table_literal_bracket_answer_as_json_list(tmp_path: Path) -> None:
    # The escape hatch the error message names: an answer that really starts with "[".
    (tmp_path / "ok.csv").write_text('question,answers\nQ?,"[""[Paris""]"\n', encoding="utf-8")
    assert load_source("csv", tmp_path / "ok.csv").items[0].answers == ("[Paris",)


def test_hf_malformed_json_answer_cell_exits_2(tmp_path: Path) -> None:
    src = _save_hf(tmp_path / "hfjson", {"train": {"question": ["a?", "b?"], "possible_answers": ['["x"]', "[Paris"]}})
    r = cli("data", "import", "-f", "hf", str(src), "--answer-col", "possible_answers", "-o", str(tmp_path / "out"))
    _assert_user_error(r, "hfjson[train] row 1: 'possible_answers' is not a JSON list", tmp_path / "out")


def test_import_is_deterministic_and_seeded(tmp_path: Path) -> None:
    a = import_dataset("popqa", FIX / "popqa.tsv", tmp_path / "a", seed=7)
    b = import_dataset("popqa", FIX / "popqa.tsv", tmp_path / "b", seed=7)
    c = import_dataset("popqa", FIX / "popqa.tsv", tmp_path / "c", seed=8)
    for s in SPLITS:
        assert (a / f"{s}.jsonl").read_bytes() == (b / f"{s}.jsonl").read_bytes()
    assert any((a / f"{s}.jsonl").read_bytes() != (c / f"{s}.jsonl").read_bytes() for s in SPLITS)


def test_import_replaces_earlier_dataset_but_not_other_folders(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    import_dataset("csv", FIX / "qa.csv", out)
    import_dataset("nq-open", FIX / "nq_open.jsonl", out)  # a dataset folder may be replaced
    assert len(all_items(out)) == 10
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="--out"):
        import_dataset("csv", FIX / "qa.csv", other)
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.mark.integration
def test_cli_import_and_every_format_listed(tmp_path: Path) -> None:
    r = subprocess_cli("data", "import", "--format", "csv", str(FIX / "qa.csv"), "--out", str(tmp_path / "ds"), "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "train 14" in r.stdout
    assert set(FORMATS) == {"jsonl", "csv", "tsv", "entityquestions", "popqa", "triviaqa", "nq-open", "hf"}


# --- bad input: exit 2, one message naming the file, no traceback, no output ---------------------

J = json.dumps
GOOD = J({"id": "a", "question": "Q?", "answers": ["x"]})


# (format, file name, content, text expected in the message besides the file name)
BAD_FILES: list[tuple[str, str, bytes | str, str]] = [
    ("jsonl", "bad.jsonl", GOOD + "\n" + '{"question": "Q?", ', "bad.jsonl:2: malformed JSON"),
    ("jsonl", "bad.jsonl", J({"question": "  ", "answers": ["x"]}), "bad.jsonl:1: missing or blank 'question'"),
    ("jsonl", "bad.jsonl", J({"answers": ["x"]}), "bad.jsonl:1: missing or blank 'question'"),
    ("jsonl", "bad.jsonl", J({"question": "Q?", "answers": []}), "bad.jsonl:1: 'answers' is empty"),
    ("jsonl", "bad.jsonl", J({"question": "Q?", "answers": "x"}), "bad.jsonl:1: 'answers' must be a list"),
    ("jsonl", "bad.jsonl", GOOD + "\n\n" + GOOD, "bad.jsonl:3: duplicate id 'a'"),
    ("jsonl", "bad.jsonl", GOOD.encode() + b"\n" + b'{"id": "b", "question": "\xff?", "answers": ["x"]}', "bad.jsonl:2: not valid UTF-8"),
    ("jsonl", "bad.jsonl", "", "bad.jsonl: empty file"),
    ("csv", "bad.csv", "question,answer\nQ?,x\n ,y\n", "bad.csv:3: missing or blank 'question'"),
    ("csv", "bad.csv", "question,answer\nQ?,x\nR?, | \n", "bad.csv:3: empty answer"),
    ("csv", "bad.csv", "id,question,answer\n1,Q?,x\n1,R?,y\n", "bad.csv:3: duplicate id '1'"),
    ("csv", "bad.csv", "q,answer\nQ?,x\n", "bad.csv:1: no column 'question' (--question-col)"),
    ("csv", "bad.csv", "question,ans\nQ?,x\n", "bad.csv:1: no column 'answers' or 'answer'"),
    ("csv", "bad.csv", b"question,answer\nQ?,caf\xe9\n", "bad.csv:2: not valid UTF-8"),
    ("csv", "bad.csv", "\n\n", "bad.csv: empty file"),
    ("csv", "bad.csv", "question,answer\n", "bad.csv: no items"),
    ("tsv", "bad.tsv", "question\tanswer\nQ?\tx\textra\n", "bad.tsv:2: 3 fields"),
    ("tsv", "bad.tsv", "question\tanswer\nQ?\t\n", "bad.tsv:2: empty answer"),
    ("popqa", "bad.tsv", "id\tquestion\tpossible_answers\n1\tQ?\t[\"x\"\n", "bad.tsv:2: 'possible_answers' is not a JSON list"),
    ("popqa", "bad.tsv", "id\tquestion\tpossible_answers\n1\tQ?\t[]\n", "bad.tsv:2: 'possible_answers' is empty"),
    ("popqa", "bad.tsv", "id\tquestion\tpossible_answers\n1\tQ?\t\"\"\"x\"\"\"\n", "bad.tsv:2: 'possible_answers' must be a JSON list"),
    ("popqa", "bad.tsv", "id\tquestion\tpossible_answers\n1\tQ?\t[\"x\"]\n1\tR?\t[\"y\"]\n", "bad.tsv:3: duplicate id '1'"),
    ("popqa", "bad.tsv", "id\tquery\tpossible_answers\n1\tQ?\t[\"x\"]\n", "bad.tsv:1: no column 'question'"),
    ("popqa", "bad.tsv", b"id\tquestion\tpossible_answers\n1\tQ\xc3?\t[]\n", "bad.tsv:2: not valid UTF-8"),
    ("triviaqa", "bad.json", '{"Data": [\n{"Question": "Q?"\n', "bad.json:3: malformed JSON"),
    ("triviaqa", "bad.json", J({"data": []}), "bad.json: expected a JSON object with a 'Data' list"),
    ("triviaqa", "bad.json", J({"Data": [{"Question": " ", "Answer": {"Value": "x"}}]}), "bad.json: Data[0]: missing or blank 'Question'"),
    ("triviaqa", "bad.json", J({"Data": [{"Question": "Q?", "Answer": {"Value": "", "Aliases": []}}]}), "bad.json: Data[0]: empty answers"),
    ("triviaqa", "bad.json", J({"Data": [{"Question": "Q?", "Answer": {"Value": "x", "Aliases": "x"}}]}), "bad.json: Data[0]: 'Answer.Aliases' must be a list"),
    ("triviaqa", "bad.json", J({"Data": [{"Question": "Q?", "Answer": {"Value": "x"}, "QuestionId": "t"}] * 2}), "bad.json: Data[1]: duplicate id 't'"),
    ("triviaqa", "bad.json", J({"Data": []}), "bad.json: no items"),
    ("nq-open", "bad.jsonl", '{"question": "q", "answer": ["x"]}\n{"question": "q", "answer": "x"}\n', "bad.jsonl:2: 'answer' must be a list"),
    ("nq-open", "bad.jsonl", '{"question": "q", "answer": []}\n', "bad.jsonl:1: 'answer' is empty"),
    ("nq-open", "bad.jsonl", '{"answer": ["x"]}\n', "bad.jsonl:1: missing or blank 'question'"),
    ("nq-open", "bad.jsonl", '{"question": "q", "answer": ["x"]}\n{"question": "q",\n', "bad.jsonl:2: malformed JSON"),
    ("nq-open", "bad.jsonl", '{"id": 1, "question": "q", "answer": ["x"]}\n{"id": 1, "question": "r", "answer": ["y"]}\n', "bad.jsonl:2: duplicate id '1'"),
]


def _assert_user_error(r: Result | subprocess.CompletedProcess[str], expected: str, out: Path) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temp files left behind"


@pytest.mark.parametrize("fmt,name,content,expected", BAD_FILES, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_FILES)])
def test_bad_input_exits_2_naming_file(tmp_path: Path, fmt: str, name: str, content: bytes | str, expected: str) -> None:
    src = tmp_path / name
    if isinstance(content, str):
        src.write_text(content, encoding="utf-8")
    else:
        src.write_bytes(content)
    out = tmp_path / "out"
    r = cli("data", "import", "--format", fmt, name, "--out", "out", cwd=tmp_path)
    _assert_user_error(r, expected, out)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_missing_source_exits_2(tmp_path: Path, fmt: str) -> None:
    r = cli("data", "import", "--format", fmt, "nowhere/x.data", "--out", "out", cwd=tmp_path)
    _assert_user_error(r, "nowhere/x.data", tmp_path / "out")


@pytest.mark.parametrize("fmt,name", [("jsonl", "e.jsonl"), ("csv", "e.csv"), ("tsv", "e.tsv"), ("popqa", "e.tsv"), ("triviaqa", "e.json"), ("nq-open", "e.jsonl")])
def test_empty_and_non_utf8_files_exit_2(tmp_path: Path, fmt: str, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    _assert_user_error(cli("data", "import", "-f", fmt, name, "-o", "out", cwd=tmp_path), f"{name}: empty file", tmp_path / "out")
    (tmp_path / name).write_bytes(b"\x80abc\n")
    _assert_user_error(cli("data", "import", "-f", fmt, name, "-o", "out", cwd=tmp_path), f"{name}:1: not valid UTF-8", tmp_path / "out")


@pytest.mark.integration
def test_unknown_format_lists_known_ones(tmp_path: Path) -> None:
    r = subprocess_cli("data", "import", "--format", "xml", str(FIX / "qa.csv"), "--out", "out", cwd=tmp_path)
    _assert_user_error(r, "--format: unknown format 'xml'; known formats: jsonl, csv, tsv, entityquestions", tmp_path / "out")


def test_csv_named_column_missing(tmp_path: Path) -> None:
    r = cli("data", "import", "--format", "csv", str(FIX / "qa.csv"), "--out", "out", "--subject-col", "who", cwd=tmp_path)
    _assert_user_error(r, "qa.csv:1: no column 'who' (--subject-col)", tmp_path / "out")


def test_bad_fracs_exit_2(tmp_path: Path) -> None:
    r = cli("data", "import", "-f", "csv", str(FIX / "qa.csv"), "-o", "out", "--dev-frac", "0.5", "--test-frac", "0.5", cwd=tmp_path)
    _assert_user_error(r, "--dev-frac/--test-frac", tmp_path / "out")


def _eq_copy(tmp_path: Path) -> Path:
    import shutil

    src = tmp_path / "eq"
    shutil.copytree(FIX / "entityquestions", src)
    return src


@pytest.mark.parametrize(
    "file,content,expected",
    [
        ("dev/P36.dev.json", '[\n{"question": "Q?", "answers": ["x"]},\n{"question": "R?" "answers": []}\n]', "P36.dev.json:3: malformed JSON"),
        ("dev/P36.dev.json", '[\n{"question": "Q?", "answers": ["x"]},\n{"question": "R?", "answers": "y"}\n]', "P36.dev.json:3: 'answers' must be a list"),
        ("test/P30.test.json", '[{"question": "Q?", "answers": []}]', "P30.test.json:1: 'answers' is empty"),
        ("train/P36.train.json", '[{"question": "", "answers": ["x"]}]', "P36.train.json:1: missing or blank 'question'"),
        ("train/P36.train.json", "[]", "P36.train.json: empty list"),
        ("train/P36.train.json", b"[\xff]", "P36.train.json:1: not valid UTF-8"),
        ("train/P36.train.json", "", "P36.train.json: empty file"),
    ],
)
def test_entityquestions_bad_input(tmp_path: Path, file: str, content: str | bytes, expected: str) -> None:
    src = _eq_copy(tmp_path)
    if isinstance(content, str):
        (src / file).write_text(content)
    else:
        (src / file).write_bytes(content)
    _assert_user_error(cli("data", "import", "-f", "entityquestions", str(src), "-o", str(tmp_path / "out")), expected, tmp_path / "out")


def test_entityquestions_missing_split(tmp_path: Path) -> None:
    import shutil

    src = _eq_copy(tmp_path)
    shutil.rmtree(src / "dev")
    _assert_user_error(cli("data", "import", "-f", "entityquestions", str(src), "-o", str(tmp_path / "out")), "eq/dev: no <relation>.dev.json", tmp_path / "out")


@pytest.mark.integration
def test_hf_bad_input(tmp_path: Path) -> None:
    src = _save_hf(tmp_path / "hfbad", {"train": {"question": ["a?", "b?"], "answers": [["x"], []]}})
    _assert_user_error(cli("data", "import", "-f", "hf", str(src), "-o", str(tmp_path / "out")), "hfbad[train] row 1: 'answers' is empty", tmp_path / "out")
    src2 = _save_hf(tmp_path / "hfcol", {"train": {"q": ["a?"], "answers": [["x"]]}})
    _assert_user_error(cli("data", "import", "-f", "hf", str(src2), "-o", str(tmp_path / "out")), "hfcol[train]: no column 'question'", tmp_path / "out")
    r = subprocess_cli("data", "import", "-f", "hf", "someone/some-dataset", "-o", str(tmp_path / "out"))
    _assert_user_error(r, "someone/some-dataset: no such folder, and hub ids need network access", tmp_path / "out")


def test_json_array_lines(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text('[\n  {"a": 1},\n\n  {"a": [2,\n 3]}\n]\n')
    assert list(json_array_with_lines(p)) == [({"a": 1}, 2), ({"a": [2, 3]}, 4)]
    p.write_text('{"a": 1}')
    with pytest.raises(UserError, match="a.json:1: expected a JSON list"):
        list(json_array_with_lines(p))


@pytest.mark.integration
def test_import_too_small_for_a_dev_split_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    """3 items cannot fill train, dev and test: a clear error, not a folder that no command can read."""
    src = tmp_path / "three.jsonl"
    src.write_text("".join(json.dumps({"question": f"What is the capital of {c}?", "answers": [a],
                                       "relation": "capital", "subject": c}) + "\n"
                           for c, a in [("France", "Paris"), ("Peru", "Lima"), ("Chile", "Santiago")]))
    res = subprocess_cli("data", "import", "--format", "jsonl", str(src), "--out", str(tmp_path / "o"))
    _assert_user_error(res, "dev split of 3 items would be empty", tmp_path / "o")
    assert "--dev-frac" in res.stderr
    assert not (tmp_path / "o").exists()
