"""Standard task metrics, ready to register from any plugin.

They are domain-agnostic (classification and regression scores on whole-split outputs) and
built on scikit-learn. A plugin registers the ones it wants::

    @hookimpl
    def register_metrics(register):
        register(automl.metrics.ACCURACY)
        register(automl.metrics.MACRO_F1)

For classification, ``y_pred`` is an ``(N, C)`` array of class probabilities; for regression
an ``(N,)`` array of predictions.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from automl.types import DataInfo, Metric


def _skm():
    """scikit-learn's metrics, imported on first use: ``import automl`` stays fast for the
    CLI and for every worker process."""
    from sklearn import metrics

    return metrics

__all__ = [
    "ACCURACY",
    "BALANCED_ACCURACY",
    "MACRO_F1",
    "TOP5_ACCURACY",
    "AUROC",
    "AUPRC",
    "MCC",
    "LOG_LOSS",
    "RMSE",
    "MAE",
    "R2",
]

_CLS = ("classification",)
_REG = ("regression",)


def _labels(y_pred: np.ndarray) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else (y_pred >= 0.5).astype(int)


def _classes(y_pred: np.ndarray) -> list[int]:
    return list(range(np.asarray(y_pred).shape[1]))


def accuracy(y_true, y_pred) -> float:
    """Fraction of examples whose most probable class is the true one."""
    # Scored after every epoch of every trial: plain numpy, not scikit-learn's accuracy_score
    # (the same number for 1-d labels, without ~1 ms of input validation per call).
    y_true, labels = np.asarray(y_true), _labels(y_pred)
    if y_true.ndim == 1 and y_true.shape == labels.shape and len(y_true):
        return float(np.mean(y_true == labels))
    return float(_skm().accuracy_score(y_true, labels))


def balanced_accuracy(y_true, y_pred) -> float:
    """Recall averaged over the classes (scikit-learn's ``balanced_accuracy_score``)."""
    return float(_skm().balanced_accuracy_score(y_true, _labels(y_pred)))


def macro_f1(y_true, y_pred) -> float:
    """F1 averaged over the classes, each weighing the same (0 for a class never predicted)."""
    return float(_skm().f1_score(y_true, _labels(y_pred), average="macro", zero_division=0))


def top5_accuracy(y_true, y_pred) -> float:
    """Fraction of examples whose true class is among the 5 most probable."""
    return float(_skm().top_k_accuracy_score(y_true, y_pred, k=5, labels=_classes(y_pred)))


def _proba_for_auc(y_pred: np.ndarray) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    return y_pred[:, 1] if y_pred.ndim == 2 and y_pred.shape[1] == 2 else y_pred


def auroc(y_true, y_pred) -> float:
    """ROC AUC; one-vs-rest macro average for more than two classes. A split with a single
    class has no defined AUC: it scores 0.5 (chance) instead of raising mid-search."""
    if len(np.unique(y_true)) < 2:
        return 0.5
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 2:
        return float(_skm().roc_auc_score(y_true, y_pred, multi_class="ovr", labels=_classes(y_pred)))
    return float(_skm().roc_auc_score(y_true, _proba_for_auc(y_pred)))


def auprc(y_true, y_pred) -> float:
    """Average precision of the positive class (class 1); macro over classes beyond two."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 2:
        onehot = np.eye(y_pred.shape[1])[np.asarray(y_true)]
        return float(_skm().average_precision_score(onehot, y_pred, average="macro"))
    return float(_skm().average_precision_score(y_true, _proba_for_auc(y_pred)))


def mcc(y_true, y_pred) -> float:
    """Matthews correlation coefficient of the predicted classes (-1 to 1; 0 is chance)."""
    return float(_skm().matthews_corrcoef(y_true, _labels(y_pred)))


def log_loss(y_true, y_pred) -> float:
    """Cross-entropy of the class probabilities (clipped away from 0, then renormalised so
    that each row still sums to 1: scikit-learn warns on rows that do not)."""
    clipped = np.clip(np.asarray(y_pred, dtype=np.float64), 1e-7, 1.0)
    if clipped.ndim == 2:
        clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return float(_skm().log_loss(y_true, clipped, labels=_classes(y_pred)))


# The regression scores are plain numpy, as accuracy is: they run after every epoch of every
# trial, and scikit-learn's import alone costs about a second in each worker process. They
# give scikit-learn's numbers (tests/test_metrics.py compares them).
def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.float64).reshape(-1), np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape or not len(t):
        raise ValueError(f"y_true has {t.shape[0]} values and y_pred {p.shape[0]}; expected the same, at least 1")
    return t, p


def rmse(y_true, y_pred) -> float:
    """Root mean squared error, in the target's units."""
    t, p = _pair(y_true, y_pred)
    return float(math.sqrt(np.mean((t - p) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error, in the target's units."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def r2(y_true, y_pred) -> float:
    """Coefficient of determination; as scikit-learn, 1.0 for a perfect fit of a constant
    target and 0.0 for an imperfect one."""
    t, p = _pair(y_true, y_pred)
    residual, total = float(np.sum((t - p) ** 2)), float(np.sum((t - t.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def _has_classes(n: int, info: DataInfo) -> bool:
    return (info.num_classes or 0) >= n


def _at_least_classes(n: int):
    # A partial of a module-level function pickles by reference (Ray sends metrics to workers).
    return functools.partial(_has_classes, n)


ACCURACY = Metric("accuracy", "maximize", _CLS, accuracy, "fraction of correct predictions")
BALANCED_ACCURACY = Metric("balanced_accuracy", "maximize", _CLS, balanced_accuracy,
                           "mean recall over classes; robust to class imbalance")
MACRO_F1 = Metric("macro_f1", "maximize", _CLS, macro_f1, "F1 averaged over classes")
TOP5_ACCURACY = Metric("top5_accuracy", "maximize", _CLS, top5_accuracy,
                       "true class among the 5 most probable (10 or more classes)",
                       applies=_at_least_classes(10))
AUROC = Metric("auroc", "maximize", _CLS, auroc, "area under the ROC curve (one-vs-rest)")
AUPRC = Metric("auprc", "maximize", _CLS, auprc, "area under the precision-recall curve")
MCC = Metric("mcc", "maximize", _CLS, mcc, "Matthews correlation coefficient")
LOG_LOSS = Metric("log_loss", "minimize", _CLS, log_loss, "cross-entropy of the probabilities")
RMSE = Metric("rmse", "minimize", _REG, rmse, "root mean squared error")
MAE = Metric("mae", "minimize", _REG, mae, "mean absolute error")
R2 = Metric("r2", "maximize", _REG, r2, "coefficient of determination")
