"""The ``automl`` command line: a thin Typer layer over the engine.

:func:`main` turns every user error (a :class:`automl.UserError` or a bad option caught by
click) into one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys

import typer

from automl.cli import (
    plugin_cmds,  # noqa: F401 - adds `plugins new` and `plugins check`
    study_cmds,  # noqa: F401 - report, dashboard, export, predict, compare
)
from automl.cli.commands import app
from automl.errors import UserError

_commands_added: set[str] = set()
HELP_ARGS = ("--help", "-h")


def _add_plugin_commands() -> None:
    """Let plugins add subcommands, each plugin once per process; a broken one gives a
    warning, never a broken CLI."""
    from automl.plugins import load_registry

    for warning in load_registry().add_commands(app, _commands_added):
        print(f"automl: warning: {warning}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """The ``automl`` entry point: run one command and exit with its code (2 for bad input)."""
    try:
        _main(argv)
    finally:
        if argv is None:
            # The command is done and the process is exiting: a late Ctrl-C would otherwise
            # interrupt the interpreter's shutdown and print "Exception ignored ...".
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    if args and args[0] not in getattr(command, "commands", {}) and args[0] not in HELP_ARGS:
        # An unknown first word may be a plugin's command: only then are plugins imported,
        # so core commands and `automl --help` start without torch or any plugin.
        _add_plugin_commands()
        command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="automl", standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # a Ctrl-C outside the search loop (or a second one): out at once
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, as vendored by Typer
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `automl`: the help, not an error
            print(exc.format_message())
            sys.exit(0)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
