"""Post-hoc ensembles: members and weights are chosen on validation predictions only (the
test split changes, the ensemble does not), and an exported ensemble predicts on new rows
exactly as the ensemble the study holds (its members' stored test predictions, weighted)."""

from __future__ import annotations

import csv

import numpy as np
import optuna
from _results_helper import iris_test_csv, make_study

from automl.search.ensembles import combine, select
from automl.study.artifacts import PREDICTIONS, load_predictions, load_targets


def _study(studies, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name / 'study.db'}")


def test_selection_is_a_function_of_validation_predictions_only():
    from automl.metrics import accuracy as acc_fn
    from automl.types import Metric

    def accuracy():
        return Metric("accuracy", "maximize", ("classification",), acc_fn)

    rng = np.random.default_rng(0)
    y_val = rng.integers(0, 3, 60)
    candidates = {n: rng.dirichlet(np.ones(3), 60) for n in range(6)}
    candidates[2][np.arange(60), y_val] += 0.5  # one strong candidate, a few useful ones
    candidates[4][np.arange(60)[::2], y_val[::2]] += 0.4
    a = select(candidates, y_val, accuracy(), "classification")
    assert abs(sum(a.weights.values()) - 1) < 1e-9 and 2 in a.weights
    b = select({n: p.copy() for n, p in candidates.items()}, y_val.copy(), accuracy(), "classification")
    assert a.weights == b.weights and a.val_value == b.val_value
    single = max(accuracy().fn(y_val, p) for p in candidates.values())
    assert a.val_value >= single  # the first round is the best single candidate


def test_selection_keeps_within_a_budget_of_members():
    # Under --constraint an ensemble serves every member, so its latency, size and parameters
    # are about its members' sums: selection only adds a member while the set stays within
    # the limit (here: at most two distinct members, and never #2 with #4).
    from automl.metrics import accuracy as acc_fn
    from automl.types import Metric

    metric = Metric("accuracy", "maximize", ("classification",), acc_fn)
    rng = np.random.default_rng(1)
    y_val = rng.integers(0, 3, 90)
    candidates = {n: rng.dirichlet(np.ones(3), 90) for n in range(6)}
    for n, rows in ((2, slice(0, 60)), (4, slice(30, 90)), (5, slice(0, 90, 3))):
        candidates[n][np.arange(90)[rows], y_val[rows]] += 0.6
    free = select(candidates, y_val, metric, "classification")
    assert len(free.weights) > 2 or set(free.weights) == {2, 4}, free.weights

    seen: list[frozenset[int]] = []

    def admits(members: frozenset[int]) -> bool:
        seen.append(members)
        return len(members) <= 2 and not {2, 4} <= members

    held = select(candidates, y_val, metric, "classification", admits=admits)
    assert len(held.weights) <= 2 and not {2, 4} <= set(held.weights), held.weights
    assert all(len(m) <= 3 for m in seen) and any(len(m) == 2 for m in seen)
    assert held.val_value >= max(metric.fn(y_val, p) for p in candidates.values())


def test_changing_the_test_split_leaves_members_and_weights_unchanged(studies, cli):
    make_study("ens", "tabular", trials=6, dataset="iris", spaces=["mlp"], ensemble=5)  # models kept: 5
    before = _study(studies, "ens").user_attrs["automl:ensemble"]
    assert len(before["candidates"]) >= 2
    # another test split: other targets and other test predictions for every trial
    rng = np.random.default_rng(1)
    y_val, y_test = load_targets(studies / "ens")
    np.savez(studies / "ens" / "predictions" / "targets.npz", val=y_val, test=rng.permutation(y_test))
    for folder in (studies / "ens" / "trials").iterdir():
        stored = load_predictions(folder)
        if stored is not None:
            np.savez(folder / PREDICTIONS, val=stored[0], test=rng.dirichlet(np.ones(stored[1].shape[1]),
                                                                             len(stored[1])))
    r = cli("ensemble", "ens", "--size", "5")
    assert r.code == 0, r.err
    after = _study(studies, "ens").user_attrs["automl:ensemble"]
    assert after["members"] == before["members"] and after["val_value"] == before["val_value"]
    assert after["candidates"] == before["candidates"]
    assert after["test_value"] != before["test_value"]  # the test split was read, after choosing


def test_an_exported_ensemble_predicts_like_the_ensemble_in_memory(studies, cli, tmp_path):
    make_study("ensx", "tabular", trials=6, dataset="iris", spaces=["mlp"], ensemble=6)
    record = _study(studies, "ensx").user_attrs["automl:ensemble"]
    weights = {int(n): w for n, w in record["members"].items()}
    in_memory = combine({n: load_predictions(studies / "ensx" / "trials" / str(n))[1] for n in weights}, weights)
    out = tmp_path / "export"
    r = cli("export", "ensx", "--out", out)
    assert r.code == 0, r.err
    assert (out / "ensemble.json").exists()
    data = tmp_path / "new.csv"
    iris_test_csv(data)
    r = cli("predict", out, "--data", data, "--out", tmp_path / "pred.csv")
    assert r.code == 0, r.err
    with open(tmp_path / "pred.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [c[2:] for c in rows[0] if c.startswith("p_")]
    got = np.array([[float(row[f"p_{n}"]) for n in names] for row in rows])
    assert got.shape == in_memory.shape
    assert np.abs(got - in_memory).max() < 1e-5


def test_ranking_outputs_are_never_averaged_into_an_ensemble(studies):
    """A ranking's outputs are top-K item lists: their weighted mean is item numbers that no
    model recommended (found in the recsys quality runs: the "ensemble" scored below its best
    member). Such studies hand back the selected trial and store no ensemble."""
    make_study("rank", "recsys", trials=3, spaces=["ease", "itemknn"], ensemble=3)
    study = _study(studies, "rank")
    assert study.user_attrs.get("automl:ensemble") is None
    assert not (studies / "rank" / "ensemble").exists()
    assert study.user_attrs["automl:best"]["test_value"] is not None

