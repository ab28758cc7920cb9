"""``automl compare A B ...``: studies side by side, as plain data (the CLI renders it).

For each study: plugin, dataset, metric, objectives and constraints, best validation and test
values, the selected model's latency and size, the size of a multi-objective study's Pareto
front, trials by state, the search's wall time and the summed trial time; then every spec field whose value differs
between the studies (the creation time and the data fingerprint aside from the others, since
they always or usually differ).
"""

from __future__ import annotations

from typing import Any

from automl.errors import UserError

#: Spec fields that describe when or how a study was stored rather than what was searched.
_NOISE = ("created", "command")


def study_facts(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(facts, spec)`` of one stored study."""
    from optuna.trial import TrialState

    from automl.study.results import front, summary
    from automl.study.store import BEST_KEY, open_ref, spec_of

    ref = open_ref(name)
    study = ref.load()
    spec = spec_of(study)
    s = summary(ref, study)
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    durations = [t.duration.total_seconds() for t in trials if t.duration is not None]
    best = study.user_attrs.get(BEST_KEY) or {}
    facts = {
        "name": name, "plugin": spec.get("plugin"), "dataset": spec.get("dataset"),
        "spaces": ", ".join(spec.get("spaces") or []), "metric": spec.get("metric"),
        "direction": spec.get("direction"), "best_value": s["best_value"],
        "best_test_value": best.get("test_value"), "best_trial": best.get("number"),
        "trials": len(trials), "target": spec.get("trials"),
        **{state.name.lower(): sum(t.state == state for t in trials)
           for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)},
        "wall_time_s": round((max(ends) - min(starts)).total_seconds(), 2) if starts and ends else None,
        "trial_time_s": round(sum(durations), 2) if durations else None,
        "best_params": best.get("params"),
        "objectives": ", ".join(spec.get("objectives") or []) or None,
        "constraints": ", ".join(spec.get("constraints") or []) or None,
        "front_size": len(front(study)) if len(study.directions) > 1 else None,
        **_best_figures(study, best.get("number")),
    }
    return facts, spec


def _best_figures(study: Any, number: int | None) -> dict[str, Any]:
    """The selected trial's latency and size (``best_latency_ms``, ``best_size_mb``)."""
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    deploy = ((trial.user_attrs.get("run") or {}).get("deploy") or {}) if trial is not None else {}
    return {"best_latency_ms": deploy.get("latency_ms"), "best_size_mb": deploy.get("size_mb")}


def compare(names: list[str]) -> dict[str, Any]:
    """Facts of each study and the spec fields that differ: ``{"studies": [...],
    "differences": {field: [value per study]}}``."""
    if len(names) < 2:
        raise UserError("compare needs at least two study names")
    if len(set(names)) != len(names):
        raise UserError("compare: a study is named twice")
    facts, specs = [], []
    for name in names:
        f, s = study_facts(name)
        facts.append(f)
        specs.append(s)
    keys = list(dict.fromkeys(k for s in specs for k in s if k not in _NOISE))
    differences = {k: [s.get(k) for s in specs] for k in keys
                   if any(s.get(k) != specs[0].get(k) for s in specs[1:])}
    notes = []
    metrics = {(f["metric"], f["direction"]) for f in facts}
    if len({f["objectives"] for f in facts}) > 1:
        notes.append("the studies have different objectives: a multi-objective study's best value is that of the "
                     "front member best on its primary objective")
    if len(metrics) > 1:
        notes.append("the studies optimise different metrics: their values are not comparable")
    elif len({(f["plugin"], f["dataset"]) for f in facts}) > 1:
        notes.append("the studies use different datasets: their values are not directly comparable")
    return {"studies": facts, "differences": differences, "notes": notes}
