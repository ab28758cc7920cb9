"""Tabular spaces (forward and backward), metric directions and the baselines."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from test_tabular_prep import write_table

import automl_plugins.tabular as tabular
from automl import DataInfo
from automl.training import build_model
from automl_plugins.tabular._baseline import features, fit_gradient_boosting, fit_linear
from automl_plugins.tabular._data import load_csv, load_sklearn


def registered(hook):
    out = []
    hook(out.append)
    return {o.name: o for o in out}


SPACES = registered(tabular.register_spaces)
METRICS = registered(tabular.register_metrics)


def _config(space, info, seed):
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    return space.define(trial, info), space.train(trial, info)


@pytest.mark.parametrize("name", ["mlp", "resmlp"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_space_forward_backward(name, task):
    cards = [5, 3] if task == "classification" else []
    info = DataInfo(task=task, num_classes=3 if task == "classification" else None,
                    extra={"num_features": 4, "cat_cardinalities": cards}, target_mean=1.0, target_std=2.0)
    for seed in range(3):
        cfg, train = _config(SPACES[name], info, seed)
        assert train["epochs"] >= 1 and 0 <= cfg["dropout"] <= 0.5
        model = build_model(SPACES[name], cfg, info)
        num = torch.randn(8, 4)
        cat = (torch.stack([torch.randint(0, c, (8,)) for c in cards], 1) if cards
               else torch.zeros(8, 0, dtype=torch.long))
        out = model(num=num, cat=cat)
        assert out.shape == ((8, 3) if task == "classification" else (8,))
        out.float().pow(2).mean().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_only_categorical_columns():
    info = DataInfo(task="classification", num_classes=2, extra={"num_features": 0, "cat_cardinalities": [4]})
    model = build_model(SPACES["mlp"], {"width": 16, "depth": 1, "dropout": 0.0, "norm": "layer",
                                        "activation": "relu", "emb_dim": 4}, info)
    assert model(num=torch.zeros(5, 0), cat=torch.randint(0, 4, (5, 1))).shape == (5, 2)


def test_metric_directions():
    y_cls, good, bad = np.array([0, 1, 1, 0]), np.array([[.9, .1], [.2, .8], [.1, .9], [.7, .3]]), \
        np.array([[.4, .6], [.6, .4], [.5, .5], [.3, .7]])
    for name in ("accuracy", "macro_f1", "auroc", "log_loss"):
        m = METRICS[name]
        better = m.fn(y_cls, good) > m.fn(y_cls, bad)
        assert better == (m.direction == "maximize"), name
        assert m.tasks == ("classification",)
    y_reg = np.array([1.0, 2.0, 3.0, 4.0])
    for name in ("rmse", "mae", "r2"):
        m = METRICS[name]
        better = m.fn(y_reg, y_reg + 0.1) > m.fn(y_reg, y_reg[::-1])
        assert better == (m.direction == "maximize"), name
        assert m.tasks == ("regression",)
    # diabetes without --metric gets RMSE: the first registered regression metric
    assert [n for n, m in METRICS.items() if "regression" in m.tasks][0] == "rmse"


def test_baselines_score_in_the_model_output_format(tmp_path):
    cls = load_csv(write_table(tmp_path / "t.csv", n=120), {"target": "y", "task": "auto"}, 0)
    x, mask = features(cls.train)
    assert x.shape[1] == 3 and mask.tolist() == [False, False, True]
    for fit in (fit_gradient_boosting, fit_linear):
        scores = fit(cls, METRICS["log_loss"])
        assert set(scores) == {"val", "test"} and all(0 <= v < 5 for v in scores.values())
    reg = load_sklearn("diabetes", 0)
    for fit in (fit_gradient_boosting, fit_linear):
        scores = fit(reg, METRICS["rmse"])
        assert 30 < scores["test"] < 90  # diabetes targets range 25..346; a mean guess scores ~77
