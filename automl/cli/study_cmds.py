"""Commands that use a finished study: report, dashboard, export, predict and compare."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from automl.cli.commands import ListFmt, ListFormatOpt, PluginPathOpt, StudyArg, app, console, err_console
from automl.errors import UserError

TrialOpt = Annotated[int | None, typer.Option("--trial", help="A trial whose weights were kept (default: the best).")]


@app.command()
def report(
    name: StudyArg,
    out: Annotated[str | None, typer.Option("--out", help="HTML file to write (default: "
                                                          "studies/NAME/report.html).")] = None,
) -> None:
    """Write one self-contained HTML report of a study (opens offline)."""
    from automl.output.report import write_report

    path = write_report(name, out)
    console.print(f"report of {name} written to {path} ({path.stat().st_size / 1e6:.2f} MB)")


@app.command()
def dashboard(
    name: StudyArg,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1 keeps it on this machine).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on; 0 picks a free one (its URL is printed).")] = 8080,
) -> None:
    """Serve optuna-dashboard on the study's storage (needs: pip install 'automl[dashboard]')."""
    from automl.study.store import make_storage, open_ref

    if not 0 <= port < 65536:
        raise UserError(f"--port must be between 0 (any free port) and 65535, not {port}")
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("optuna-dashboard is not installed; install it with: pip install 'automl[dashboard]' "
                        "(or pip install optuna-dashboard)") from None
    from wsgiref.simple_server import make_server

    ref = open_ref(name)
    study = ref.load()
    # optuna-dashboard's WSGI app on the standard library's server (what its run_server does
    # through bottle), bound here so that the URL printed has the port really bound, 0 included
    try:
        server = make_server(host, port, optuna_dashboard.wsgi(make_storage(ref.url)))
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    console.print(f"optuna-dashboard for study {name} ({ref.url}) at "
                  f"http://{host}:{server.server_port}/dashboard/studies/{study._study_id}  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def export(
    name: StudyArg,
    out: Annotated[str, typer.Option("--out", help="Folder to write the model to.")],
    trial: TrialOpt = None,
    single: Annotated[bool, typer.Option("--single", help="The best trial even where the study has an "
                                                          "ensemble.")] = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write ONNX (needs pip install 'automl[onnx]').")] = False,
    torchscript: Annotated[bool, typer.Option("--torchscript", help="Also write TorchScript (deprecated by "
                                                                    "torch; model.pt2 is written anyway).")] = False,
    plugin_path: PluginPathOpt = [],
) -> None:
    """Export the study's model (its ensemble where it has one): weights, a torch.export
    program (model.pt2), config, preprocessing, reproducibility record."""
    from automl.output.export import export as do_export

    result = do_export(name, out, trial, onnx, single, torchscript, plugin_path)
    what = "the ensemble" if result["trial"] == "ensemble" else f"trial {result['trial']}"
    console.print(f"exported {what} of {name} to {result['dir']}: {', '.join(result['files'])}")
    for note in result["notes"]:
        err_console.print(f"[yellow]note:[/] {note}")


@app.command()
def ensemble(
    name: StudyArg,
    size: Annotated[int, typer.Option("--size", help="Best trials to consider (0: drop the ensemble).")] = 20,
    plugin_path: PluginPathOpt = [],
) -> None:
    """Build (or rebuild) a study's ensemble: greedy selection over its best trials'
    validation predictions, then its test score."""
    from automl.search.session import rebuild_ensemble

    record = rebuild_ensemble(name, size, plugin_path)
    if record is None:
        console.print(f"study {name} has no ensemble: fewer than two of its best {size} trials stored "
                      "numeric predictions")
        return
    members = ", ".join(f"#{n} x{w:.2f}" for n, w in record["members"].items())
    console.print(f"ensemble of {name}: {members}; validation {record['metric']} {record['val_value']:.4f}, "
                  f"test {record['test_value']:.4f}")


@app.command()
def predict(
    source: Annotated[str, typer.Argument(help="A study name or a folder written by automl "
                                               "export.", show_default=False)],
    data: Annotated[str, typer.Option("--data", help="New data, read by the plugin's own loader.")],
    out: Annotated[str | None, typer.Option("--out", help="CSV file to write (default: standard output).")] = None,
    trial: TrialOpt = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Dataset option key=value (e.g. "
                                                                      "text_column=body).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 1024,
    plugin_path: PluginPathOpt = [],
) -> None:
    """Predict on new data with the best (or an exported) model; writes CSV."""
    from automl.output.predict import run_predict

    result, text = run_predict(source, data, trial=trial, options=option or [], out=out, batch_size=batch_size,
                               plugin_paths=plugin_path)
    if out is None:
        sys.stdout.write(text)
    counts = ", ".join(f"{k}: {v}" for k, v in result.summary.items())
    err_console.print(f"{len(result.rows)} predictions{f' to {out}' if out else ''}{f' ({counts})' if counts else ''}")


@app.command()
def compare(
    names: Annotated[list[str], typer.Argument(help="Two or more study names.", show_default=False)],
    format: ListFormatOpt = ListFmt.table,
) -> None:
    """Compare studies side by side: best values, trials, time, and how their specs differ."""
    from automl.output.compare import compare as do_compare
    from automl.output.render import dump_json, fmt, records_csv

    result = do_compare(names)
    if format == ListFmt.json:
        sys.stdout.write(dump_json(result) + "\n")
        return
    if format == ListFmt.csv:
        sys.stdout.write(records_csv(result["studies"]))
        return
    table = Table(title="studies compared")
    table.add_column("")
    for s in result["studies"]:
        table.add_column(s["name"], overflow="fold")
    for key in ("plugin", "dataset", "spaces", "metric", "direction", "objectives", "constraints", "best_value",
                "best_test_value", "best_trial", "best_latency_ms", "best_size_mb", "front_size", "trials", "target",
                "complete", "pruned", "fail", "wall_time_s", "trial_time_s"):
        table.add_row(key.replace("_", " "), *[fmt(s.get(key)) for s in result["studies"]])
    console.print(table)
    if result["differences"]:
        diff = Table(title="spec fields that differ")
        diff.add_column("field")
        for s in result["studies"]:
            diff.add_column(s["name"], overflow="fold")
        for key, values in result["differences"].items():
            diff.add_row(key, *[fmt(v) for v in values])
        console.print(diff)
    else:
        console.print("the specs are the same")
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}")
