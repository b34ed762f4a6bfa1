"""The `gradual` command line: parses, validates, dispatches; no logic of its own.

Run as: gradual --help

Each command group lives in gradual/commands/<name>.py. A UserError anywhere becomes one message
on stderr and exit code 2; any other exception is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from gradual.openmp import set_wait_policy

set_wait_policy()  # before torch loads (see gradual.openmp)

import typer
from rich.console import Console
from rich.markup import escape

from gradual.errors import UserError

app = typer.Typer(
    name="gradual",
    help="Knowledge-aware gradual fine-tuning: probe what a model knows, fine-tune in stages, measure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


COMMAND_MODULES = ("data", "model", "probe", "train", "run", "evaluate", "compare", "report", "export")


def register_commands(target: typer.Typer, names: tuple[str, ...] = COMMAND_MODULES) -> None:
    """Add each gradual.commands.<name> module's command or group to `target` (via its register(app)).

    A module that is missing or fails to import is an ImportError here, at startup: skipping it
    would ship a CLI that silently lacks a command, and that command's tests would then fail for
    the wrong reason, or be skipped.
    """
    for name in names:
        importlib.import_module(f"gradual.commands.{name}").register(target)


register_commands(app)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        rc = app(standalone_mode=False)
        if not rc:
            from gradual import distributed

            distributed.shutdown()  # under a launcher: every rank waits until main has written everything
        # Typer turns Ctrl-C into Exit(130) and, outside standalone mode, *returns* that code.
        if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
            if rc == 130:
                err_console.print("interrupted", style="yellow")
            sys.exit(rc)
    except UserError as exc:
        from gradual.distributed import is_main, rank

        # Under a launcher every rank reports (a rank's own failure must not go unseen); the main
        # process's line is the usual one.
        who = "" if is_main() else f" (rank {rank()})"
        err_console.print(f"[bold red]error{who}:[/] {escape(str(exc))}", highlight=False, markup=True,
                          soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", style="yellow")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        click_errors, aborts = _click_exception_types()
        if isinstance(exc, click_errors):
            exc.show()
            sys.exit(2)
        if isinstance(exc, aborts):
            sys.exit(130)
        message = world_error(exc)
        if message is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)


def world_error(exc: BaseException) -> str | None:
    """One line for what the world outside did (a full disk, a folder we may not write), or None for a
    bug. Writes are atomic, so such a failure leaves nothing half-written: rerunning is safe."""
    import errno

    from gradual.atomic import out_of_space

    if out_of_space(exc):
        where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        return f"no space left on device{where}; free space and run the command again (gradual run: with --resume)"
    # The folders and files a user names (--out, --data, GRADUAL_CACHE) are where these come from.
    if isinstance(exc, OSError) and exc.filename and exc.errno in (
            errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG):
        return f"{exc.filename}: {exc.strerror.lower() if exc.strerror else 'not allowed'} (check where --out and GRADUAL_CACHE point)"
    return None


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Usage-error and abort classes of the click typer runs on: typer >= 0.20 vendors click as
    typer._click, and a separately installed click (another tool's dependency) has its own classes,
    so both are checked."""
    errors: list[type] = []
    aborts: list[type] = []
    try:
        from typer import Abort as VendoredAbort
        from typer._click.exceptions import ClickException as VendoredError

        errors.append(VendoredError)
        aborts.append(VendoredAbort)
    except ModuleNotFoundError:
        pass
    try:
        from click.exceptions import Abort, ClickException

        errors.append(ClickException)
        aborts.append(Abort)
    except ModuleNotFoundError:
        pass
    return tuple(errors), tuple(aborts)


if __name__ == "__main__":
    main()
