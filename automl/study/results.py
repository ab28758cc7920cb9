"""Leaderboards and study summaries as plain data (the CLI renders them)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from automl.study.store import BASELINE_KEY, ENSEMBLE_KEY, SPEC_KEY, SUMMARY_KEY, TEST_KEY, StudyRef

_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2,
                TrialState.WAITING: 3, TrialState.FAIL: 4}


def leaderboard(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial, best first: complete trials by value (in the study's direction), then
    pruned (by their last reported value), running, waiting and failed ones. ``rank`` is
    given to complete trials only."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    tests = study.user_attrs.get(TEST_KEY, {})
    trials = study.get_trials(deepcopy=False)

    def value_of(t: optuna.trial.FrozenTrial) -> float | None:
        if t.value is not None:
            return t.value
        if t.state == TrialState.PRUNED and t.intermediate_values:
            return t.intermediate_values[max(t.intermediate_values)]
        return None

    def key(t: optuna.trial.FrozenTrial):
        v = value_of(t)
        return (_STATE_ORDER.get(t.state, 5), v is None, -(v or 0) if maximize else (v or 0), t.number)

    rows, rank = [], 0
    for t in sorted(trials, key=key):
        if t.state == TrialState.COMPLETE:
            rank += 1
        duration = t.duration.total_seconds() if t.duration is not None else None
        rows.append({
            "rank": rank if t.state == TrialState.COMPLETE else None,
            "number": t.number,
            "state": t.state.name,
            "value": value_of(t),
            "test_value": tests.get(str(t.number)),
            "duration_s": round(duration, 3) if duration is not None else None,
            "params": dict(t.params),
            "metrics": dict((t.user_attrs.get("run") or {}).get("metrics") or {}),
            "epochs": (t.user_attrs.get("run") or {}).get("epochs_run"),
            "device": (t.user_attrs.get("worker") or {}).get("device"),
            "ray_node": ((t.user_attrs.get("worker") or {}).get("ray") or {}).get("node_id"),  # Ray backend
            "error": t.user_attrs.get("error"),
            "retry_of": t.user_attrs.get("retry_of"),
            "cut": (t.user_attrs.get("run") or {}).get("cut"),
        })
    return rows


def baselines(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """The baseline rows fitted when the study was created: name -> val, test, description."""
    return dict(study.user_attrs.get(BASELINE_KEY, {}))


def ensemble(study: optuna.Study) -> dict[str, Any] | None:
    """The study's ensemble, when it has one of two or more members: ``members`` (trial number
    -> weight), ``val_value``, ``test_value``, ``val_loss``, ``candidates``."""
    record = study.user_attrs.get(ENSEMBLE_KEY)
    return record if record and len(record.get("members") or {}) >= 2 else None


def summary(ref: StudyRef, study: optuna.Study) -> dict[str, Any]:
    """One study as ``automl studies`` lists it: plugin, dataset, metric, trials by state
    against the target, best value, storage URL and the data summary."""
    spec = study.user_attrs.get(SPEC_KEY, {})
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    best = None
    if complete:
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        best = (max if maximize else min)(t.value for t in complete)
    return {
        "name": ref.name,
        "plugin": spec.get("plugin"),
        "dataset": spec.get("dataset"),
        "metric": spec.get("metric"),
        "direction": spec.get("direction"),
        "complete": len(complete),
        "finished": finished,
        "target": spec.get("trials"),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "best_value": best,
        "storage": ref.url,
        "data_summary": study.user_attrs.get(SUMMARY_KEY, {}),
    }


def run_summary(study: optuna.Study, since: float) -> dict[str, Any]:
    """How a run spent its time: the trials it started (``since``: the run's start,
    ``time.time()``) by outcome - finished, cut by the time budget or ``--trial-timeout``
    (kept as finished, with their best epoch), pruned, failed, still running - and the
    seconds per epoch they measured."""
    import datetime

    start = datetime.datetime.fromtimestamp(since)
    out = {"started": 0, "finished": 0, "cut": 0, "pruned": 0, "failed": 0, "running": 0}
    per_epoch: list[float] = []
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is None or t.datetime_start < start:
            continue
        out["started"] += 1
        run = t.user_attrs.get("run") or {}
        if t.state == TrialState.COMPLETE:
            out["cut" if run.get("cut") else "finished"] += 1
        elif t.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif t.state == TrialState.FAIL:
            out["failed"] += 1
        else:
            out["running"] += 1
        if t.duration is not None and run.get("epochs_run"):
            per_epoch.append(t.duration.total_seconds() / run["epochs_run"])
    out["seconds_per_epoch"] = round(sorted(per_epoch)[len(per_epoch) // 2], 2) if per_epoch else None
    return out
