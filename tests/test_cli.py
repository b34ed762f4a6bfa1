"""The command line's help: every choice list comes from its registry, and rich markup leaves it intact."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from gradual.cli import app
from gradual.config import BACKENDS, ESTIMATORS
from gradual.data.formats import FORMATS as IMPORT_FORMATS
from gradual.export import FORMATS as EXPORT_FORMATS
from gradual.strategies import STRATEGIES


def _help(*command: str) -> str:
    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"}, terminal_width=400)
    assert res.exit_code == 0, res.output
    return re.sub(r"\s+", " ", res.output.replace("│", " "))  # one line, without the panel borders


@pytest.mark.parametrize(("command", "flag", "choices"), [
    (("run",), "--strategy", STRATEGIES),
    (("compare",), "--strategies", STRATEGIES),
    (("probe",), "--estimator", ESTIMATORS),
    (("probe",), "--backend", BACKENDS),
    (("eval",), "--backend", BACKENDS),
    (("export",), "--format", EXPORT_FORMATS),
    (("data", "import"), "--format", IMPORT_FORMATS),
])
def test_choice_help_lists_every_registered_choice(command: tuple[str, ...], flag: str, choices) -> None:
    text = _help(*command)
    after = text[text.index(flag):]
    listed = after[after.index(":") + 1:].split(".")[0]  # "One of: a, b, c." / "... from: a (x); b (y)."
    names = [re.sub(r" \(.*", "", part).strip() for part in re.split(r"[;,] ", listed)]
    assert names == list(choices), f"{' '.join(command)} {flag}: help lists {names}"


def test_help_keeps_the_vllm_extra_in_brackets() -> None:
    # rich markup reads "[vllm]" as a style tag and drops it unless escaped.
    for command in ("probe", "eval"):
        assert "pip install 'gradual[vllm]'" in _help(command), command
