"""Leaderboards and study summaries as plain data (the CLI renders them).

Ranking (:func:`rank`, which finalize's selection also uses): with ``--constraint``, trials
that meet every constraint come before those that do not (these by how far they miss);
in a multi-objective study (``--objective`` twice or more) the Pareto front comes first
(Optuna's non-dominated feasible trials, as ``study.best_trials`` gives them), each group by
its primary (first) objective; single-objective trials by value in the study's direction.
Ties go to the lower validation loss, then to the earlier trial.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from automl.study.store import BASELINE_KEY, ENSEMBLE_KEY, SPEC_KEY, SUMMARY_KEY, TEST_KEY, StudyRef

_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2,
                TrialState.WAITING: 3, TrialState.FAIL: 4}


def is_multi(study: optuna.Study) -> bool:
    """Whether the study has several objectives."""
    return len(study.directions) > 1


def violations(t: optuna.trial.FrozenTrial) -> dict[str, float]:
    """The constraints trial ``t`` does not meet, with by how much (Optuna's constraint
    values above zero)."""
    return {k: v for k, v in t.constraints.items() if v > 0}


def metric_value(study: optuna.Study, t: optuna.trial.FrozenTrial) -> float | None:
    """The study metric's validation value of a complete trial: its value, or in a
    multi-objective study the metric's objective value or recorded validation metric."""
    if not t.values:
        return None
    if not is_multi(study):
        return t.values[0]
    spec = study.user_attrs.get(SPEC_KEY) or {}
    objectives, metric = spec.get("objectives") or [], spec.get("metric")
    if metric in objectives:
        return t.values[objectives.index(metric)]
    got = ((t.user_attrs.get("run") or {}).get("metrics") or {}).get(metric)
    return float(got) if got is not None else None


def front(study: optuna.Study, trials: list[optuna.trial.FrozenTrial] | None = None) -> list[optuna.trial.FrozenTrial]:
    """The Pareto front of a multi-objective study among ``trials`` (default: all): the
    feasible complete trials no other feasible trial dominates (``study.best_trials``);
    empty for a single-objective study."""
    if not is_multi(study):
        return []
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    done = [t for t in (trials if trials is not None else study.get_trials(deepcopy=False))
            if t.state == TrialState.COMPLETE and t.values]
    return _get_pareto_front_trials_by_trials(done, study.directions, consider_constraint=True)


def rank(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The complete trials of ``trials`` with values, best first (see the module docstring)."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    on_front = {t.number for t in front(study, done)}

    def key(t: optuna.trial.FrozenTrial) -> tuple:
        loss = (t.user_attrs.get("run") or {}).get("val_loss")
        missed = sum(violations(t).values())
        primary = t.values[0]
        return (t.number not in on_front, missed > 0, missed, -primary if maximize else primary,
                loss if loss is not None else float("inf"), t.number)

    return sorted(done, key=key)


def leaderboard(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial, best first: complete trials as :func:`rank` orders them, then pruned (by
    their last reported value), running, waiting and failed ones. ``rank`` is given to
    complete trials only. ``value`` is the study metric's (in a multi-objective study too;
    ``values`` has every objective's), ``deploy`` the trial's deployment figures; with
    constraints ``feasible`` and ``violations`` (the constraints it misses, by how much), also
    for a pruned trial ``rejected`` before training (why: it clearly missed a constraint
    measured untrained, :meth:`automl.search.objective.Objective._reject_before_training`); in
    a multi-objective study ``front`` (on the Pareto front)."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    multi = is_multi(study)
    constrained = bool((study.user_attrs.get(SPEC_KEY) or {}).get("constraints"))
    tests = study.user_attrs.get(TEST_KEY, {})
    trials = study.get_trials(deepcopy=False)
    ranked = rank(study, trials)
    position = {t.number: i for i, t in enumerate(ranked)}
    on_front = {t.number for t in front(study, ranked)}

    def value_of(t: optuna.trial.FrozenTrial) -> float | None:
        if t.values:
            return metric_value(study, t)
        if t.state == TrialState.PRUNED and t.intermediate_values:
            return t.intermediate_values[max(t.intermediate_values)]
        return None

    def key(t: optuna.trial.FrozenTrial):
        v = value_of(t)
        return (_STATE_ORDER.get(t.state, 5), position.get(t.number, 0), v is None,
                -(v or 0) if maximize else (v or 0), t.number)

    rows, rank_no = [], 0
    for t in sorted(trials, key=key):
        if t.state == TrialState.COMPLETE:
            rank_no += 1
        duration = t.duration.total_seconds() if t.duration is not None else None
        complete = t.state == TrialState.COMPLETE
        run = t.user_attrs.get("run") or {}
        rejected = t.state == TrialState.PRUNED and bool(run.get("rejected"))  # measured untrained, not trained
        rows.append({
            "rank": rank_no if complete else None,
            "number": t.number,
            "state": t.state.name,
            "value": value_of(t),
            "values": list(t.values) if multi and t.values else None,
            "front": (t.number in on_front) if multi and complete else None,
            "feasible": (not violations(t)) if constrained and (complete or rejected) else None,
            "violations": violations(t) if constrained and (complete or rejected) else None,
            "rejected": run.get("rejected"),
            "deploy": dict(run.get("deploy") or {}),
            "test_value": tests.get(str(t.number)),
            "duration_s": round(duration, 3) if duration is not None else None,
            "params": dict(t.params),
            "metrics": dict(run.get("metrics") or {}),
            "epochs": run.get("epochs_run"),
            "device": (t.user_attrs.get("worker") or {}).get("device"),
            "ray_node": ((t.user_attrs.get("worker") or {}).get("ray") or {}).get("node_id"),  # Ray backend
            "error": t.user_attrs.get("error"),
            "retry_of": t.user_attrs.get("retry_of"),
            "cut": run.get("cut"),
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
    ranked = rank(study, complete)
    best = metric_value(study, ranked[0]) if ranked else None
    return {
        "name": ref.name,
        "plugin": spec.get("plugin"),
        "dataset": spec.get("dataset"),
        "metric": spec.get("metric"),
        "direction": spec.get("direction"),
        "objectives": spec.get("objectives") or None,
        "constraints": spec.get("constraints") or None,
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
