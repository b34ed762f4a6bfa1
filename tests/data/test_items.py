"""Items and dataset folders (gradual.data.items): JSONL round-trip, and every bad item, id or meta.json is a
UserError naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradual.data.items import item_from_dict, load_dataset_dir, read_items, write_items
from gradual.errors import UserError
from tests.conftest import write_jsonl


ITEM = {"id": "a", "question": "Q?", "answers": ["x"]}


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


@pytest.mark.parametrize("ident,shown", [(True, "true"), (7.5, "7.5"), (["a"], '["a"]'), ({"a": 1}, '{"a": 1}')])
def test_an_id_that_is_not_a_string_names_file_and_line(tmp_path: Path, ident: object, shown: str) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps(ITEM) + "\n" + json.dumps({**ITEM, "id": ident}) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_items(p)
    assert str(info.value) == f"{p}:2: 'id' must be a string (or a whole number), got {shown}"
    with pytest.raises(UserError, match=r"x.jsonl:4: 'id' must be a string \(or a whole number\), got true"):
        item_from_dict({**ITEM, "id": True}, "x.jsonl", 4)


def test_a_whole_number_id_is_read_as_its_digits() -> None:
    assert item_from_dict({**ITEM, "id": 7}, "x.jsonl", 1).id == "7"


def _dataset(tmp_path: Path, meta: str) -> Path:
    d = tmp_path / "ds"
    d.mkdir()
    for i, s in enumerate(("train", "dev", "test")):
        (d / f"{s}.jsonl").write_text(json.dumps({**ITEM, "id": f"{s}{i}"}) + "\n", encoding="utf-8")
    (d / "meta.json").write_text(meta, encoding="utf-8")
    return d


@pytest.mark.parametrize("meta,needle", [
    ("[1, 2]", "meta.json: expected a JSON object, got [1, 2]"),
    ('"counts"', 'meta.json: expected a JSON object, got "counts"'),
    ('{\n  "counts": {"train": 1,', "meta.json:2: malformed JSON ("),
    ("", "meta.json: empty file"),
])
def test_a_bad_meta_json_names_the_file(tmp_path: Path, meta: str, needle: str) -> None:
    d = _dataset(tmp_path, meta)
    with pytest.raises(UserError) as info:
        load_dataset_dir(d)
    assert str(info.value).startswith(str(d / "meta.json")) and needle in str(info.value)


def test_a_good_meta_json_still_loads(tmp_path: Path) -> None:
    d = _dataset(tmp_path, json.dumps({"counts": {"train": 1, "dev": 1, "test": 1}}))
    assert load_dataset_dir(d).meta == {"counts": {"train": 1, "dev": 1, "test": 1}}
