"""csv: learning curves and trial results as CSV files (``--log csv``; no extra dependency).

Under the study's folder it writes:

- ``logs/csv/trial_<N>.csv``: one row per validated epoch of trial N:
  ``trial, epoch, train_loss, value, metric, time``;
- ``logs/csv/trials.csv``: one row per finished trial: ``trial, state, value, duration_s,
  error, params, config`` (params and config as JSON);
- ``logs/csv/study.csv``: one row each time a search or resume ends: ``time, reason,
  n_complete, best_value, best_params``.

Worker processes append to the shared files at once, so each row is written under an
exclusive ``flock`` with the header written by whoever creates the file.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import time
from pathlib import Path
from typing import Any

from automl import EpochEvent, PluginInfo, StudyEvent, TrialEvent, hookimpl

EPOCH_COLUMNS = ("trial", "epoch", "train_loss", "value", "metric", "time")
TRIAL_COLUMNS = ("trial", "state", "value", "duration_s", "error", "params", "config")
STUDY_COLUMNS = ("time", "reason", "n_complete", "best_value", "best_params")


def log_dir(study_dir: str) -> Path:
    """The folder this logger writes to: ``STUDY/logs/csv``."""
    return Path(study_dir) / "logs" / "csv"


def append_row(path: Path, columns: tuple[str, ...], row: list[Any]) -> None:
    """Append one CSV row to ``path`` (writing the header first if the file is new), holding
    an exclusive lock so that rows of concurrent worker processes never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    with open(path, "a", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0, io.SEEK_END)
            if fh.tell() == 0:
                writer.writerow(columns)
            writer.writerow(row)
            fh.write(buf.getvalue())
            fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@hookimpl
def plugin_info() -> PluginInfo:
    return PluginInfo(name="csv", description="CSV learning curves and trial results under STUDY/logs/csv",
                      opt_in=True)


@hookimpl
def on_epoch_end(event: EpochEvent) -> None:
    append_row(log_dir(event.study_dir) / f"trial_{event.number}.csv", EPOCH_COLUMNS,
               [event.number, event.epoch, event.train_loss, event.value, event.metric, round(time.time(), 3)])


@hookimpl
def on_trial_end(event: TrialEvent) -> None:
    append_row(log_dir(event.study_dir) / "trials.csv", TRIAL_COLUMNS,
               [event.number, event.state, "" if event.value is None else event.value,
                "" if event.duration_s is None else round(event.duration_s, 3), event.error or "",
                json.dumps(event.params, sort_keys=True), json.dumps(event.config, sort_keys=True)])


@hookimpl
def on_study_end(event: StudyEvent) -> None:
    append_row(log_dir(event.study_dir) / "study.csv", STUDY_COLUMNS,
               [round(time.time(), 3), event.reason, event.n_complete,
                "" if event.best_value is None else event.best_value, json.dumps(event.best_params, sort_keys=True)])
