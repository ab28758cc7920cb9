"""A trial's files: its model and its predictions, in the trial's folder of the study store.

- ``model.pt``: a torch module's ``state_dict`` (read back with ``weights_only=True``), or
  ``model/``: an :class:`automl.ArrayModel` saved by its own ``save`` (the library's format).
- ``predictions.npz``: the trained model's predictions on the validation and test splits
  (float32 arrays, ``val`` and ``test``), what ensembles are selected and scored from; written
  only where a prediction is numbers per row (classes, values; not a ranked list).
- ``STUDY/predictions/targets.npz``: the targets those predictions are scored against.

Arrays are numpy's compressed ``.npz`` and are always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

MODULE_FILE, ARRAY_DIR, PREDICTIONS = "model.pt", "model", "predictions.npz"


def model_path(folder: Path, model: Any) -> Path:
    """Where a trained ``model`` is stored in a trial's ``folder``."""
    return folder / (MODULE_FILE if hasattr(model, "state_dict") else ARRAY_DIR)


def saved_model(folder: Path) -> Path | None:
    """The model stored in a trial's (or ``best/``) folder, or ``None``."""
    for candidate in (folder / MODULE_FILE, folder / ARRAY_DIR):
        if candidate.exists():
            return candidate
    return None


def numeric(pred: Any) -> np.ndarray | None:
    """``pred`` as a float32 array when it is numbers per row (what ensembles can average)."""
    arr = np.asarray(pred) if not isinstance(pred, dict) else None
    if arr is None or arr.dtype.kind not in "fiu" or arr.ndim == 0:
        return None
    return arr.astype(np.float32)


def _write(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_predictions(folder: Path, val: Any, test: Any) -> bool:
    """Store a model's validation and test predictions; ``False`` when they are not numbers."""
    v, t = numeric(val), numeric(test)
    if v is None or t is None:
        return False
    _write(folder / PREDICTIONS, val=v, test=t)
    return True


def load_predictions(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(val, test)`` predictions stored for a trial, or ``None``."""
    path = folder / PREDICTIONS
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["val"], npz["test"]


def save_targets(study_dir: Path, y_val: Any, y_test: Any) -> None:
    """The validation and test targets of a study, once (every trial's are the same)."""
    path = study_dir / "predictions" / "targets.npz"
    if not path.exists():
        _write(path, val=np.asarray(y_val), test=np.asarray(y_test))


def load_targets(study_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    path = study_dir / "predictions" / "targets.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["val"], npz["test"]
