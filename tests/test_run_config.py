"""Run configs (gradual.run_config): bad input gets a clear error (issue 21). Absurd and malformed config
values are UserErrors naming the key, flag, file or line, every error at once, before any model loads;
YAML is read strictly (duplicate keys, empty files, a section that is not a mapping)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradual.config import ProbeConfig, range_errors
from gradual.errors import UserError
from gradual.run_config import load_run_config, load_yaml_mapping
from tests.conftest import run_cli


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load_run_config(_config(tmp_path, text))
    return str(info.value)


# -- numeric ranges --------------------------------------------------------------------------------

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


def test_range_errors_name_key_value_and_range(tmp_path: Path) -> None:
    from gradual.config import RANGES, ProbeConfig
    from gradual.run_config import load_run_config
    from gradual.probe.run import validate_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("probe:\n  nex: -3\n  shots: many\ntrain:\n  lr: 0\n  lora_dropout: 1.0\nmax_stages: 0\n")
    with pytest.raises(UserError) as info:
        load_run_config(cfg)
    msg = str(info.value)
    for needle in ("probe.nex: -3 is out of range (>= 1)", "train.lr: 0.0 is out of range (> 0)",
                   "train.lora_dropout: 1.0 is out of range (>= 0 and < 1)", "max_stages: 0 is out of range (>= 1)",
                   "probe.shots: expected an integer, got 'many'"):  # type and range errors together
        assert needle in msg
    with pytest.raises(UserError, match=r"--nex: -3 is out of range \(>= 1\).*--top-k: -1 is out of range \(>= 0\)"):
        validate_config(ProbeConfig(nex=-3, top_k=-1))
    assert RANGES["probe.temperature"].text == "> 0" and not RANGES["probe.temperature"].ok(float("nan"))


def test_non_finite_yaml_values_name_the_key(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, "train:\n  lr: .inf\n  weight_decay: .nan\nprobe:\n  temperature: -.inf\n")
    assert "train.lr: inf is not a finite number (allowed: > 0 and <= 10" in msg
    assert "train.weight_decay: nan is not a finite number (allowed: >= 0)" in msg
    assert "probe.temperature: -inf is not a finite number" in msg


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
