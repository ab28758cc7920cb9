"""Helpers for plugin authors: reading files, splitting rows, feeding models.

- :func:`read_table`: a user's CSV / TSV / JSON-lines file into named columns, with one-line
  errors for the files a user gets wrong.
- :func:`three_way_split`: train / validation / test indices (stratified where possible).
- :func:`map_inputs`, :func:`call_model`: handle a model's inputs whether they are one tensor
  or a mapping of named tensors (see :class:`automl.Split`).
- :func:`predict_rows`, :func:`model_outputs`: what a dataset's ``predict_new`` calls to run
  a model on new, preprocessed data and turn its outputs into rows.

The standard library's ``csv`` and ``json`` do the parsing and scikit-learn the splitting;
torch is imported only by the functions that run a model.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.errors import UserError
from automl.types import ArrayModel, PredictContext, Predictions, call_model, map_inputs

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn

__all__ = ["call_model", "map_inputs", "model_outputs", "predict_rows", "read_table", "three_way_split"]

_DELIMITERS = ",;\t|"
JSON_LINES = (".jsonl", ".ndjson")


def read_table(path: str | Path, sniff: bool = True) -> dict[str, list[Any]]:
    """Read a table file with named columns into ``{column: [cell, ...]}``, in file order.

    - ``.jsonl`` / ``.ndjson``: one JSON object per line; a key missing from a line is
      ``None`` there. Cells keep their JSON types.
    - ``.tsv`` / ``.tab``: tab-separated with a header row.
    - anything else: a header row, the delimiter sniffed among comma, semicolon, tab and pipe
      (``sniff=False``: a comma; for cells of free text, where a sentence full of semicolons
      can fool the sniffer). Cells are strings.

    Blank lines are skipped (a row of empty cells is kept: its cells are missing). Raises
    :class:`automl.UserError` (one line, naming the file and
    the line) for a file that is empty, not UTF-8, has no rows, an empty or duplicate column
    name, a CSV row with the wrong number of fields, or a JSON line that is not an object.
    """
    p = Path(path)
    try:
        # newline="": line breaks inside quoted cells reach the csv module as written.
        with p.open(encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a UTF-8 text file") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if not text.strip():
        raise UserError(f"{p}: the file is empty")
    if p.suffix.lower() in JSON_LINES:
        return _json_lines(p, text)
    return _delimited(p, text, sniff)


def _json_lines(p: Path, text: str) -> dict[str, list[Any]]:
    rows: list[dict[str, Any]] = []
    names: dict[str, None] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}: line {n} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{p}: line {n} is not a JSON object")
        names.update(dict.fromkeys(str(k) for k in row))
        rows.append({str(k): v for k, v in row.items()})
    return {name: [row.get(name) for row in rows] for name in names}


def _delimited(p: Path, text: str, sniff: bool) -> dict[str, list[Any]]:
    if p.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    elif not sniff:
        delimiter = ","
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=_DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","
    kind = "TSV" if delimiter == "\t" else "CSV"
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long texts in one cell are fine
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        # A blank line is no row; a row of empty cells is one (its cells are missing values).
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise UserError(f"{p}: not a valid {kind} file ({exc})") from None
    seen: set[str] = set()
    for name in header:
        if not name:
            raise UserError(f"{p}: the header has an empty column name")
        if name in seen:
            raise UserError(f"{p}: the header names column {name!r} twice")
        seen.add(name)
    if not rows:
        raise UserError(f"{p}: the file has a header but no rows")
    columns: dict[str, list[Any]] = {name: [] for name in header}
    for line, row in rows:
        if len(row) != len(header):
            raise UserError(f"{p}: line {line} has {len(row)} fields, the header has {len(header)}")
        for name, cell in zip(header, row):
            columns[name].append(cell)
    return columns


def three_way_split(n: int, seed: int, *, val: float = 0.2, test: float = 0.2,
                    stratify: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a random train / validation / test split of ``n`` rows.

    Returns three sorted integer arrays ``(train, val, test)`` that partition ``range(n)``:
    ``ceil(test * n)`` test rows, ``ceil(val * n)`` validation rows and the rest for training
    (defaults: 60 / 20 / 20). With ``stratify`` (one label per row) every class is split in
    the same proportions, to within one row per class and split. The same ``seed`` gives the
    same split. Example::

        train, val, test = three_way_split(len(y), seed, stratify=y)
        x_train, y_train = x[train], y[train]

    Written with numpy rather than scikit-learn's ``train_test_split``: importing scikit-learn
    costs about a second in every process that loads a dataset (each worker of a search).
    """
    if not 0 < val < 1 or not 0 < test < 1 or val + test >= 1:
        raise ValueError(f"val ({val}) and test ({test}) must be fractions that leave rows for training")
    n_test, n_val = math.ceil(test * n), math.ceil(val * n)
    if n_test + n_val >= n:
        raise UserError(f"{n} rows are too few for a train / validation / test split")
    rng = np.random.default_rng(seed)
    if stratify is None:
        labels = np.zeros(n, dtype=np.int64)
    else:
        labels = np.unique(np.asarray(stratify), return_inverse=True)[1]
    groups = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
    test_k = _apportion([len(g) for g in groups], n_test, rng)
    val_k = _apportion([len(g) - k for g, k in zip(groups, test_k)], n_val, rng)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for rows, k_test, k_val in zip(groups, test_k, val_k):
        rows = rng.permutation(rows)
        parts[2].append(rows[:k_test])
        parts[1].append(rows[k_test:k_test + k_val])
        parts[0].append(rows[k_test + k_val:])
    train, val_idx, test_idx = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val_idx, test_idx


def _apportion(sizes: list[int], total: int, rng: np.random.Generator) -> list[int]:
    """Split ``total`` among groups in proportion to their ``sizes`` (largest remainders,
    ties broken at random), never more than a group has."""
    whole = sum(sizes)
    quotas = [total * s / whole if whole else 0.0 for s in sizes]
    counts = [min(int(q), s) for q, s in zip(quotas, sizes)]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - int(quotas[i])), rng.random()))
    left = total - sum(counts)
    while left > 0:
        progressed = False
        for i in order:
            if left and counts[i] < sizes[i]:
                counts[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts


def _length(inputs: Any) -> int:
    sizes: list[int] = []
    map_inputs(inputs, lambda t: sizes.append(int(t.shape[0])) or t)
    if not sizes or len(set(sizes)) != 1:
        raise ValueError(f"inputs have different first dimensions: {sizes}")
    return sizes[0]


def model_outputs(model: nn.Module, inputs: Any, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """The model's raw outputs for ``inputs`` (a tensor or a mapping of tensors with one row
    per example), computed in batches in inference mode; returned as a float CPU tensor."""
    import torch

    model.eval()
    model.to(device)
    n = _length(inputs)
    outs = []
    with torch.inference_mode():
        for i in range(0, n, max(1, batch_size)):
            batch = map_inputs(inputs, lambda t: t[i:i + batch_size].to(device))
            outs.append(call_model(model, batch).float().cpu())
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def predict_rows(model: nn.Module | ArrayModel, inputs: Any, ids: Sequence[Any], ctx: PredictContext,
                 summary: dict[str, Any] | None = None) -> Predictions:
    """Run ``model`` on preprocessed ``inputs`` (one row per id) and return :class:`Predictions`.

    Classification rows are ``{"id", "prediction": class name, "p_<class>": probability...}``
    (softmax of a module's outputs; an :class:`automl.ArrayModel` gives probabilities itself);
    regression rows ``{"id", "prediction": value}``; other tasks get the raw output as
    ``score`` (one number) or ``score_0..`` columns.
    """
    import torch

    ids = list(ids)
    if not ids:
        return Predictions([], dict(summary or {}))
    array_model = not hasattr(model, "state_dict")  # an ArrayModel predicts probabilities or values itself
    out = torch.as_tensor(np.asarray(model.predict(inputs)), dtype=torch.float32) if array_model \
        else model_outputs(model, inputs, ctx.device, ctx.batch_size)
    if out.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {out.shape[0]} outputs")
    info = ctx.info
    rows: list[dict[str, Any]] = []
    if info.task == "classification":
        out = out.reshape(len(ids), -1)
        probs = out if array_model else torch.softmax(out, dim=-1)
        names = list(info.class_names or [str(i) for i in range(probs.shape[1])])
        if len(names) != probs.shape[1]:
            names = [str(i) for i in range(probs.shape[1])]
        top = probs.argmax(dim=1).tolist()
        for i, row_id in enumerate(ids):
            row = {"id": row_id, "prediction": names[top[i]]}
            row.update({f"p_{n}": round(float(p), 6) for n, p in zip(names, probs[i].tolist())})
            rows.append(row)
    else:
        flat = out.reshape(len(ids), -1)
        key = "prediction" if info.task == "regression" else "score"
        for i, row_id in enumerate(ids):
            values = flat[i].tolist()
            if len(values) == 1:
                rows.append({"id": row_id, key: float(values[0])})
            else:
                rows.append({"id": row_id, **{f"{key}_{j}": float(v) for j, v in enumerate(values)}})
    return Predictions(rows, dict(summary or {}))
