"""The tabular ``gbm`` space: scikit-learn's HistGradientBoosting as an ArrayModel. It fits and
predicts on real tables, saves with skops (never pickle) and refuses a file holding types it
does not expect; a gbm search exports and predicts end to end without a pickle anywhere."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

import automl_plugins.tabular as tabular
from automl import ArrayModel, UserError, metrics
from automl.testing import find_pickles
from automl.training import build_model, load_model, save_model, split_outputs
from automl_plugins.tabular._data import load_csv, load_sklearn
from automl_plugins.tabular._gbm import STARTS, TRUSTED, GradientBoosting


def _space():
    out = []
    tabular.register_spaces(out.append)
    return {s.name: s for s in out}["gbm"]


def _fitted(bundle, config=None):
    model = build_model(_space(), dict(config or STARTS[0]), bundle.info)
    assert isinstance(model, ArrayModel) and not isinstance(model, torch.nn.Module)
    model.fit(bundle.train, bundle.val, bundle.info)
    return model


def test_gbm_classifies_breast_cancer_and_round_trips_without_pickle(tmp_path):
    bundle = load_sklearn("breast_cancer", 0)
    model = _fitted(bundle)
    y, proba = split_outputs(model, bundle.test, bundle.info, torch.device("cpu"))
    assert proba.shape == (len(bundle.test), 2) and proba.dtype == np.float64
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert metrics.ACCURACY.fn(y, proba) >= 0.93  # default-settings boosting on this table: ~0.95-0.99
    folder = tmp_path / "model"
    save_model(model, folder)  # as a trial stores it
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.skops"]
    assert find_pickles(tmp_path) == []
    again = load_model(build_model(_space(), STARTS[0], bundle.info), folder)
    assert np.array_equal(again.predict(bundle.test.inputs), proba)


def test_gbm_regresses_diabetes_with_early_stopping_on_validation():
    bundle = load_sklearn("diabetes", 0)
    config = dict(STARTS[0], early_stopping=True, max_iter=500, learning_rate=0.05)
    model = _fitted(bundle, config)
    assert model.estimator.n_iter_ < 500  # the validation loss stopped it
    y, pred = split_outputs(model, bundle.test, bundle.info, torch.device("cpu"))
    assert pred.shape == (len(bundle.test),) and pred.dtype == np.float64
    rmse = metrics.RMSE.fn(y, pred)
    assert rmse < 0.9 * float(np.std(y)), (rmse, np.std(y))  # far better than predicting the mean


def test_gbm_splits_categorical_columns_natively(tmp_path):
    """A CSV whose label is 'yes' when x1 + (color is red) > 0.3: boosting uses the colour
    column as a categorical feature."""
    rng = np.random.default_rng(0)
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x1", "x2", "color", "y"])
        for i in range(300):
            x1, color = rng.normal(), ["red", "green", "blue"][i % 3]
            w.writerow([f"{x1:.4f}", int(rng.integers(0, 50)), color, "yes" if x1 + (color == "red") > 0.3 else "no"])
    bundle = load_csv(str(path), {"target": "y", "task": "auto"}, 0)
    model = _fitted(bundle, dict(STARTS[0], min_samples_leaf=5))
    assert list(model.estimator.is_categorical_) == [False, False, True]  # x1, x2, color
    y, proba = split_outputs(model, bundle.test, bundle.info, torch.device("cpu"))
    assert metrics.ACCURACY.fn(y, proba) >= 0.8  # y depends on x1 and on color == red


def test_every_sampled_config_builds_and_fits():
    bundle = load_sklearn("wine", 0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = _space()
    for _ in range(3):
        trial = study.ask()
        config = space.define(trial, bundle.info)
        assert space.train(trial, bundle.info) == {}  # no gradient-loop parameters
        model = _fitted(bundle, json.loads(json.dumps(config)))
        assert model.predict(bundle.val.inputs).shape == (len(bundle.val), 3)
        study.tell(trial, 0.0)


def test_load_refuses_a_file_holding_unexpected_types(tmp_path):
    """A model.skops holding a callable other than the few TRUSTED ones is not loaded: skops
    would otherwise build whatever the file names."""
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    bundle = load_sklearn("breast_cancer", 0)
    folder = tmp_path / "model"
    save_model(_fitted(bundle), folder)
    tampered = make_pipeline(FunctionTransformer(np.linalg.pinv))
    sio.dump(tampered, folder / "model.skops")
    assert set(sio.get_untrusted_types(file=folder / "model.skops")) - TRUSTED
    with pytest.raises(UserError, match="holds types a gradient boosting model does not"):
        GradientBoosting(STARTS[0], bundle.info).load(folder)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_gbm_search_exports_and_predicts_without_pickle(studies, cli, tmp_path):
    from sklearn.datasets import load_breast_cancer

    from automl.output.artifact import load_artifact, prepared_data

    r = cli("search", "--plugin", "tabular", "--dataset", "breast_cancer", "--space", "gbm", "--trials", "3",
            "--study", "gb")
    assert r.code == 0, r.err
    rows = cli("leaderboard", "gb", "--format", "json").json()
    assert [row["state"] for row in rows] == ["COMPLETE"] * 3
    assert all((studies / "gb" / "trials" / str(row["number"]) / "predictions.npz").exists() for row in rows)
    assert (studies / "gb" / "best" / "model" / "model.skops").exists()

    out = tmp_path / "export"
    r = cli("export", "gb", "--out", out, "--single")
    assert r.code == 0, r.err
    assert (out / "model" / "model.skops").exists() and not (out / "model.safetensors").exists()
    assert "not a torch module" in r.out + r.err
    assert find_pickles(out) == []
    assert find_pickles(studies / "gb" / "best") == []
    for row in rows:  # every kept trial model too
        assert find_pickles(studies / "gb" / "trials" / str(row["number"])) == []

    raw = load_breast_cancer()
    new = tmp_path / "new.csv"
    with open(new, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *raw.feature_names])
        for i in range(20):
            w.writerow([f"r{i}", *raw.data[i]])
    r = cli("predict", out, "--data", new, "--out", tmp_path / "pred.csv")
    assert r.code == 0, r.err
    got = _read_csv(tmp_path / "pred.csv")
    assert [g["id"] for g in got] == [f"r{i}" for i in range(20)]
    names = [str(n) for n in raw.target_names]
    probs = np.array([[float(g[f"p_{n}"]) for n in names] for g in got])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # the predicted classes agree with the labels of these rows (a fitted model, not noise)
    truth = raw.target[:20]
    assert (probs.argmax(axis=1) == truth).mean() >= 0.9

    # the export predicts what the study's best model predicts on the study's own test split
    art = load_artifact(str(out))
    test = prepared_data(art.spec, art.dataset, art.space, art.config).test
    best = load_artifact("gb").model()
    assert np.array_equal(art.model().predict(test.inputs), best.predict(test.inputs))
    # and the study's final model (an ensemble of gbm trials where it has one) predicts too
    r = cli("predict", "gb", "--data", new)
    assert r.code == 0 and r.out.splitlines()[1].startswith("r0,"), r.err


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "non-torch-models.md"


def test_the_guide_example_conforms_searches_exports_and_predicts(studies, cli, tmp_path):
    """docs/non-torch-models.md's complete plugin (a random forest saved with skops) passes the
    kit, including predict_new, and searches, exports and predicts without pickle."""
    import re

    from automl.plugins import load_registry
    from automl.testing import check_plugin

    code = re.search(r"<!-- example: forest -->\s*```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert code, "the example is missing from the guide"
    plugin = tmp_path / "acme_forest.py"
    plugin.write_text(code.group(1))
    new = tmp_path / "new.csv"
    new.write_text("0.0,1.0\n1.0,-0.5\n2.0,0.3\n")
    registry = load_registry([str(plugin)], only={"acme_forest"})
    results = check_plugin("acme_forest", registry=registry, n_configs=1, new_data={"moons": new})
    assert not [str(r) for r in results if r.status == "fail"]
    passed = {(r.check, r.target) for r in results if r.status == "pass"}
    assert {("model", "space forest on moons"), ("predict", "space forest on moons")} <= passed

    r = cli("search", "--plugin-path", plugin, "--plugin", "acme_forest", "--trials", "2", "--study", "forest")
    assert r.code == 0, r.err
    out = tmp_path / "export"
    r = cli("export", "forest", "--out", out)
    assert r.code == 0, r.err
    assert list(out.rglob("forest.skops")) and find_pickles(out) == []
    r = cli("predict", out, "--data", new)
    assert r.code == 0, r.err
    lines = r.out.strip().splitlines()
    assert lines[0] == "id,prediction,p_upper,p_lower" and len(lines) == 4
    # (0, 1) lies on the upper moon, (1, -0.5) on the lower one
    assert lines[1].split(",")[1] == "upper" and lines[2].split(",")[1] == "lower"
