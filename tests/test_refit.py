"""Refit on train + validation (automl.search.refit): what the search hands back is its chosen
configurations trained again on both splits, for the epochs their trials chose; the trials'
own models and scores stay as they were, and nothing is chosen with the test split."""

from __future__ import annotations

import json
import time

import numpy as np
import optuna
import pytest
import torch
from _results_helper import make_study

from automl.metrics import accuracy
from automl.output.artifact import from_study
from automl.search.refit import refit_trials, stacked
from automl.search.session import plan_resume
from automl.study.artifacts import load_predictions, load_targets, load_test_predictions
from automl.training import fit
from automl.types import DataBundle, DataInfo, Metric, Split


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _study(studies, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name / 'study.db'}")


@pytest.fixture(scope="module")
def refit_study(tmp_path_factory):
    """One small tabular search with ``--refit auto`` (iris is small)."""
    import os

    root = tmp_path_factory.mktemp("refit-studies")
    old = os.environ.get("AUTOML_STUDIES")
    os.environ["AUTOML_STUDIES"] = str(root)
    try:
        make_study("rf", "tabular", trials=6, dataset="iris", spaces=["mlp"], ensemble=6, refit="auto")
        yield root
    finally:
        if old is None:
            os.environ.pop("AUTOML_STUDIES", None)
        else:
            os.environ["AUTOML_STUDIES"] = old


def test_the_best_model_is_refit_on_train_and_validation(refit_study, monkeypatch):
    monkeypatch.setenv("AUTOML_STUDIES", str(refit_study))
    study = _study(refit_study, "rf")
    best = json.loads((refit_study / "rf" / "best" / "config.json").read_text())
    n = best["number"]
    trial = study.trials[n]
    refit = best["refit"]
    # iris (150 rows) is split 60/20/20: the refit trained on train + validation, for the
    # epochs the trial's early stopping chose.
    assert refit["of"] == n and refit["rows"] == 120
    assert refit["epochs"] == trial.user_attrs["run"]["best_epoch"] + 1
    # best/ holds the refit model, not the trial's; the trial's stays in its folder.
    handed = _state(refit_study / "rf" / "best" / "model.pt")
    assert _same(handed, _state(refit_study / "rf" / "refit" / str(n) / "model.pt"))
    assert not _same(handed, _state(refit_study / "rf" / "trials" / str(n) / "model.pt"))
    # The test score is the handed-back model's, computed from its stored test predictions;
    # the trial's own test score is kept beside it, for the record.
    _, y_test = load_targets(refit_study / "rf")
    pred = load_test_predictions(refit_study / "rf" / "refit" / str(n))
    assert best["test_value"] == pytest.approx(accuracy(y_test, pred))
    assert study.user_attrs["automl:test_values"] == {str(n): best["test_value"]}
    trial_pred = load_predictions(refit_study / "rf" / "trials" / str(n))[1]
    assert refit["trial_test_value"] == pytest.approx(accuracy(y_test, trial_pred))
    # The study's final model (export/predict without --trial) is the refit one; --trial N
    # means the trial's own model.
    assert from_study("rf", None).model_path == refit_study / "rf" / "best" / "model.pt"
    assert from_study("rf", n).model_path == refit_study / "rf" / "trials" / str(n) / "model.pt"


def test_ensemble_members_are_refit_and_weights_stay_the_validation_ones(refit_study, monkeypatch):
    monkeypatch.setenv("AUTOML_STUDIES", str(refit_study))
    record = _study(refit_study, "rf").user_attrs["automl:ensemble"]
    members = {int(k): w for k, w in record["members"].items()}
    assert sorted(record["refit"]) == sorted(members)
    # Only the handed-back models keep a refit folder.
    kept = {int(p.name) for p in (refit_study / "rf" / "refit").iterdir()}
    best = json.loads((refit_study / "rf" / "best" / "config.json").read_text())["number"]
    assert kept == set(members) | {best}
    _, y_test = load_targets(refit_study / "rf")
    blended = sum(w * load_test_predictions(refit_study / "rf" / "refit" / str(k)) for k, w in members.items())
    assert record["test_value"] == pytest.approx(accuracy(y_test, blended))
    # export and predict of the study's final model use the refit members.
    from automl.output.artifact import load

    assert len(members) > 1  # (seed 0: trials 0 and 5) so that the ensemble, not best/, is exported
    final = load("rf")
    assert {m.model_path for m, _ in final.members} == {refit_study / "rf" / "refit" / str(k) / "model.pt"
                                                        for k in members}


def test_a_second_finalize_reuses_the_refit_models(refit_study, monkeypatch):
    monkeypatch.setenv("AUTOML_STUDIES", str(refit_study))
    from automl.search.session import finalize

    folder = refit_study / "rf" / "refit"
    before = {p.name: (p / "model.pt").stat().st_mtime_ns for p in folder.iterdir()}
    best_before = json.loads((refit_study / "rf" / "best" / "config.json").read_text())
    session = plan_resume("rf", force=True)
    finalize(session)
    after = {p.name: (p / "model.pt").stat().st_mtime_ns for p in folder.iterdir()}
    assert after == before
    best_after = json.loads((refit_study / "rf" / "best" / "config.json").read_text())
    assert best_after["test_value"] == best_before["test_value"]


def test_no_refit_when_the_budget_has_no_room_left(refit_study, monkeypatch):
    """Under --timeout a refit whose estimated cost would pass the deadline is skipped (the
    trial's model is handed back instead), with the reason recorded."""
    monkeypatch.setenv("AUTOML_STUDIES", str(refit_study))
    session = plan_resume("rf", force=True)
    session.spec.timeout = 60.0
    session.started = time.time() - 59.0
    study = _study(refit_study, "rf")
    kept = {int(p.name) for p in (refit_study / "rf" / "refit").iterdir()}
    others = [t for t in study.trials if t.number not in kept and t.state.name == "COMPLETE"]
    assert others, "every trial was refit; the test needs one that was not"
    done, skipped = refit_trials(session, others[:1])
    assert not done
    assert "--timeout" in skipped[others[0].number]


def test_refit_is_off_by_default_and_hands_back_the_trials_model(studies):
    make_study("nofit", "tabular", trials=2, dataset="iris", spaces=["mlp"])
    best = json.loads((studies / "nofit" / "best" / "config.json").read_text())
    assert "refit" not in best and best["refit_skipped"] == "--refit off"
    assert not (studies / "nofit" / "refit").exists()
    n = best["number"]
    assert _same(_state(studies / "nofit" / "best" / "model.pt"),
                 _state(studies / "nofit" / "trials" / str(n) / "model.pt"))


def test_a_model_that_fits_itself_is_not_refit(studies):
    make_study("gbmfit", "tabular", trials=1, dataset="iris", spaces=["gbm"], refit="on")
    best = json.loads((studies / "gbmfit" / "best" / "config.json").read_text())
    assert "refit" not in best
    assert "fits itself" in best["refit_skipped"]


def test_an_unknown_refit_mode_is_refused_before_anything_is_written(cli, studies):
    r = cli("search", "--plugin", "tabular", "--dataset", "iris", "--refit", "maybe", "--study", "bad")
    assert r.code == 2
    assert "--refit" in r.err and "auto, on, off" in r.err
    assert not (studies / "bad").exists()


def test_fit_with_refit_epochs_trains_exactly_those_epochs_and_validates_nothing():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    data = DataBundle(Split(x[:48], y[:48]), Split(x[48:], y[48:]), Split(x[48:], y[48:]),
                      DataInfo(task="classification", num_classes=2, input_shape=(3,)))
    full = stacked(data)
    assert isinstance(full, DataBundle) and len(full.train) == 64
    assert torch.equal(full.train.inputs, x) and torch.equal(full.train.targets, y)
    metric = Metric("accuracy", "maximize", ("classification",), accuracy)
    model = torch.nn.Linear(3, 2)
    result = fit(model, full, {"epochs": 10, "batch_size": 16, "lr": 0.05, "patience": 1}, metric,
                 torch.device("cpu"), refit_epochs=3)
    assert result.epochs_run == 3 and result.best_epoch == 2
    assert all(np.isnan(h["value"]) for h in result.history)


def test_inputs_that_cannot_be_stacked_are_not_refit():
    info = DataInfo(task="classification", num_classes=2, input_shape=(3,))
    wide, narrow = Split(torch.zeros(4, 5), torch.zeros(4).long()), Split(torch.zeros(2, 3), torch.zeros(2).long())
    assert "cannot be stacked" in stacked(DataBundle(wide, narrow, narrow, info))
    ranked = DataBundle(wide, wide, wide, info, evaluate=lambda *a: None)
    assert "evaluates models itself" in stacked(ranked)
