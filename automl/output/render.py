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


def _short_params(params: dict[str, Any], limit: int = 6) -> str:
    items = [f"{k}={fmt(v, 3)}" for k, v in list(params.items())[:limit]]
    if len(params) > limit:
        items.append("...")
    return " ".join(items)


def leaderboard_table(rows: list[dict[str, Any]], *, metric: str, direction: str,
                      baselines: dict[str, dict[str, Any]] | None = None, title: str = "",
                      ensemble: dict[str, Any] | None = None) -> Table:
    arrow = "higher is better" if direction == "maximize" else "lower is better"
    table = Table(title=title or None, caption=f"{metric}: {arrow}", show_lines=False)
    for col, kw in (("rank", {"justify": "right"}), ("trial", {"justify": "right"}), ("state", {}),
                    (f"val {metric}", {"justify": "right"}), (f"test {metric}", {"justify": "right"}),
                    ("time (s)", {"justify": "right"}), ("params / reason", {"overflow": "fold"})):
        table.add_column(col, **kw)
    if ensemble:
        members = " ".join(f"#{n}x{float(w):.2f}" for n, w in ensemble["members"].items())
        table.add_row("", "[dim]ens[/]", "[bold blue]ENSEMBLE[/]", fmt(ensemble.get("val_value")),
                      fmt(ensemble.get("test_value")), "-", f"[blue]{len(ensemble['members'])} members[/] {members}")
    for name, b in (baselines or {}).items():
        if "error" in b:
            table.add_row("", "[dim]base[/]", "BASELINE", "-", "-", "-", f"{name}: failed: {b['error']}")
        else:
            table.add_row("", "[dim]base[/]", "[magenta]BASELINE[/]", fmt(b.get("val")), fmt(b.get("test")),
                          "-", f"[magenta]{name}[/] {b.get('description', '')}")
    colors = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan", "WAITING": "dim"}
    for r in rows:
        detail = r["error"] if r["state"] == "FAIL" and r.get("error") else _short_params(r["params"])
        if r.get("retry_of") is not None:
            detail = f"(retry of {r['retry_of']}) {detail}"
        if r.get("cut"):
            detail = f"(cut by the {'time budget' if r['cut'] == 'budget' else '--trial-timeout'} " \
                     f"after {r.get('epochs')} epochs) {detail}"
        table.add_row(fmt(r["rank"]), str(r["number"]), f"[{colors.get(r['state'], 'white')}]{r['state']}[/]",
                      fmt(r["value"]), fmt(r["test_value"]), fmt(r["duration_s"], 3), detail)
    return table


def rows_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    keys = sorted({k for r in rows for k in r["params"]})
    writer = csv.writer(buf)
    writer.writerow(["rank", "number", "state", "value", "test_value", "duration_s", "error"] + keys)
    for r in rows:
        writer.writerow([r["rank"], r["number"], r["state"], r["value"], r["test_value"], r["duration_s"],
                         r["error"]] + [r["params"].get(k) for k in keys])
    return buf.getvalue()


def params_table(params: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for k, v in params.items():
        table.add_row(k, fmt(v, 5))
    return table


def confusion_table(best: dict[str, Any]) -> Table | None:
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
    table = Table(title="studies")
    for col in ("name", "plugin", "dataset", "metric", "trials", "best", "storage"):
        table.add_column(col, overflow="fold")
    for s in items:
        trials = f"{s['finished']}/{s['target']}" if "error" not in s else "-"
        table.add_row(s["name"], s.get("plugin") or "-", s.get("dataset") or "-", s.get("metric") or "-",
                      trials, fmt(s.get("best_value")), s.get("error") or s["storage"])
    return table


def plugins_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title="plugins")
    for col in ("name", "version", "datasets", "spaces", "metrics", "status"):
        table.add_column(col, overflow="fold")
    for p in items:
        status = "[green]ok[/]" if p["status"] == "ok" else f"[red]{p['status']}[/]: {p.get('error') or ''}"
        table.add_row(p["name"], p["version"], ", ".join(p["datasets"]), ", ".join(p["spaces"]),
                      ", ".join(p["metrics"]), status)
    return table


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
