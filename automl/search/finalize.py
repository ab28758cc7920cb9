"""The end of a search: select the model to hand back, score it on the test split once, save
it, build the post-hoc ensemble, and tidy the study folder.

Selection uses the validation split only: the best trial by the study's metric, ties broken by
the validation loss (the metric is coarse on a small split: two trials a few images apart tie,
and the one with the better loss generalises better), then by the earlier trial. The ensemble
(:mod:`automl.search.ensembles`) is chosen on validation too. The test split then scores the
selected trial and the ensemble, once each per study end.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import TrialState

from automl.backends.devices import main_device
from automl.search.ensembles import combine, select
from automl.search.objective import plugin_metrics
from automl.search.refit import refit_trials, test_outputs
from automl.study.artifacts import load_predictions, load_targets, refit_model, saved_model
from automl.study.spec import FIGURES, parse_constraint
from automl.study.store import BEST_KEY, ENSEMBLE_KEY, TEST_KEY
from automl.training import build_model, evaluate, load_model, save_model, score
from automl.types import StudyEvent

if TYPE_CHECKING:  # pragma: no cover - typing only
    from automl.search.session import Session

#: Trials whose models are kept besides the selected one and the ensemble's members.
KEEP_MODELS = 5
#: Selections of an ensemble under constraints on figures: the first, and those after a
#: measured ensemble missed a timed limit its members' summed figures met.
ENSEMBLE_TRIES = 3


def rank_trials(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Complete trials, best first (:func:`automl.study.results.rank`): by value in the
    study's direction, then by validation loss (lower first; trials without one last among
    their ties), then by trial number. With ``--constraint`` the trials that meet every
    constraint come first, so the selected trial meets them whenever one does; when none
    does, the least-violating trial comes first (the search says so). In a multi-objective
    study the Pareto front comes first, by the primary (first) objective: the selected trial
    is the front member best on it. Each trial of a multi-objective study is returned as a
    copy whose ``value`` is its study-metric value, so the rest of finalize reads one number."""
    import copy

    from automl.study.results import is_multi, metric_value, rank

    ranked = rank(study, trials)
    if not is_multi(study):
        return ranked
    views = []
    for t in ranked:
        view = copy.copy(t)
        view._values = [metric_value(study, t)]  # FrozenTrial.value reads _values
        views.append(view)
    return views


def finalize(session: Session, study: optuna.Study | None = None, reason: str = "finished") -> dict[str, Any] | None:
    """Select, score and save the best trial (``best/``), build the ensemble
    (``ensemble/``), keep the models worth keeping, and fire ``on_study_end``."""
    study = study or session.ref.load()
    complete = rank_trials(study, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    best_info = None
    if complete:
        best_info = _save_best(session, study, complete[0])
        ensemble = build_ensemble(session, study, complete)
        _prune_models(session, complete, keep=set(ensemble["members"]) if ensemble else set(), study=study)
    session.registry.call("on_study_end", session.spec.loggers, event=StudyEvent(
        session.ref.name, str(session.ref.dir), len(complete),
        best_info["value"] if best_info else None, best_info["params"] if best_info else None, reason))
    return best_info


def _save_best(session: Session, study: optuna.Study, best: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Score the selected trial on the test split, once: a later finalize that selects the
    same trial reuses its score and saved model. Only the selected model's test score is
    kept (``automl:test_values``), so the test split is never a menu of candidates."""
    stored = study.user_attrs.get(BEST_KEY)
    best_dir = session.ref.dir / "best"
    refits, skipped = refit_trials(session, [best])
    refit = refits.get(best.number)
    if stored and stored.get("number") == best.number and saved_model(best_dir) is not None \
            and bool(stored.get("refit")) == (refit is not None):
        return stored
    config = best.user_attrs["config"]
    space = session.resolved.plugin.spaces[config["space"]]
    data = space.prepare(session.bundle, config) if space.prepare else session.bundle
    source = saved_model(session.ref.trial_dir(best.number))
    if source is None:
        raise FileNotFoundError(f"the model of trial {best.number} is missing from its folder "
                                f"{session.ref.trial_dir(best.number)}")
    model = load_model(build_model(space, config["model"], data.info), source)
    device = torch.device(main_device(session.spec.gpus))
    if isinstance(model, torch.nn.Module):
        model.to(device)
    y_true, y_pred = evaluate(model, data, "test", device)
    trial_test_value = test_value = score(session.metric, y_true, y_pred)
    if refit is not None:  # the refit model is what is handed back (decided before any test score)
        source = refit_model(session.ref.dir, best.number)
        model = load_model(build_model(space, config["model"], data.info), source)
        y_true, y_pred = refit.y_test, refit.p_test
        test_value = score(session.metric, y_true, y_pred)
    study.set_user_attr(TEST_KEY, {str(best.number): test_value})
    info = {"number": best.number, "value": best.value, "test_value": test_value,
            "metric": session.metric.name, "direction": session.metric.direction,
            "params": best.params, "config": config}
    if refit is not None:
        info["refit"] = {**refit.record(), "trial_test_value": trial_test_value}
    elif best.number in skipped:
        info["refit_skipped"] = skipped[best.number]
    if data.info.task == "classification" and getattr(y_pred, "ndim", 0) == 2:
        from sklearn.metrics import confusion_matrix

        info["confusion_matrix"] = confusion_matrix(
            y_true, y_pred.argmax(axis=1), labels=list(range(y_pred.shape[1]))).tolist()
        info["class_names"] = data.info.class_names or [str(i) for i in range(y_pred.shape[1])]
    study.set_user_attr(BEST_KEY, info)
    best_dir.mkdir(parents=True, exist_ok=True)
    for old in (best_dir / "model.pt", best_dir / "model"):  # the selected trial may have changed kind
        if old.name != source.name:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    save_model(model.cpu() if isinstance(model, torch.nn.Module) else model, best_dir / source.name)
    record = dict(info, info=asdict(data.info), data_state=data.state, spec=session.spec.to_json())
    (best_dir / "config.json").write_text(json.dumps(record, indent=2, default=str))
    return info


def build_ensemble(session: Session, study: optuna.Study, ranked: list[optuna.trial.FrozenTrial],
                   size: int | None = None) -> dict[str, Any] | None:
    """Greedy ensemble selection over the best ``size`` trials (``--ensemble``, 0: none) that
    stored numeric predictions, on validation only; then the ensemble's test score, from the
    members' stored test predictions. Under ``--constraint`` on deployment figures the members
    are chosen so that their summed figures meet it (:func:`automl.search.deploy.ensemble_admits`),
    and the ensemble is then measured and kept only if it does. Stored as ``automl:ensemble`` and
    ``ensemble/``."""
    size = session.spec.ensemble if size is None else size
    targets = load_targets(session.ref.dir)
    if not size or targets is None or not averageable(session.bundle):
        return None
    y_val, y_test = targets
    from automl.search.deploy import ensemble_admits, ensemble_estimate, ensemble_overshoot, measure_ensemble

    constraints = session.spec.constraints
    figures = {t.number: (t.user_attrs.get("run") or {}).get("deploy") or {} for t in ranked}
    names = sorted({parse_constraint(c)[0] for c in constraints} & set(FIGURES))
    # Under constraints on figures, members are chosen within the limits by their summed
    # figures, then the ensemble is measured; when it misses a timed limit all the same, the
    # selection runs again with the estimate scaled by the miss (which rules that set out).
    scale, tries, measured, last = 1.0, 0, None, None
    while True:
        tries += 1
        admits = ensemble_admits(constraints, figures, scale)
        candidates, tests = _candidates(session, ranked, size, admits)
        if len(candidates) < 2 and last is not None:  # the last one measured, which the search reports as not kept
            admits, candidates, tests, chosen, measured = last
            break
        if len(candidates) < 2:  # none now: an earlier one (a resumed study, a rebuild) is not the study's any more
            from automl.search.deploy import DROPPED_KEY

            for key in (ENSEMBLE_KEY, DROPPED_KEY):
                if study.user_attrs.get(key) is not None:
                    study.set_user_attr(key, None)
            return None
        chosen = select(candidates, y_val, session.metric, session.bundle.info.task, admits=admits)
        if len(chosen.weights) == 1:  # its trial: export and predict serve the trial's model, not an average
            measured = dict(figures.get(next(iter(chosen.weights))) or {})
            break
        if admits is None:
            break
        measured = measure_ensemble(session, chosen.weights)
        estimate = ensemble_estimate(names, figures, frozenset(chosen.weights)) or {}
        over = ensemble_overshoot(constraints, measured, estimate)
        if over is None or tries >= ENSEMBLE_TRIES:
            break
        last = (admits, candidates, tests, chosen, measured)
        scale = max(scale, over) * 1.02
    trial_test_value = score(session.metric, y_test, combine(tests, chosen.weights))
    by_number = {t.number: t for t in ranked}
    order = sorted(chosen.weights, key=lambda n: -chosen.weights[n])  # heaviest first: under a budget they matter most
    refits, skipped = refit_trials(session, [by_number[n] for n in order])
    refit_tests = test_outputs(refits)
    handed = {n: refit_tests.get(n, tests[n]) for n in chosen.weights}
    test_value = score(session.metric, y_test, combine(handed, chosen.weights))
    record = {"members": {str(n): round(w, 6) for n, w in chosen.weights.items()}, "val_value": chosen.val_value,
              "val_loss": chosen.val_loss, "test_value": test_value, "candidates": list(candidates),
              "metric": session.metric.name, "direction": session.metric.direction,
              "metrics": plugin_metrics(session.resolved.plugin.metrics, session.bundle.info, y_val,
                                        combine(candidates, chosen.weights), {session.metric.name: chosen.val_value})}
    if refit_tests:
        record["refit"] = sorted(refit_tests)
        record["trial_test_value"] = trial_test_value
    if skipped:
        record["refit_skipped"] = {str(n): why for n, why in skipped.items()}
    from automl.search.deploy import keep_ensemble

    if admits is not None:
        record["tries"] = tries
    if not keep_ensemble(session, study, record, chosen.weights, measured):
        return None
    study.set_user_attr(ENSEMBLE_KEY, record)
    folder = session.ref.dir / "ensemble"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ensemble.json").write_text(json.dumps(record, indent=2))
    return {**record, "members": chosen.weights}


def _candidates(session: Session, ranked: list[optuna.trial.FrozenTrial], size: int,
                admits: Any) -> tuple[dict[int, Any], dict[int, Any]]:
    """The best ``size`` trials with stored predictions and a kept model (that ``admits``
    alone, when given): their validation and test predictions, by trial number."""
    candidates: dict[int, Any] = {}
    tests: dict[int, Any] = {}
    for t in ranked:
        preds = load_predictions(session.ref.trial_dir(t.number))
        if preds is not None and saved_model(session.ref.trial_dir(t.number)) is not None \
                and (admits is None or admits(frozenset({t.number}))):
            candidates[t.number], tests[t.number] = preds
        if len(candidates) >= size:
            break
    return candidates, tests


def averageable(data: Any) -> bool:
    """Whether models' outputs on ``data`` can be averaged: class probabilities or values per
    row. A dataset with its own ``evaluate`` returns what its metrics take (a ranking's top-K
    item lists), and a weighted mean of item numbers is no ranking: its studies get no
    ensemble; the selected trial is handed back."""
    return data.evaluate is None and data.info.task in ("classification", "regression")


def _prune_models(session: Session, ranked: list[optuna.trial.FrozenTrial], keep: set[int],
                  study: optuna.Study | None = None) -> None:
    """Keep the models of the best few trials, of the ensemble's members and, in a
    multi-objective study, of every Pareto-front member (each is a choice ``export --trial N``
    must be able to hand back); a study of big models would fill the disk. Predictions (small)
    are kept for every trial. Refit models
    (:mod:`automl.search.refit`) are kept for the selected trial and the ensemble's members
    only (an ensemble built again may have dropped some)."""
    if study is not None:
        from automl.study.results import front

        keep = keep | {t.number for t in front(study)}
    handed = keep | {ranked[0].number}
    refits = session.ref.dir / "refit"
    for folder in refits.iterdir() if refits.is_dir() else ():
        if not (folder.name.isdigit() and int(folder.name) in handed):
            shutil.rmtree(folder, ignore_errors=True)
    for t in ranked[KEEP_MODELS:]:
        if t.number in keep:
            continue
        folder = session.ref.trial_dir(t.number)
        (folder / "model.pt").unlink(missing_ok=True)
        shutil.rmtree(folder / "model", ignore_errors=True)
