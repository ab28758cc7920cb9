"""Preprocessing fitted on the train split only, and the bundle it produces.

Numeric columns: missing values are imputed with the train median, then standardised with
the train mean and standard deviation. Categorical columns: missing values are imputed with
the train's most frequent value; each train category gets an id from 1, and id 0 stands for
a category never seen in train (unseen at validation or test time). Nothing is computed from
validation or test rows, and the fitted values are recorded in ``DataBundle.state`` so an
exported model gets the same input pipeline.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from automl import DataBundle, DataInfo, Split, UserError
from automl.data import three_way_split
from automl_plugins.tabular._read import is_missing, is_numeric, to_float

#: At most this many categories per column get their own id (the most frequent in train).
MAX_CATEGORIES = 1000
TASK_CHOICES = ("auto", "classification", "regression")


@dataclass
class TablePrep:
    """The fitted preprocessing of a table (JSON-able through :meth:`to_state`)."""

    num_columns: list[str]
    cat_columns: list[str]
    medians: list[float]
    means: list[float]
    stds: list[float]
    fill: list[str]
    categories: list[list[str]]

    @classmethod
    def fit(cls, num: np.ndarray, cat: np.ndarray, num_columns: list[str],
            cat_columns: list[str]) -> TablePrep:
        """Fit on train rows only: ``num`` is float ``(n, D)`` with NaN for missing values,
        ``cat`` an object array ``(n, K)`` of strings or ``None``."""
        medians, means, stds = [], [], []
        for j in range(num.shape[1]):
            col = num[:, j]
            present = col[~np.isnan(col)]
            median = float(np.median(present)) if present.size else 0.0
            filled = np.where(np.isnan(col), median, col)
            std = float(filled.std()) if filled.size > 1 else 1.0
            medians.append(median)
            means.append(float(filled.mean()) if filled.size else 0.0)
            stds.append(std if std > 1e-12 else 1.0)
        fill, categories = [], []
        for j in range(cat.shape[1]):
            counts = Counter(v for v in cat[:, j] if v is not None)
            ranked = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_CATEGORIES]
            fill.append(ranked[0] if ranked else "")
            categories.append(sorted(ranked))
        return cls(list(num_columns), list(cat_columns), medians, means, stds, fill, categories)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes: the train categories plus id 0 for unseen ones."""
        return [len(c) + 1 for c in self.categories]

    def transform(self, num: np.ndarray, cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply the fitted imputation, scaling and category ids to any rows."""
        out_num = np.empty(num.shape, dtype=np.float32)
        for j in range(num.shape[1]):
            col = np.where(np.isnan(num[:, j]), self.medians[j], num[:, j])
            out_num[:, j] = (col - self.means[j]) / self.stds[j]
        out_cat = np.zeros(cat.shape, dtype=np.int64)
        for j in range(cat.shape[1]):
            index = {c: i + 1 for i, c in enumerate(self.categories[j])}
            out_cat[:, j] = [index.get(self.fill[j] if v is None else v, 0) for v in cat[:, j]]
        return out_num, out_cat

    def to_state(self) -> dict[str, Any]:
        """The fitted values as JSON-able data."""
        return asdict(self)


def infer_task(values: list[Any], requested: str = "auto") -> str:
    """Classification when the target is not numeric, or numeric with few distinct integer
    values (at most 20, and at most a fifth of the rows); regression otherwise. ``requested``
    (``--option task=...``) overrides the guess."""
    if requested not in TASK_CHOICES:
        raise UserError(f"task must be one of {', '.join(TASK_CHOICES)}, not {requested!r}")
    numbers = [to_float(v) for v in values]
    if requested == "regression":
        bad = sum(n is None for n in numbers)
        if bad:
            raise UserError(f"task=regression needs a numeric target; {bad} values are not numbers")
        return "regression"
    if requested == "classification":
        return "classification"
    if any(n is None for n in numbers):
        return "classification"
    distinct = set(numbers)
    few = len(distinct) <= 20 and len(distinct) <= max(2, len(values) // 5)
    return "classification" if few and all(float(n).is_integer() for n in distinct) else "regression"


def encode_labels(values: list[Any]) -> tuple[np.ndarray, list[str]]:
    """Class ids for target values and the class names, sorted numerically when every value
    is a number (``2`` before ``10``) and as text otherwise."""
    texts = [str(v).strip() for v in values]
    numbers = [to_float(t) for t in texts]
    if all(n is not None for n in numbers):
        texts = [_number_name(n) for n in numbers]
        names = sorted(set(texts), key=float)
    else:
        names = sorted(set(texts))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[t] for t in texts], dtype=np.int64), names


def _number_name(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else repr(float(n))


def split_columns(columns: dict[str, list[Any]]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Detect numeric and categorical feature columns; return ``(num, cat, num_names, cat_names)``
    with NaN / ``None`` for missing cells."""
    n = len(next(iter(columns.values()))) if columns else 0
    num_names = [c for c, v in columns.items() if is_numeric(v)]
    cat_names = [c for c in columns if c not in num_names]
    num = np.full((n, len(num_names)), np.nan, dtype=np.float64)
    for j, name in enumerate(num_names):
        num[:, j] = [np.nan if (f := to_float(v)) is None else f for v in columns[name]]
    cat = np.empty((n, len(cat_names)), dtype=object)
    for j, name in enumerate(cat_names):
        cat[:, j] = [None if is_missing(v) else str(v).strip() for v in columns[name]]
    return num, cat, num_names, cat_names


def build_bundle(num: np.ndarray, cat: np.ndarray, num_names: list[str], cat_names: list[str],
                 target: np.ndarray, task: str, seed: int, *, class_names: list[str] | None = None,
                 summary: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> DataBundle:
    """Split rows (stratified for classification), fit :class:`TablePrep` on the train rows,
    and return a bundle whose inputs are ``{"num": float (N, D), "cat": long (N, K)}``."""
    if len(target) < 10:
        raise UserError(f"the table has {len(target)} usable rows; at least 10 are needed")
    stratify = target if task == "classification" else None
    train_idx, val_idx, test_idx = three_way_split(len(target), seed, stratify=stratify)
    prep = TablePrep.fit(num[train_idx], cat[train_idx], num_names, cat_names)
    x_num, x_cat = prep.transform(num, cat)
    y = torch.from_numpy(target.astype(np.int64 if task == "classification" else np.float32))
    x_num_t, x_cat_t = torch.from_numpy(x_num), torch.from_numpy(x_cat)

    def take(idx: np.ndarray) -> Split:
        t = torch.from_numpy(idx)
        return Split({"num": x_num_t[t], "cat": x_cat_t[t]}, y[t])

    info = DataInfo(task=task, num_classes=len(class_names) if class_names else None,
                    input_shape=(len(num_names) + len(cat_names),), class_names=class_names,
                    extra={"num_features": len(num_names), "cat_cardinalities": prep.cardinalities,
                           "num_columns": list(num_names), "cat_columns": list(cat_names)})
    full_state = {"task": task, "preprocessing": prep.to_state(), "class_names": class_names,
                  **(state or {})}
    counts = {"rows": int(len(target)), "numeric columns": len(num_names),
              "categorical columns": len(cat_names), **(summary or {})}
    return DataBundle(take(train_idx), take(val_idx), take(test_idx), info, state=full_state,
                      summary=counts)
