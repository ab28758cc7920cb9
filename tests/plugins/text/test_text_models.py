"""Text spaces (forward, backward, padding masks) and metric directions."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

import automl_plugins.text as text
from automl import DataInfo
from automl.training import build_model
from automl_plugins.text._data import load_synthetic


def registered(hook):
    out = []
    hook(out.append)
    return {o.name: o for o in out}


SPACES = registered(text.register_spaces)
METRICS = registered(text.register_metrics)


@pytest.fixture(scope="module")
def bundle():
    return load_synthetic(None, {"size": 200}, 0)


@pytest.mark.parametrize("name", ["bag", "cnn", "rnn", "transformer"])
def test_space_forward_backward_and_masking(bundle, name):
    space = SPACES[name]
    for seed in range(2):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        config = {"space": name, "model": space.define(trial, bundle.info), "train": space.train(trial, bundle.info)}
        data = space.prepare(bundle, config)
        assert data.info.extra["vocab_size"] <= config["model"]["vocab_size"]
        model = build_model(space, config["model"], data.info)
        tokens, lengths = data.train.inputs["tokens"][:16], data.train.inputs["lengths"][:16]
        out = model(tokens=tokens, lengths=lengths)
        assert out.shape == (16, 2)
        torch.nn.functional.cross_entropy(out, data.train.targets[:16]).backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        # padding never changes a text's output: alone, or batched with a longer text
        model.eval()
        short = int(lengths.argmin())
        with torch.no_grad():
            alone = model(tokens=tokens[short:short + 1, :int(lengths[short])], lengths=lengths[short:short + 1])
            batched = model(tokens=tokens, lengths=lengths)[short:short + 1]
        assert torch.allclose(alone, batched, atol=1e-5), name


def test_metric_directions_and_binary_auroc():
    y = np.array([0, 1, 1, 0, 1])
    good = np.array([[.8, .2], [.3, .7], [.1, .9], [.6, .4], [.4, .6]])
    bad = good[:, ::-1]
    for name in ("accuracy", "macro_f1", "auroc"):
        m = METRICS[name]
        assert m.direction == "maximize" and m.fn(y, good) > m.fn(y, bad), name
    auroc = METRICS["auroc"]
    assert auroc.applies(DataInfo(task="classification", num_classes=2))
    assert not auroc.applies(DataInfo(task="classification", num_classes=3))
