"""Rich rendering: the only module that draws tables and progress."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from automl.backends.base import Snapshot
from automl.study.spec import AS_MANY_AS_FIT


def fmt(value: Any, digits: int = 4) -> str:
    """A value as a table shows it: ``-`` for none, floats with ``digits`` decimals (or
    significant digits when tiny or huge)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        tiny_or_huge = abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3)
        return f"{value:.{digits}g}" if tiny_or_huge else f"{value:.{digits}f}"
    return str(value)


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a number of seconds."""
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class SearchProgress:
    """Live progress of a search: trials finished of the target, best so far, the running
    trials and their epochs, and the time: elapsed, or elapsed of the budget (``--timeout``),
    counted from ``started`` (when the command started)."""

    def __init__(self, console: Console, target: int, metric: str, *, started: float | None = None,
                 budget_s: float | None = None) -> None:
        self.metric, self.started, self.budget_s = metric, started, budget_s
        columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[status]}")]
        if started is None:
            columns.append(TimeElapsedColumn())
        self.progress = Progress(*columns, console=console, transient=False)
        self.task = self.progress.add_task("search", total=target, status="")

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def update(self, snap: Snapshot) -> None:
        """Redraw from a snapshot of the study (the backend calls it as trials progress)."""
        c = snap.counts
        status = (f"best {self.metric} [bold green]{fmt(snap.best_value)}[/] (#{snap.best_number})  "
                  if snap.best_value is not None else "")
        running = " ".join(f"#{n}@{e}" for n, e in sorted(snap.running.items())[:4])
        status += f"running {c.get('RUNNING', 0)}{f' ({running} epochs)' if running else ''}  "
        status += f"pruned {c.get('PRUNED', 0)}  failed {c.get('FAIL', 0)}"
        if self.started is not None:
            elapsed = time.time() - self.started
            status += f"  {clock(elapsed)}" + (f" / {clock(self.budget_s)} budget" if self.budget_s else "")
        total = snap.target if snap.target < AS_MANY_AS_FIT else None  # a budget decides: no bar of 100000
        self.progress.update(self.task, completed=min(snap.finished, snap.target), total=total, status=status)


#: Longest a parameter value is shown in a table that must fit a terminal; full values are in
#: ``--best``, ``--format json`` and ``--format csv``.
PARAM_CELL = 14
#: Longest the header of a metric beside the study's is shown when the table must fit a
#: terminal (``balanced_accuracy`` as ``balance…``); the caption names every metric.
METRIC_HEAD = 8


def param_order(rows: list[dict[str, Any]]) -> list[str]:
    """Every parameter of ``rows``, the model's first: ``space``, then the space's own
    (``<space>.<name>``, as :mod:`automl.study.sampling` stores them), then the training
    parameters, each group in the order the trials first suggested them."""
    seen = list(dict.fromkeys(k for r in rows for k in r.get("params", {})))
    return ([k for k in seen if k == "space"] + [k for k in seen if "." in k]
            + [k for k in seen if k != "space" and "." not in k])


def varying_params(rows: list[dict[str, Any]]) -> list[str]:
    """The parameters whose value differs between trials (or that some trials lack), model
    parameters first; every parameter when there is at most one trial with parameters."""
    with_params = [r["params"] for r in rows if r.get("params")]
    keys = param_order(rows)
    if len(with_params) < 2:
        return keys
    return [k for k in keys if len({json.dumps(p.get(k, "<absent>"), default=str) for p in with_params}) > 1]


def metric_names(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """The study's metric, then every other metric the trials recorded on validation."""
    return list(dict.fromkeys([metric, *(m for r in rows for m in r.get("metrics") or {})]))


def _headers(params: list[str]) -> dict[str, str]:
    """A column header per parameter: without its ``<space>.`` prefix where that name is
    still unique among the shown columns."""
    short = {k: k.split(".", 1)[1] if "." in k else k for k in params}
    counts: dict[str, int] = {}
    for v in short.values():
        counts[v] = counts.get(v, 0) + 1
    return {k: v if counts[v] == 1 else k for k, v in short.items()}


#: The deployment figures a leaderboard row carries (``row["deploy"]``), in column order;
#: ``leaderboard --columns`` takes them beside parameter names.
FIGURE_COLUMNS = ("params", "size_mb", "size_bytes", "latency_ms", "latency_p95_ms", "latency_cpu_ms", "throughput",
                  "latency_threads", "latency_device")


def figure_names(rows: list[dict[str, Any]]) -> list[str]:
    """The deployment figures the rows recorded, in :data:`FIGURE_COLUMNS` order."""
    seen = {k for r in rows for k in (r.get("deploy") or {})}
    return [k for k in FIGURE_COLUMNS if k in seen]


def _misses(violations: dict[str, float]) -> str:
    return "misses " + ", ".join(f"{k} by {fmt(float(v), 3)}" for k, v in violations.items())


def _note(r: dict[str, Any]) -> str:
    parts = []
    if r.get("rejected"):
        parts.append(str(r["rejected"]))
    elif r.get("feasible") is False:
        parts.append(_misses(r.get("violations") or {}))
    if r.get("retry_of") is not None:
        parts.append(f"retry of {r['retry_of']}")
    if r.get("cut"):
        parts.append(f"cut by the {'time budget' if r['cut'] == 'budget' else '--trial-timeout'} "
                     f"after {r.get('epochs')} epochs")
    if r["state"] == "FAIL" and r.get("error"):
        parts.append(str(r["error"]))
    return "; ".join(parts)


def leaderboard_table(rows: list[dict[str, Any]], *, metric: str, direction: str,
                      baselines: dict[str, dict[str, Any]] | None = None, title: str = "",
                      ensemble: dict[str, Any] | None = None, params: list[str] | None = None,
                      metrics: list[str] | None = None, width: int | None = None,
                      figures: list[str] | None = None) -> Table:
    """The leaderboard as one line per trial: rank, trial, state, the study's metric on
    validation, the other metrics (``metrics``: which; default all recorded), the test score,
    the time, then one column per parameter (``params``: which; default those that vary,
    :func:`varying_params`) and a note (retry, cut, the error of a failed trial).

    Columns are separated by spaces with no box, so a piped table splits on whitespace. Cells
    never wrap: when the table is wider than ``width`` (``None``: no limit), parameter values
    are cut at ``PARAM_CELL`` characters (with an ellipsis), the parameters that still do not
    fit are left out, and the caption says how many.

    ``figures``: deployment figures shown after the time (``latency_ms``, ``size_mb``...). A
    multi-objective study's rows get a ``front`` column (``*``: on the Pareto front), a
    constrained study's a ``feasible`` column (``yes`` / ``NO``, and in the note what an
    infeasible trial misses)."""
    arrow = "higher is better" if direction == "maximize" else "lower is better"
    shown_metrics = metrics if metrics is not None else metric_names(rows, metric)
    others = [m for m in shown_metrics if m != metric]
    keys = params if params is not None else varying_params(rows)
    heads = _headers(keys)
    figs = list(figures or [])
    marks = [m for m in ("front", "feasible") if any(r.get(m) is not None for r in rows)]
    fixed = ["rank", "trial", "state", *marks, metric, *others, "test", "s", *figs]
    lines: list[tuple[list[str], dict[str, str], str, str]] = []  # fixed cells, params, note, style
    if ensemble:
        members = " ".join(f"#{n}x{float(w):.2f}" for n, w in ensemble["members"].items())
        ens_figs = ensemble.get("deploy") or {}
        ens_ok = {"feasible": "yes" if ensemble.get("feasible", True) else "NO", "front": "-"}
        lines.append((["", "ens", "ENSEMBLE", *[ens_ok[m] for m in marks], fmt(ensemble.get("val_value")),
                       *["-"] * len(others), fmt(ensemble.get("test_value")), "-",
                       *[fmt(ens_figs.get(f)) for f in figs]], {},
                      f"{len(ensemble['members'])} members {members}", "blue"))
    for name, b in (baselines or {}).items():
        note = f"{name}: failed: {b['error']}" if "error" in b else f"{name} {b.get('description', '')}"
        lines.append((["", "base", "BASELINE", *["-"] * len(marks), fmt(b.get("val")), *["-"] * len(others),
                       fmt(b.get("test")), "-", *["-"] * len(figs)], {}, note, "magenta"))
    colors = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan", "WAITING": "dim"}
    for r in rows:
        ms = r.get("metrics") or {}
        deploy = r.get("deploy") or {}
        shown = {"front": {True: "*", False: "-", None: "-"}[r.get("front")],
                 "feasible": {True: "yes", False: "NO", None: "-"}[r.get("feasible")]}
        cells = [fmt(r["rank"]), str(r["number"]), r["state"], *[shown[m] for m in marks], fmt(r["value"]),
                 *[fmt(ms.get(m)) for m in others], fmt(r["test_value"]), fmt(r["duration_s"], 3),
                 *[fmt(deploy.get(f)) for f in figs]]
        values = {k: fmt(r["params"][k], 3) if k in r["params"] else "-" for k in keys}
        lines.append((cells, values, _note(r), colors.get(r["state"], "")))

    def col_width(header: str, cells: list[str]) -> int:
        return max([len(header), *map(len, cells)])

    fixed_w = sum(col_width(h, [ln[0][i] for ln in lines]) + 1 for i, h in enumerate(fixed))
    param_w = {k: col_width(heads[k], [ln[1].get(k, "") for ln in lines]) for k in keys}
    notes = any(ln[2] for ln in lines)
    note_w = col_width("note", [ln[2] for ln in lines]) if notes else 0
    hidden: list[str] = []
    cap = note_cap = None
    metric_cap: int | None = None
    if width is not None and fixed_w + sum(w + 1 for w in param_w.values()) + note_w > width:
        # Too wide: the other metrics' headers are cut to METRIC_HEAD (the caption names them
        # in full), parameter values to PARAM_CELL, and the parameters that still do not fit
        # are left out (in order, the model's first; the caption names those left out).
        metric_cap = METRIC_HEAD
        fixed_w = sum(col_width(h[:metric_cap] if h in others else h, [ln[0][i] for ln in lines]) + 1
                      for i, h in enumerate(fixed))
        cap, used, kept = PARAM_CELL, fixed_w, []
        room = width - (min(note_w, 12) if notes else 0)
        for k in keys:
            w = min(param_w[k], cap) + 1
            if used + w <= room:
                kept.append(k)
                used += w
            else:
                hidden.append(k)
        keys = kept
        note_cap = max(4, width - used)
    caption = f"{metric} on validation ({arrow}); test: {metric} on the test split"
    if others:
        caption += f"; {', '.join(others)} on validation"
    if "front" in marks:
        caption += "; front *: on the Pareto front (listed first)"
    if "feasible" in marks:
        caption += "; feasible: meets every --constraint"
    if hidden:
        caption += (f"; {len(hidden)} more parameter(s) not shown ({', '.join(heads[k] for k in hidden)}): "
                    "--columns to choose, --best, --format json or csv for all")
    table = Table(title=title or None, caption=caption, box=None, padding=(0, 1), collapse_padding=True,
                  pad_edge=False, show_edge=False, header_style="bold")
    for h in fixed:
        table.add_column(h, justify="left" if h == "state" else "right", no_wrap=True, overflow="ellipsis",
                         max_width=max(metric_cap, *[len(ln[0][fixed.index(h)]) for ln in lines])
                         if metric_cap and h in others else None)
    for k in keys:
        table.add_column(heads[k], no_wrap=True, overflow="ellipsis", max_width=cap)
    if notes:
        table.add_column("note", no_wrap=True, overflow="ellipsis", max_width=note_cap)
    for cells, values, note, style in lines:
        row = [*cells, *[values.get(k, "") for k in keys]] + ([note] if notes else [])
        row[2] = f"[{style}]{row[2]}[/]" if style else row[2]
        table.add_row(*row)
    return table


def rows_csv(rows: list[dict[str, Any]], metric: str | None = None) -> str:
    """The leaderboard as CSV: one line per trial, the Pareto front and feasibility marks,
    every deployment figure, every metric (``val_<name>``) and every parameter, with full
    values."""
    buf = io.StringIO()
    keys = param_order(rows)
    names = metric_names(rows, metric) if metric else \
        list(dict.fromkeys(m for r in rows for m in r.get("metrics") or {}))
    writer = csv.writer(buf)
    figs = figure_names(rows)
    writer.writerow(["rank", "number", "state", "value", "test_value", "duration_s", "epochs_run", "retry_of", "cut",
                     "error", "front", "feasible", "violations", "rejected", "values"]
                    + figs + [f"val_{m}" for m in names] + keys)
    for r in rows:
        ms, deploy = r.get("metrics") or {}, r.get("deploy") or {}
        writer.writerow([r["rank"], r["number"], r["state"], r["value"], r["test_value"], r["duration_s"],
                         r.get("epochs"), r.get("retry_of"), r.get("cut"), r["error"], r.get("front"),
                         r.get("feasible"), json.dumps(r["violations"]) if r.get("violations") else None,
                         r.get("rejected"),
                         ";".join(map(str, r["values"])) if r.get("values") else None]
                        + [deploy.get(f) for f in figs] + [ms.get(m) for m in names]
                        + [r["params"].get(k) for k in keys])
    return buf.getvalue()


def params_table(params: dict[str, Any], title: str) -> Table:
    """A trial's parameters, one per line, in full."""
    table = Table(title=title)
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for k, v in params.items():
        table.add_row(k, fmt(v, 5))
    return table


def confusion_table(best: dict[str, Any]) -> Table | None:
    """The best trial's confusion matrix on the test split, or ``None`` when it has none."""
    matrix, names = best.get("confusion_matrix"), best.get("class_names")
    if not matrix:
        return None
    table = Table(title=f"confusion matrix of trial {best['number']} on the test split (rows: true)")
    table.add_column("")
    for n in names:
        table.add_column(str(n), justify="right")
    for name, row in zip(names, matrix):
        table.add_row(str(name), *[str(v) for v in row])
    return table


def studies_table(items: list[dict[str, Any]]) -> Table:
    """``automl studies``: one line per stored study."""
    table = Table(title="studies")
    for col in ("name", "plugin", "dataset", "metric", "trials", "best", "storage"):
        table.add_column(col, overflow="fold")
    for s in items:
        trials = f"{s['finished']}/{s['target']}" if "error" not in s else "-"
        table.add_row(s["name"], s.get("plugin") or "-", s.get("dataset") or "-", s.get("metric") or "-",
                      trials, fmt(s.get("best_value")), s.get("error") or s["storage"])
    return table


def plugins_table(items: list[dict[str, Any]]) -> Table:
    """``automl plugins``: one line per plugin, broken ones with the reason."""
    table = Table(title="plugins")
    for col in ("name", "version", "datasets", "spaces", "metrics", "status"):
        table.add_column(col, overflow="fold")
    for p in items:
        status = "[green]ok[/]" if p["status"] == "ok" else f"[red]{p['status']}[/]: {p.get('error') or ''}"
        table.add_row(p["name"], p["version"], ", ".join(p["datasets"]), ", ".join(p["spaces"]),
                      ", ".join(p["metrics"]), status)
    return table


def records_csv(items: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Records as CSV (the ``--format csv`` of the listing commands): one column per key, in
    first-seen order (``columns``: these, also when there is no record); lists joined with
    ``;``, mappings as JSON."""
    columns = columns or list(dict.fromkeys(k for item in items for k in item))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for item in items:
        cells = []
        for key in columns:
            value = item.get(key)
            if isinstance(value, (list, tuple)):
                value = ";".join(map(str, value))
            elif isinstance(value, dict):
                value = json.dumps(value, default=str)
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return buf.getvalue()


def dump_json(data: Any) -> str:
    """``--format json``: indented, anything not JSON written as its text."""
    return json.dumps(data, indent=2, default=str)
