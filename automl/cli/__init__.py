"""The ``automl`` command line: a thin Typer layer over the engine.

:func:`main` turns every user error (a :class:`automl.UserError` or a bad option caught by
click) into one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import sys

import typer

from automl._errors import UserError
from automl.cli._commands import app
from automl.cli import _plugin_cmds  # noqa: F401,E402 - adds `plugins new` and `plugins check`
from automl.cli import _result_cmds  # noqa: F401,E402 - report, dashboard, export, predict, compare


_commands_added: set[str] = set()


def _add_plugin_commands() -> None:
    """Let plugins add subcommands, each plugin once per process; a broken one gives a
    warning, never a broken CLI."""
    from automl._plugins import load_registry

    registry = load_registry()
    for impl in registry.pm.hook.register_commands.get_hookimpls():
        if impl.plugin_name in _commands_added:
            continue
        _commands_added.add(impl.plugin_name)
        try:
            impl.function(app=app)
        except Exception as exc:  # noqa: BLE001 - isolation is the point
            print(f"automl: warning: plugin {impl.plugin_name!r} could not add commands: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    if not args or args[0] not in getattr(command, "commands", {}):
        # Plugin commands (and the full --help) need the plugins; core commands start faster without.
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
