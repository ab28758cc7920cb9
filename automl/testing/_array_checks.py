"""Checks of models that are not torch modules (:class:`automl.ArrayModel`), of the files a
model writes (no pickle), and of a dataset's ``predict_new``.

- :func:`check_array_model`: an ArrayModel fitted on a small split predicts what its task
  needs (``(N, C)`` probabilities or ``(N,)`` values, finite floats), ``save`` writes into an
  empty folder without pickle, and a model freshly built from the same config and ``load``-ed
  from that folder predicts exactly the same.
- :func:`find_pickles`: every pickle in a folder: files named as pickles, pickle streams
  (protocol 2 or later: what ``pickle``, ``joblib`` and ``torch.save`` write), numpy object
  arrays (pickled by ``np.save``), also inside zip archives (``torch.save``, ``.npz``, skops).
- :func:`check_predict_new`: a dataset's ``predict_new`` on new data with a model of each space
  returns :class:`automl.Predictions` whose rows fit the task, as ``automl predict`` writes them.
"""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.errors import UserError
from automl.testing._data_checks import CheckFailed, Skip
from automl.training import build_model
from automl.types import DataBundle, Dataset, PredictContext, Predictions, SearchSpace, Split

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pck")
CPU = torch.device("cpu")


def find_pickles(folder: str | Path) -> list[str]:
    """Every pickle found under ``folder``, each as ``"relative/path: why"`` (empty: none).

    Found: files named ``*.pkl``, ``*.pickle``, ``*.joblib``; byte streams that open with a
    pickle protocol 2-5 header (``pickle.dump``, ``joblib``, ``torch.save``'s ``data.pkl``);
    ``.npy`` arrays of Python objects (``np.save`` pickles them); and all of these inside zip
    archives (``.pt``, ``.npz``, ``.skops``), two levels deep."""
    root = Path(folder)
    found: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            found += _scan(path.name, path.read_bytes(), str(path.relative_to(root)), 0)
    return found


def _scan(name: str, data: bytes, label: str, depth: int) -> list[str]:
    if name.lower().endswith(PICKLE_SUFFIXES):
        return [f"{label}: a pickle file (by its name)"]
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return [f"{label}: a pickle stream (protocol {data[1]})"]
    if data.startswith(b"\x93NUMPY"):
        try:
            np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                return [f"{label}: a numpy array of Python objects (pickled by np.save)"]
        return []
    if depth < 2 and data[:4] == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            return []
        found = []
        with archive:
            for member in archive.infolist():
                if not member.is_dir():
                    found += _scan(member.filename, archive.read(member), f"{label}!{member.filename}", depth + 1)
        return found
    return []


def _predictions(model: Any, inputs: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(model.predict(inputs))
    except Exception as exc:  # noqa: BLE001 - the model's error is the finding
        raise CheckFailed(f"{what}predict() raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                          ) from None


def _check_prediction(pred: np.ndarray, task: str, num_classes: int | None, rows: int) -> None:
    if pred.dtype.kind != "f":
        raise CheckFailed(f"predict() returned an array of dtype {pred.dtype}; it must be floating point")
    if task == "classification":
        want = (rows, int(num_classes or 0))
        if pred.shape != want:
            raise CheckFailed(f"predict() returned shape {pred.shape} for {rows} rows; classification needs "
                              f"{want}: one probability per class")
    elif task == "regression" and pred.shape != (rows,):
        raise CheckFailed(f"predict() returned shape {pred.shape} for {rows} rows; regression needs ({rows},)")
    if not np.isfinite(pred).all():
        raise CheckFailed("predict() returned values that are not finite")
    if task == "classification":
        sums = pred.sum(axis=1)
        if (pred < -1e-6).any() or (pred > 1 + 1e-6).any() or not np.allclose(sums, 1.0, atol=1e-4):
            raise CheckFailed("predict() must return class probabilities for classification: each row in [0, 1] "
                              f"summing to 1 (row sums seen: {sums.min():.4g} to {sums.max():.4g})")


def check_array_model(model: Any, space: SearchSpace, config: dict[str, Any], data: DataBundle,
                      rows: int) -> str:
    """The ArrayModel protocol on ``model``, already fitted (by
    :func:`automl.training.check_space`) on the first train rows of ``data``: ``predict`` on the
    first ``rows`` validation rows, ``save`` without pickle, ``load`` into a fresh model."""
    if not isinstance(data.val, Split):
        raise CheckFailed("an ArrayModel predicts on in-memory splits; the validation split is streamed")
    n = min(rows, len(data.val))
    inputs, _ = data.val.take(torch.arange(n, device=data.val.targets.device))
    info = data.info
    pred = _predictions(model, inputs, "")
    _check_prediction(pred, info.task, info.num_classes, n)
    with tempfile.TemporaryDirectory(prefix="automl-kit-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        try:
            model.save(folder)
        except Exception as exc:  # noqa: BLE001 - the model's error is the finding
            raise CheckFailed(f"save(folder) raised {type(exc).__name__}: {exc}") from None
        outside = sorted(p.name for p in Path(tmp).iterdir() if p != folder)
        if outside:
            raise CheckFailed(f"save(folder) wrote outside its folder: {', '.join(outside)}")
        written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if not written:
            raise CheckFailed("save(folder) wrote nothing into the folder")
        pickles = find_pickles(folder)
        if pickles:
            raise CheckFailed(f"save(folder) wrote pickle ({'; '.join(pickles[:3])}): store the model in its "
                              "library's own format (skops for scikit-learn, LightGBM's text, XGBoost's JSON); "
                              "a pickle runs code when it is loaded")
        fresh = build_model(space, config["model"], info)
        try:
            fresh.load(folder)
        except Exception as exc:  # noqa: BLE001 - the model's error is the finding
            raise CheckFailed(f"load(folder) into a model freshly built from the same config raised "
                              f"{type(exc).__name__}: {exc}") from None
        again = _predictions(fresh, inputs, "after save(folder) and load(folder), ")
    if again.shape != pred.shape or not np.array_equal(again, pred):
        diff = float(np.max(np.abs(again - pred))) if again.shape == pred.shape else math.nan
        detail = f"max abs difference {diff:.3g}" if again.shape == pred.shape else \
            f"shape {again.shape} instead of {pred.shape}"
        raise CheckFailed(f"a model freshly built from the same config and load()-ed from what save() wrote "
                          f"predicts differently on {n} validation rows ({detail}): save() must keep "
                          "everything predict() needs")
    return f"ArrayModel: predict {pred.shape} {pred.dtype}; save wrote {', '.join(written[:4])} (no pickle); " \
           "load gives identical predictions"


def new_data_for(ds: Dataset, new_data: dict[str, str], samples: dict[str, str]) -> tuple[str, bool]:
    """The new data ``predict_new`` is checked on: ``new_data[name]`` (must work), else the
    dataset's sample data (the training format; a reader of another format may refuse it)."""
    if ds.name in new_data:
        return new_data[ds.name], True
    if ds.name in samples:
        return samples[ds.name], False
    raise Skip("no new data to predict on: give new_data={" + repr(ds.name) + ": PATH} to check_plugin")


def check_predict_new(ds: Dataset, space: SearchSpace, model: Any, config: dict[str, Any], data: DataBundle,
                      options: dict[str, Any], path: str, explicit: bool) -> str:
    """``ds.predict_new(model, path, ctx)`` as ``automl predict`` calls it (the prepared data's
    fitted state, the dataset options, the config): :class:`Predictions`, at least one row,
    ``id`` first; classification rows name a class and their ``p_<class>`` sum to 1;
    regression rows have a finite ``prediction``; every value is one CSV cell (text, a number,
    a bool or empty)."""
    info = data.info
    ctx = PredictContext(state=data.state, options=dict(options), info=info,
                         config={"space": space.name, **config}, device=CPU, batch_size=64)
    try:
        result = ds.predict_new(model, str(Path(path).resolve()), ctx)
    except UserError as exc:
        if explicit:
            raise CheckFailed(f"predict_new refused the new data {path}: {exc}") from None
        raise Skip(f"predict_new refused the sample data {Path(path).name} ({exc}); give new data in the "
                   f"format it reads: new_data={{{ds.name!r}: PATH}}") from None
    if not isinstance(result, Predictions):
        raise CheckFailed(f"predict_new returned {type(result).__name__}, not Predictions")
    if not result.rows:
        raise CheckFailed(f"predict_new gave no row for {path}")
    for i, row in enumerate(result.rows[:200]):
        if not isinstance(row, dict) or next(iter(row), None) != "id":
            raise CheckFailed(f"row {i} is not a dict with 'id' as its first key: {str(row)[:120]}")
        _check_row(row, i, info.task, info.class_names)
        cells = [k for k, v in row.items() if v is not None and not isinstance(v, (str, int, float, bool, np.generic))]
        if cells:
            raise CheckFailed(f"row {i}: {', '.join(cells[:3])} {'is' if len(cells) == 1 else 'are'} not one CSV "
                              f"cell each (a {type(row[cells[0]]).__name__}); give text or numbers")
    first = ", ".join(f"{k}={v}" for k, v in list(result.rows[0].items())[:4])
    return f"{len(result.rows)} rows from {Path(path).name} with {type(model).__name__}, e.g. {first}"


def _check_row(row: dict[str, Any], i: int, task: str, class_names: list[str] | None) -> None:
    if task == "classification":
        probs = {k: v for k, v in row.items() if k.startswith("p_")}
        if "prediction" not in row or not probs:
            raise CheckFailed(f"classification row {i} needs 'prediction' and 'p_<class>' columns: {str(row)[:120]}")
        if class_names and str(row["prediction"]) not in class_names:
            raise CheckFailed(f"row {i} predicts {row['prediction']!r}, not a class name ({', '.join(class_names)})")
        total = sum(float(v) for v in probs.values())
        if abs(total - 1.0) > 1e-3:
            raise CheckFailed(f"row {i}: the class probabilities sum to {total:.4g}, not 1")
    elif task == "regression":
        value = row.get("prediction")
        if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise CheckFailed(f"regression row {i} needs a finite number as 'prediction': {str(row)[:120]}")
