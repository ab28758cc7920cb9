"""Tabular datasets: scikit-learn's bundled tables (no download) and a user's CSV file."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import datasets as skd

from automl import DataBundle, Option, UserError
from automl.data import read_table
from automl_plugins.tabular._prep import (
    TASK_CHOICES,
    build_bundle,
    encode_labels,
    infer_task,
    split_columns,
)
from automl_plugins.tabular._read import is_missing

CSV_OPTIONS = (
    Option("target", str, None, "the column to predict (required)"),
    Option("task", str, "auto", "classification or regression; auto infers it from the target",
           choices=TASK_CHOICES),
)

_SKLEARN = {
    "breast_cancer": (skd.load_breast_cancer, "classification"),
    "wine": (skd.load_wine, "classification"),
    "iris": (skd.load_iris, "classification"),
    "diabetes": (skd.load_diabetes, "regression"),
}


def load_sklearn(name: str, seed: int) -> DataBundle:
    """One of scikit-learn's bundled tables as a bundle: ``breast_cancer`` (569 rows, 30
    numeric features, 2 classes), ``wine`` (178 rows, 13 features, 3 classes), ``iris`` (150
    rows, 4 features, 3 classes) or ``diabetes`` (442 rows, 10 features, regression of
    disease progression one year on)."""
    fn, task = _SKLEARN[name]
    raw = fn()
    num = np.asarray(raw.data, dtype=np.float64)
    cat = np.empty((len(num), 0), dtype=object)
    names = [str(f) for f in raw.feature_names]
    if task == "classification":
        class_names = [str(c) for c in getattr(raw, "target_names", np.unique(raw.target))]
        target = np.asarray(raw.target, dtype=np.int64)
    else:
        class_names, target = None, np.asarray(raw.target, dtype=np.float64)
    return build_bundle(num, cat, names, [], target, task, seed, class_names=class_names,
                        state={"source": f"sklearn.datasets.load_{name}"})


def load_breast_cancer(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """``Dataset.load`` of scikit-learn's breast cancer table (binary classification)."""
    return load_sklearn("breast_cancer", seed)


def load_wine(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """``Dataset.load`` of scikit-learn's wine table (3 classes)."""
    return load_sklearn("wine", seed)


def load_iris(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """``Dataset.load`` of scikit-learn's iris table (3 classes)."""
    return load_sklearn("iris", seed)


def load_diabetes(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """``Dataset.load`` of scikit-learn's diabetes table (regression)."""
    return load_sklearn("diabetes", seed)


LOADERS = {"breast_cancer": load_breast_cancer, "wine": load_wine, "iris": load_iris,
           "diabetes": load_diabetes}


def load_csv(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """A user's CSV, TSV or JSON-lines table: ``--data PATH --option target=COLUMN [--option task=...]``.

    Every other column is a feature: numeric when all its present values are numbers,
    categorical otherwise. Rows whose target is missing are skipped and counted; missing
    feature values are imputed from the train split (see :mod:`._prep`). The task is
    inferred from the target unless ``task`` is given.
    """
    columns = read_table(path)
    target_name = options.get("target")
    have = ", ".join(columns)
    if not target_name:
        raise UserError(f"dataset 'csv' needs --option target=COLUMN; the file has columns: {have}")
    if target_name not in columns:
        raise UserError(f"target column {target_name!r} is not in the file; it has columns: {have}")
    raw_target = columns.pop(target_name)
    keep = [i for i, v in enumerate(raw_target) if not is_missing(v)]
    skipped = len(raw_target) - len(keep)
    if not columns:
        raise UserError(f"the file has no feature columns besides the target {target_name!r}")
    values = [raw_target[i] for i in keep]
    task = infer_task(values, options.get("task") or "auto")
    features = {name: [col[i] for i in keep] for name, col in columns.items()}
    num, cat, num_names, cat_names = split_columns(features)
    if task == "classification":
        target, class_names = encode_labels(values)
        if len(class_names) < 2:
            raise UserError(f"target column {target_name!r} has a single class {class_names[0]!r}")
    else:
        target, class_names = np.array([float(v) for v in values], dtype=np.float64), None
    return build_bundle(num, cat, num_names, cat_names, target, task, seed, class_names=class_names,
                        summary={"skipped rows (missing target)": skipped},
                        state={"source": "csv", "target": target_name})
