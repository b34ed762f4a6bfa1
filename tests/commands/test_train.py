"""`gradual train`: the command trains and writes its adapter, and every bad flag is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradual.errors import UserError
from tests.conftest import write_jsonl
from tests.lm.test_spec import ITEM


def test_cli_train(tiny_model_dir: Path, sample_items: list[dict], tmp_path: Path, monkeypatch, capsys) -> None:
    import sys

    from gradual.cli import main
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "train.jsonl", sample_items[:8])
    dev = write_jsonl(tmp_path / "dev.jsonl", sample_items[8:])
    out = tmp_path / "cli"
    args = ["gradual", "train", "--model", str(tiny_model_dir), "--data", str(data), "--dev", str(dev),
            "--out", str(out), "--epochs", "2", "--batch-size", "4", "--min-dev", "2", "--device", "cpu",
            "--dtype", "fp32", "--quiet"]
    monkeypatch.setattr(sys, "argv", args)
    main()  # returns normally on success
    text = capsys.readouterr().out
    assert "best epoch" in text and (out / "adapter" / "adapter_model.safetensors").exists()

    monkeypatch.setattr(sys, "argv", args[:-1] + ["--replay-ratio", "0.3"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "--replay-ratio" in capsys.readouterr().err


def test_train_flags_report_every_range_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gradual.cli import app

    data = write_jsonl(tmp_path / "d.jsonl", [ITEM])
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "o"), "--epochs", "0",
                                   "--lr", "-1"])
    assert isinstance(res.exception, UserError)
    assert "--epochs: 0 is out of range (>= 1)" in str(res.exception)
    assert "--lr: -1.0 is out of range (> 0)" in str(res.exception)
