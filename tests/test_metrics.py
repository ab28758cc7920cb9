"""automl.metrics against scikit-learn's own functions, on random and edge-case inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from automl import metrics


@pytest.mark.parametrize("seed", range(5))
def test_regression_scores_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=50) * 3 + 1
    pred = y + rng.normal(size=50)
    assert metrics.RMSE.fn(y, pred) == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)), rel=1e-12)
    assert metrics.MAE.fn(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    assert metrics.R2.fn(y, pred) == pytest.approx(skm.r2_score(y, pred), rel=1e-12)


def test_r2_of_a_constant_target_follows_scikit_learn():
    y = np.full(5, 2.0)
    assert metrics.R2.fn(y, y) == skm.r2_score(y, y) == 1.0
    assert metrics.R2.fn(y, y + 1) == skm.r2_score(y, y + 1) == 0.0


def test_accuracy_matches_scikit_learn():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=40)
    y = rng.integers(0, 4, size=40)
    assert metrics.ACCURACY.fn(y, probs) == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="same"):
        metrics.RMSE.fn(np.zeros(3), np.zeros(4))


def test_log_loss_of_confident_probabilities_warns_nothing():
    """Probabilities of exactly 0 and 1 (a confident gradient-boosting model) are clipped and
    renormalised: no "y_prob values do not sum to one" warning, a finite loss."""
    import warnings

    import numpy as np

    from automl.metrics import log_loss

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = log_loss(np.array([0, 1, 1]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    assert np.isfinite(value) and value > 5  # one confident mistake costs about -log(1e-7) / 3
