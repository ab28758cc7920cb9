"""Baseline rows: the reference models a plugin registers (gradient boosting, a tuned SVC,
most-popular...), fitted once when a study is created and shown beside the search.

Under a time budget (``--timeout``) the baselines get at most :data:`BUDGET_SHARE` of it, in a
child process that is stopped when its share ends: a tuned SVC's cross-validation on a
loaded machine once took a 20 s budget's whole minute before the first trial started, and a
user who gives a budget expects the command to end on time. The baselines fitted in time are
kept; the others are recorded as not fitted, with the reason. A child process, not a thread,
because a baseline is a library call that cannot be interrupted, and an abandoned thread
would go on taking the search's CPU. Without a budget every baseline is fitted in this process.

A baseline may return its validation and test predictions (``val_pred``, ``test_pred``:
what a metric receives); they are stored under ``baselines/NAME/`` in the study folder like
a trial's, without pickle.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from automl.backends.local import adopt, die_with_parent, here, process_context
from automl.study.artifacts import save_predictions
from automl.study.spec import StudySpec
from automl.types import Baseline, DataBundle, Metric

#: The most of a ``--timeout`` the baselines may take.
BUDGET_SHARE = 0.1


def baseline_dir(study_dir: Path, name: str) -> Path:
    return study_dir / "baselines" / name


def fit_one(baseline: Baseline, bundle: DataBundle, metric: Metric, study_dir: Path | None) -> dict[str, Any]:
    """Fit one baseline; a failure is recorded with its error (a baseline never stops a search)."""
    try:
        scores = baseline.fit(bundle, metric)
        row: dict[str, Any] = {"val": float(scores["val"]), "test": float(scores["test"]),
                               "description": baseline.description}
    except Exception as exc:  # noqa: BLE001 - a baseline never stops a search
        return {"error": f"{type(exc).__name__}: {exc}"}
    if study_dir is not None and scores.get("val_pred") is not None and scores.get("test_pred") is not None:
        if save_predictions(baseline_dir(study_dir, baseline.name), scores["val_pred"], scores["test_pred"]):
            row["predictions"] = True
    return row


def fit_baselines(baselines: list[Baseline], bundle: DataBundle, metric: Metric, spec: StudySpec | None = None,
                  study_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Fit every baseline that fits the task: in this process, or, under ``spec``'s time
    budget, in a child process given :data:`BUDGET_SHARE` of it."""
    todo = [b for b in baselines if bundle.info.task in b.tasks]
    if not todo:
        return {}
    if spec is None or not spec.timeout or not spec.budget_aware:
        return {b.name: fit_one(b, bundle, metric, study_dir) for b in todo}
    return _fit_in_child(todo, spec, study_dir, BUDGET_SHARE * spec.timeout)


def _fit_in_child(todo: list[Baseline], spec: StudySpec, study_dir: Path | None, seconds: float) -> dict[str, Any]:
    ctx = process_context()
    receive, send = ctx.Pipe(duplex=False)
    where = here()  # the child takes this process's environment and folder, as a trial worker does
    proc = ctx.Process(target=_child, name="automl-baselines", daemon=True,
                       args=(spec.to_json(), [b.name for b in todo], str(study_dir) if study_dir else None, send,
                             where))
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + seconds
    proc.start()
    send.close()
    try:
        while len(results) < len(todo):
            left = deadline - time.monotonic()
            if left <= 0 or not receive.poll(left):
                break
            try:
                name, row = receive.recv()
            except EOFError:  # the child died (out of memory, a crash in a library)
                break
            results[name] = row
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receive.close()
    died = proc.exitcode not in (0, None) and time.monotonic() < deadline
    for b in todo:
        if b.name not in results:
            results[b.name] = {"error": f"the baseline process died (exit code {proc.exitcode})" if died else
                               f"not fitted: over its share of the time budget ({seconds:.0f} s of "
                               f"--timeout {spec.timeout:g}); without --timeout every baseline is fitted"}
    return {b.name: results[b.name] for b in todo}


def _child(spec_json: dict[str, Any], names: list[str], study_dir: str | None, send: Any,
           where: tuple[dict[str, str], str]) -> None:
    """The baseline process: loads the plugin and the data as a trial worker does (the same
    spec and seed give the same split), fits the baselines in order, sends each row as it is done."""
    from automl.plugins import load_registry
    from automl.study.datasets import load_data
    from automl.study.resolve import check_task_fit, resolve
    from automl.study.store import quiet_optuna

    adopt(where)
    die_with_parent()  # never outlives a search killed with -9
    quiet_optuna()
    spec = StudySpec.from_json(spec_json)
    registry = load_registry(spec.plugin_paths, only={spec.plugin})
    resolved = resolve(registry, spec.plugin, spec.dataset, spec.spaces, spec.metric, spec.options)
    bundle = load_data(spec.plugin, resolved.dataset, spec.data_path, resolved.options, spec.seed)
    metric = check_task_fit(resolved, bundle.info)
    for name in names:
        send.send((name, fit_one(resolved.plugin.baselines[name], bundle, metric,
                                 Path(study_dir) if study_dir else None)))
    send.close()
