"""Leaderboards and study summaries as plain data (the CLI renders them)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from automl.study.store import BASELINE_KEY, SPEC_KEY, SUMMARY_KEY, TEST_KEY, StudyRef

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
            "epochs": (t.user_attrs.get("run") or {}).get("epochs_run"),
            "device": (t.user_attrs.get("worker") or {}).get("device"),
            "error": t.user_attrs.get("error"),
            "retry_of": t.user_attrs.get("retry_of"),
        })
    return rows


def baselines(study: optuna.Study) -> dict[str, dict[str, Any]]:
    return dict(study.user_attrs.get(BASELINE_KEY, {}))


def summary(ref: StudyRef, study: optuna.Study) -> dict[str, Any]:
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
