"""`gradual data validate` and `gradual data stats` (gradual.data.stats): counts, answer statistics, and
exit 2 with file:line on a bad file, a duplicate id across splits or a wrong count in meta.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradual.data.formats import import_dataset
from gradual.data.stats import dataset_stats
from tests.data.test_formats import FIX, cli


def test_validate_and_stats(tmp_path: Path) -> None:
    out = import_dataset("csv", FIX / "qa.csv", tmp_path / "ds")
    r = cli("data", "validate", str(out))
    assert r.returncode == 0 and "train 14, dev 2, test 4" in r.stdout, r.stdout + r.stderr
    r = cli("data", "validate", str(out / "train.jsonl"))
    assert r.returncode == 0 and "file 14" in r.stdout
    r = cli("data", "stats", str(out))
    assert r.returncode == 0, r.stderr
    assert "capital" in r.stdout and "continent" in r.stdout and "subjects in both train and test: 0" in r.stdout
    st = dataset_stats(out)
    assert st.parts["all"].items == 20 and st.by_relation["capital"]["train"] + st.by_relation["capital"]["dev"] + st.by_relation["capital"]["test"] == 10
    assert st.parts["all"].share_with_aliases == pytest.approx(3 / 20)  # Rome, Kyiv, Santiago
    assert st.parts["all"].answer_words_max == 2 and st.parts["all"].answer_chars_max == len("North America")
    # Bad files: exit 2 with file:line.
    lines = (out / "test.jsonl").read_text().splitlines()
    (out / "test.jsonl").write_text("\n".join(lines[:1] + ["{oops"] + lines[1:]) + "\n")
    r = cli("data", "validate", str(out))
    assert r.returncode == 2 and "test.jsonl:2: malformed JSON" in r.stderr and "Traceback" not in r.stderr
    r = cli("data", "stats", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "nothing: no such file or folder" in r.stderr


def test_validate_catches_cross_split_duplicates_and_bad_counts(tmp_path: Path) -> None:
    out = import_dataset("csv", FIX / "qa.csv", tmp_path / "ds")
    first = (out / "train.jsonl").read_text().splitlines()[0]
    (out / "test.jsonl").write_text((out / "test.jsonl").read_text() + first + "\n")
    r = cli("data", "validate", str(out))
    assert r.returncode == 2 and "test.jsonl:5: duplicate id" in r.stderr, r.stderr
    out2 = import_dataset("csv", FIX / "qa.csv", tmp_path / "ds2")
    meta = json.loads((out2 / "meta.json").read_text())
    meta["counts"]["dev"] = 99
    (out2 / "meta.json").write_text(json.dumps(meta))
    r = cli("data", "validate", str(out2))
    assert r.returncode == 2 and "meta.json: counts.dev is 99" in r.stderr
