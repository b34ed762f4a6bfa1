"""Bad input gets a clear error (issue 21): absurd and malformed config and data values are UserErrors
naming the key, flag, file or line, before any model loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gradual.config import RANGES, Bound, ProbeConfig, TrainConfig, range_errors
from gradual.run_config import load_run_config, load_yaml_mapping
from gradual.data.items import item_from_dict, load_dataset_dir, read_items
from gradual.errors import UserError
from tests.conftest import run_cli

ITEM = {"id": "a", "question": "Q?", "answers": ["x"]}


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load_run_config(_config(tmp_path, text))
    return str(info.value)


# -- numeric ranges --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_bound_rejects_non_finite_values(value: float) -> None:
    for key, bound in RANGES.items():
        assert not bound.ok(value), key
    assert not Bound().ok(value)  # even a bound with no limits


def test_non_finite_yaml_values_name_the_key(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, "train:\n  lr: .inf\n  weight_decay: .nan\nprobe:\n  temperature: -.inf\n")
    assert "train.lr: inf is not a finite number (allowed: > 0 and <= 10" in msg
    assert "train.weight_decay: nan is not a finite number (allowed: >= 0)" in msg
    assert "probe.temperature: -inf is not a finite number" in msg


def test_non_finite_flag_values_name_the_flag() -> None:
    from gradual.probe.run import validate_config

    with pytest.raises(UserError, match=r"--temperature: inf is not a finite number"):
        validate_config(ProbeConfig(temperature=math.inf))
    assert range_errors(TrainConfig(lr=math.nan), "train", flags=True) == [
        "--lr: nan is not a finite number (allowed: > 0 and <= 10: a larger learning rate only diverges)"]


def test_temperature_inf_flag_exits_2_before_the_model_loads(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(ITEM) + "\n", encoding="utf-8")
    r = run_cli("probe", "--data", str(data), "--out", str(tmp_path / "p.jsonl"), "--temperature", "inf")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--temperature: inf is not a finite number" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.jsonl").exists()


def test_caps_name_the_key_the_range_and_the_reason(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, "probe:\n  nex: 100000\n  max_new_tokens: 100000000\n  top_k: 5000000\n"
                                  "train:\n  lr: 1000\nstage2:\n  lr_scale: 1000\nmax_stages: 1000\nseed: -1\n")
    assert ("probe.nex: 100000 is out of range (>= 1 and <= 100: each prompt is a full few-shot pass over every "
            "item)") in msg
    assert "probe.max_new_tokens: 100000000 is out of range (>= 1 and <= 1024: decode buffers are preallocated" in msg
    assert "probe.top_k: 5000000 is out of range (>= 0 and <= 1000000: " in msg  # not 1e+06
    assert "train.lr: 1000.0 is out of range (> 0 and <= 10: " in msg
    assert "stage2.lr_scale: 1000.0 is out of range (> 0 and <= 100: " in msg
    assert "max_stages: 1000 is out of range (>= 1 and <= 100: " in msg
    assert "seed: -1 is out of range (>= 0)" in msg  # below the floor: the floor alone
    # Flags get the same text, named by flag.
    assert range_errors(ProbeConfig(batch_size=10**9), "probe", flags=True)[0].startswith(
        "--batch-size: 1000000000 is out of range (>= 1 and <= 65536: ")


def test_every_cap_has_a_reason_and_admits_the_defaults() -> None:
    from gradual.config import RunConfig

    for key, bound in RANGES.items():
        assert bound.cap is None or bound.why, key
    cfg = RunConfig()
    assert not range_errors(cfg, "") and not any(range_errors(getattr(cfg, s), s) for s in ("probe", "train", "stage2"))
    # The largest value a cap admits passes; one more does not.
    assert RANGES["probe.nex"].ok(100) and not RANGES["probe.nex"].ok(101)


def test_a_huge_integer_for_a_float_key_is_an_error_not_a_crash(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, "train:\n  lr: 1" + "0" * 400 + "\n")
    assert "train.lr: 10000000000000000000... (401 characters) is not a finite number" in msg
    assert msg.count("train.lr") == 1


# -- YAML loading ------------------------------------------------------------------------------------

def test_duplicate_key_names_the_key_and_both_lines(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, "model: m\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    assert msg == f"{tmp_path / 'c.yaml'}: duplicate key 'lr' (lines 3 and 5)"
    msg = _config_error(tmp_path, "model: m\ndata: d\nmodel: n\n")  # top level too
    assert msg.endswith("c.yaml: duplicate key 'model' (lines 1 and 3)")


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    p = _config(tmp_path, "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert load_yaml_mapping(p) == {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "---\n"])
def test_empty_config_is_an_error(tmp_path: Path, text: str) -> None:
    msg = _config_error(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'c.yaml'}: empty config") and "model:" in msg and "data:" in msg


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    assert _config_error(tmp_path, "model: m\nprobe: [1\n").startswith(f"{tmp_path / 'c.yaml'}:3: invalid YAML (")
    assert _config_error(tmp_path, "- 1\n- 2\n").endswith("c.yaml: expected a mapping at the top level, got list")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(UserError, match="folder.yaml: is a folder"):
        load_run_config(tmp_path / "folder.yaml")


def test_a_flag_over_a_section_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="train: expected a mapping, got 3"):
        load_run_config(_config(tmp_path, "model: m\ntrain: 3\n"), {"train.report_to": "none"})


def test_cli_bad_config_exits_2_before_creating_out(tmp_path: Path) -> None:
    bad = _config(tmp_path, "model: m\ndata: d\ntrain:\n  lr: 0.1\n  lr: .inf\n")
    out = tmp_path / "run"
    r = run_cli("run", "--config", str(bad), "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "c.yaml: duplicate key 'lr' (lines 4 and 5)" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists()
    bad.write_text("probe:\n  nex: 100000\n", encoding="utf-8")
    r = run_cli("run", "--config", str(bad), "--out", str(out))
    assert r.returncode == 2 and "probe.nex: 100000 is out of range (>= 1 and <= 100" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and not out.exists()


# -- data ----------------------------------------------------------------------------------------------

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
