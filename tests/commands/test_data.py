"""`gradual data import` and `gradual data build` usage errors: exit 2 naming the flag, nothing written."""

from __future__ import annotations

from pathlib import Path

from tests.data.test_formats import FIX, cli


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    r = cli("data", "import", str(FIX / "qa.csv"), "--out", "out", cwd=tmp_path)  # no --format
    assert r.returncode == 2 and "--format" in r.stderr and not (tmp_path / "out").exists()
    r = cli("data", "build", "world", "--out", "w", "--n-cities", "-1", cwd=tmp_path)
    assert r.returncode == 2 and "--n-cities" in r.stderr and not (tmp_path / "w").exists()
