"""The command line: every command is registered, every choice list in the help comes from its registry and
rich markup leaves it intact, and only errors of the world outside (a full disk) become one-line messages."""

from __future__ import annotations

import errno
import re

import pytest
from typer.testing import CliRunner

from gradual.cli import app, world_error
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


def test_cli_registers_every_command_and_a_missing_one_is_an_import_error() -> None:
    import typer

    from gradual import cli

    names = set(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]
    assert names == {"data", "model", "probe", "train", "run", "eval", "compare", "report", "export"}
    with pytest.raises(ModuleNotFoundError, match="gradual.commands.nope"):
        cli.register_commands(typer.Typer(), ("data", "nope"))


def test_other_errors_stay_bugs() -> None:
    assert world_error(ValueError("a bug")) is None
    assert world_error(OSError(errno.EIO, "I/O error")) is None
