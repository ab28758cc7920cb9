"""The ``gbm`` space: scikit-learn's histogram gradient boosting, searched, as an
:class:`automl.ArrayModel` (not a torch module: core trains it by calling ``fit`` once).

Searched: ``learning_rate``, ``max_iter`` (the number of boosting rounds, or their cap when
``early_stopping`` is on: then the validation split stops the boosting once its loss has not
improved for 20 rounds), ``max_leaf_nodes``, ``min_samples_leaf``, ``l2_regularization`` and
``max_features`` (the share of features each split may look at). The search's first trial is
scikit-learn's default configuration, the ``gradient_boosting`` baseline row's.

Features are the bundle's ``num`` columns (standardised, imputed: boosting is indifferent to
both) and its ``cat`` ids, declared categorical so the trees split on categories natively
(a column with more than 255 categories, above scikit-learn's limit, is used as its ordinal
id instead).

Saved with skops (``skops.io``), scikit-learn's pickle-free format: the file holds the
estimator's parameters and arrays as JSON and ``.npy`` entries, never a pickle stream, and
:meth:`GradientBoosting.load` trusts only the types listed in :data:`TRUSTED` (see there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from automl import DataInfo, Split, UserError
from automl.training import load_skops
from automl_plugins.tabular._baseline import features

FORMAT = "automl-tabular-gbm/1"
MODEL_FILE, META_FILE = "model.skops", "meta.json"
MAX_CATEGORIES = 255  # scikit-learn's limit on the categories of a native categorical feature
PATIENCE = 20  # boosting rounds without a better validation loss before early stopping

#: The types a saved model may hold beyond those skops trusts by default (scikit-learn's
#: estimators, numpy arrays, builtins), checked with ``skops.io.get_untrusted_types`` before
#: anything is loaded. Why each is safe:
#:
#: - ``TreePredictor``: one fitted tree (arrays of nodes); constructing it runs no code from
#:   the file.
#: - ``functools.partial`` and ``sklearn.utils.validation.check_array``: the estimator's
#:   categorical preprocessing holds ``partial(check_array, ...)``. skops loads a function by
#:   its module and name and checks that name against this list too, so a file can only make
#:   a partial of ``check_array`` (input validation), never of another callable.
TRUSTED = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "functools.partial",
    "sklearn.utils.validation.check_array",
})


def define_gbm(trial: Any, info: DataInfo) -> dict[str, Any]:
    """Searched: learning rate, boosting rounds, early stopping on the validation split, leaves
    per tree, minimum rows per leaf, L2 regularisation and the features seen per split."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "max_iter": trial.suggest_int("max_iter", 50, 1000, log=True),
        "early_stopping": trial.suggest_categorical("early_stopping", [True, False]),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 4, 64, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 2, 64, log=True),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-6, 10.0, log=True),
        # scikit-learn >= 1.4 only (the dependency allows 1.3): not searched where it is missing
        **({"max_features": trial.suggest_float("max_features", 0.3, 1.0)} if _accepts("__init__", "max_features")
           else {}),
    }


def _accepts(method: str, name: str) -> bool:
    """Whether this scikit-learn's HistGradientBoosting ``method`` takes parameter ``name``
    (``max_features`` came in 1.4, ``fit(X_val=...)`` later)."""
    import inspect

    from sklearn.ensemble import HistGradientBoostingRegressor

    return name in inspect.signature(getattr(HistGradientBoostingRegressor, method)).parameters


def train_gbm(trial: Any, info: DataInfo) -> dict[str, Any]:
    """No gradient-loop hyperparameters: the model fits itself (``GradientBoosting.fit``)."""
    return {}


#: scikit-learn's defaults (the ``gradient_boosting`` baseline), tried first by a search.
STARTS = ({"learning_rate": 0.1, "max_iter": 100, "early_stopping": False, "max_leaf_nodes": 31,
           "min_samples_leaf": 20, "l2_regularization": 1e-6, "max_features": 1.0},)


def build_gbm(cfg: dict[str, Any], info: DataInfo) -> GradientBoosting:
    """An unfitted :class:`GradientBoosting` for a config."""
    return GradientBoosting(cfg, info)


class GradientBoosting:
    """``HistGradientBoostingClassifier`` / ``Regressor`` behind the ArrayModel protocol:
    ``fit(train, val, info)``, ``predict(inputs)`` (class probabilities ``(N, C)`` or values
    ``(N,)``), ``save(folder)`` and ``load(folder)`` with skops."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        self.cfg, self.info = dict(cfg), info
        self.estimator: Any = None

    # -- features -----------------------------------------------------------------------
    def _categorical(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        """The columns declared categorical: integer columns with at most 255 ids."""
        if not mask.any():
            return None
        cards = list(self.info.extra.get("cat_cardinalities") or [])
        cat_cols = np.flatnonzero(mask)
        if len(cards) != len(cat_cols):  # not the tabular plugin's layout: what train shows
            cards = [int(x[:, j].max()) + 1 if len(x) else 0 for j in cat_cols]
        native = mask.copy()
        for j, card in zip(cat_cols, cards):
            native[j] = int(card) <= MAX_CATEGORIES
        return native if native.any() else None

    def _estimator(self, categorical: np.ndarray | None) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        c = self.cfg
        kind = HistGradientBoostingClassifier if self.info.task == "classification" else HistGradientBoostingRegressor
        extra = {"max_features": float(c["max_features"])} if "max_features" in c else {}
        return kind(learning_rate=float(c["learning_rate"]), max_iter=int(c["max_iter"]),
                    max_leaf_nodes=int(c["max_leaf_nodes"]), min_samples_leaf=int(c["min_samples_leaf"]),
                    l2_regularization=float(c["l2_regularization"]), early_stopping=bool(c["early_stopping"]),
                    n_iter_no_change=PATIENCE, categorical_features=categorical, random_state=0, **extra)

    # -- the ArrayModel protocol --------------------------------------------------------
    def fit(self, train: Split, val: Split, info: DataInfo) -> None:
        """Fit on the train split; with ``early_stopping`` the validation split's loss decides
        when boosting stops (rows of classes train lacks are left out of it)."""
        x, mask = features(train)
        y = _targets(train, info)
        self.estimator = self._estimator(self._categorical(x, mask))
        extra: dict[str, Any] = {}
        if self.estimator.early_stopping:
            x_val, y_val = features(val)[0], _targets(val, info)
            if info.task == "classification":
                keep = np.isin(y_val, np.unique(y))
                x_val, y_val = x_val[keep], y_val[keep]
            if len(y_val) and _accepts("fit", "X_val"):
                extra = {"X_val": x_val, "y_val": y_val}
            else:  # no usable validation row, or an older scikit-learn: its own split of train
                self.estimator.set_params(validation_fraction=0.2)
        with _threads():
            self.estimator.fit(x, y, **extra)

    def predict(self, inputs: Any) -> np.ndarray:
        """Class probabilities ``(N, num_classes)`` (a class train lacked gets 0) or values ``(N,)``."""
        if self.estimator is None:
            raise RuntimeError("the gradient boosting model is not fitted (fit or load it first)")
        x, _ = features(Split(inputs, _rows(inputs)))
        with _threads():
            if self.info.task != "classification":
                return np.asarray(self.estimator.predict(x), dtype=np.float64)
            proba = self.estimator.predict_proba(x)
        classes = np.asarray(self.estimator.classes_, dtype=np.int64)
        n = int(self.info.num_classes or classes.max() + 1)
        out = np.zeros((len(x), n), dtype=np.float64)
        out[:, classes] = proba
        return out

    def save(self, folder: Path) -> None:
        """``model.skops`` (the estimator, in skops' format) and ``meta.json``."""
        import sklearn
        import skops.io as sio

        if self.estimator is None:
            raise RuntimeError("the gradient boosting model is not fitted: nothing to save")
        folder = Path(folder)
        sio.dump(self.estimator, folder / MODEL_FILE)
        meta = {"format": FORMAT, "library": "scikit-learn", "sklearn": sklearn.__version__,
                "estimator": type(self.estimator).__name__, "task": self.info.task, "config": self.cfg}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    def load(self, folder: Path) -> None:
        """Load what :meth:`save` wrote, trusting only the types in :data:`TRUSTED`."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise UserError(f"{folder} is not a saved gbm model (meta.json format {meta.get('format')!r})")
        path = folder / MODEL_FILE
        estimator = load_skops(path, TRUSTED, "a gradient boosting model")
        want = "HistGradientBoostingClassifier" if self.info.task == "classification" \
            else "HistGradientBoostingRegressor"
        if type(estimator).__name__ != want:
            raise UserError(f"{path} holds a {type(estimator).__name__}, not a {want}")
        self.estimator = estimator


def _targets(split: Split, info: DataInfo) -> np.ndarray:
    y = split.targets.detach().cpu().numpy()
    return y.astype(np.int64) if info.task == "classification" else y.astype(np.float64)


def _rows(inputs: Any) -> Any:
    """A placeholder target of the inputs' row count (``features`` reads a Split)."""
    import torch

    first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
    return torch.zeros(int(first.shape[0]))


def _threads():
    """scikit-learn's OpenMP threads limited to torch's (what core gives each worker), so two
    workers on two cores do not run four threads."""
    import torch
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, torch.get_num_threads()), user_api="openmp")
