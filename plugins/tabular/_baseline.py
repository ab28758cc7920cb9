"""scikit-learn baselines on the same split and the same preprocessed features as the search.

They read any in-memory bundle: a tensor input is flattened to one feature row per example,
a mapping of tensors is concatenated, and integer tensors of a mapping are treated as
categorical columns (native categorical support for gradient boosting, one-hot encoding for
the linear models). Scores use the search's own metric on the same output format as the
models: class probabilities ``(N, C)`` for classification, values ``(N,)`` for regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from automl import DataBundle, Metric, Split, UserError

MAX_ROWS = 200_000


def features(split: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(X, is_categorical)`` for a split: ``X`` is float ``(N, F)``, the mask ``(F,)``."""
    if not isinstance(split, Split):
        raise UserError("baselines need an in-memory split")
    inputs = split.inputs
    tensors = list(inputs.values()) if isinstance(inputs, Mapping) else [inputs]
    cols, mask = [], []
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.shape[0] != len(split):
            continue
        flat = t.detach().cpu().reshape(len(split), -1)
        categorical = isinstance(inputs, Mapping) and not flat.is_floating_point()
        cols.append(flat.double().numpy())
        mask += [categorical] * flat.shape[1]
    if not cols:
        raise UserError("the data has no tensor features for a baseline")
    return np.concatenate(cols, axis=1), np.asarray(mask, dtype=bool)


def _proba(model: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities on all ``n_classes`` columns, even when train lacked a class."""
    out = np.zeros((len(x), n_classes))
    out[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(x)
    return out


def _fit_score(model: Any, data: DataBundle, metric: Metric, transform=None) -> dict[str, float]:
    x_train, _ = features(data.train)
    y_train = data.train.targets.cpu().numpy()
    if len(x_train) > MAX_ROWS:
        x_train, y_train = x_train[:MAX_ROWS], y_train[:MAX_ROWS]
    prep = transform(x_train) if transform else (lambda x: x)
    model.fit(prep(x_train), y_train)
    scores = {}
    for name in ("val", "test"):
        split = data.split(name)
        x, _ = features(split)
        if data.info.task == "classification":
            pred = _proba(model, prep(x), int(data.info.num_classes or int(y_train.max()) + 1))
        else:
            pred = model.predict(prep(x))
        scores[name] = float(metric.fn(split.targets.cpu().numpy(), pred))
    return scores


def fit_gradient_boosting(data: DataBundle, metric: Metric) -> dict[str, float]:
    """scikit-learn's HistGradientBoosting (classifier or regressor) with default settings,
    categorical columns declared as such."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    _, mask = features(data.train)
    cats = mask if mask.any() else None
    kind = HistGradientBoostingClassifier if data.info.task == "classification" else HistGradientBoostingRegressor
    return _fit_score(kind(categorical_features=cats, random_state=0), data, metric)


def fit_linear(data: DataBundle, metric: Metric) -> dict[str, float]:
    """Logistic regression (classification) or ridge regression, with categorical columns
    one-hot encoded and numeric ones standardised (fitted on train)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    _, mask = features(data.train)

    def transform(x_train: np.ndarray):
        parts = [("num", StandardScaler(), np.flatnonzero(~mask))]
        if mask.any():
            parts.append(("cat", OneHotEncoder(handle_unknown="ignore"), np.flatnonzero(mask)))
        ct = ColumnTransformer(parts).fit(x_train)
        return ct.transform

    model = LogisticRegression(max_iter=2000) if data.info.task == "classification" else Ridge()
    return _fit_score(model, data, metric, transform)
