"""``automl plugins new`` and ``automl plugins check``: writing and testing a plugin.

Each command parses, calls one library function (:func:`automl.testing.scaffold.scaffold`,
:func:`automl.testing.check_plugin`) and renders the result.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from automl.cli.commands import ListFmt, ListFormatOpt, PluginPathOpt, console, plugins_app
from automl.errors import UserError

STATUS_STYLE = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}


@plugins_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Plugin name: lowercase letters, digits and _, starting with a letter.",
                                        show_default=False)],
    directory: Annotated[str, typer.Option("--dir", help="Folder to create the project in (as DIR/NAME).")] = ".",
) -> None:
    """Create an installable plugin project: a dataset, a search space, a metric, tests and a README."""
    from automl.testing.scaffold import scaffold

    path = scaffold(name, directory)
    for line in (f"created plugin project [cyan]{path}[/] (distribution automl-{name.replace('_', '-')}, "
                 f"plugin {name})", "next:", f"  pip install -e {path}", f"  pytest {path}",
                 f"  automl search --plugin {name} --trials 3"):
        console.print(line, soft_wrap=True)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"bad {what} {raw!r}: expected DATASET=PATH")
        out[key.strip()] = value.strip()
    return out


def _options(values: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for raw in values:
        dataset, sep, rest = raw.partition(":")
        key, sep2, value = rest.partition("=")
        if not sep or not sep2 or not dataset.strip() or not key.strip():
            raise UserError(f"bad --option {raw!r}: expected DATASET:KEY=VALUE")
        out.setdefault(dataset.strip(), {})[key.strip()] = value.strip()
    return out


@plugins_app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="The plugin to check (see: automl plugins).", show_default=False)],
    data: Annotated[list[str] | None, typer.Option("--data", help="Sample data for a dataset that needs --data: "
                                                      "DATASET=PATH; repeatable.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="A dataset option: DATASET:KEY=VALUE; "
                                                        "repeatable.")] = None,
    format: ListFormatOpt = ListFmt.table,
    plugin_path: PluginPathOpt = [],
) -> None:
    """Run the conformance kit on a plugin: exit 0 when every check passes or is skipped, 1 when one fails."""
    from automl.testing import check_plugin

    results = check_plugin(name, sample_data=_pairs(data or [], "--data"), options=_options(option or []),
                           plugin_paths=plugin_path)
    failed = sum(r.status == "fail" for r in results)
    if format == ListFmt.json:
        sys.stdout.write(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    elif format == ListFmt.csv:
        from automl.output.render import records_csv

        sys.stdout.write(records_csv([asdict(r) for r in results]))
    else:
        table = Table(title=f"conformance of plugin {name}")
        for col, kw in (("check", {}), ("object", {"overflow": "fold"}), ("result", {}),
                        ("reason", {"overflow": "fold"}), ("s", {"justify": "right"})):
            table.add_column(col, **kw)
        for r in results:
            table.add_row(r.check, r.target, STATUS_STYLE[r.status], r.reason, f"{r.seconds:.2f}")
        console.print(table)
        passed = sum(r.status == "pass" for r in results)
        skipped = sum(r.status == "skip" for r in results)
        verdict = "[bold red]FAILED[/]" if failed else "[bold green]OK[/]"
        console.print(f"{verdict}: {passed} passed, {failed} failed, {skipped} skipped")
    if failed:
        raise typer.Exit(code=1)
