"""``automl predict`` for tables: new rows from a CSV, TSV or JSONL file.

The file must have every feature column the model was trained on (by name, any order);
other columns (the target, an ``id``) are ignored, except that an ``id`` column that is not a
feature names the rows (else the row number does). Missing cells are imputed, numbers
standardised and categories mapped with the values fitted on the study's train split
(``state["preprocessing"]``), exactly as in training; a category never seen in train gets the
"unseen" id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from automl import PredictContext, Predictions, UserError
from automl.data import predict_rows, read_table
from automl_plugins.tabular._prep import TablePrep
from automl_plugins.tabular._read import is_missing, to_float


def predict_table(model: nn.Module, path: str, ctx: PredictContext) -> Predictions:
    """``Dataset.predict`` of the tabular datasets: predict every row of a table."""
    state = ctx.state.get("preprocessing")
    if not state:
        raise UserError("the model's preprocessing has no fitted table statistics (state['preprocessing'])")
    prep = TablePrep(**state)
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p} is a folder; tabular prediction reads a CSV, TSV or JSONL file")
    columns = read_table(p)
    missing = [c for c in prep.num_columns + prep.cat_columns if c not in columns]
    if missing:
        raise UserError(f"{p.name}: missing feature column(s) {', '.join(map(repr, missing[:5]))}"
                        f"{' ...' if len(missing) > 5 else ''}; the model needs: "
                        f"{', '.join(prep.num_columns + prep.cat_columns)}")
    n = len(next(iter(columns.values())))
    num = np.full((n, len(prep.num_columns)), np.nan, dtype=np.float64)
    for j, name in enumerate(prep.num_columns):
        for i, cell in enumerate(columns[name]):
            value = to_float(cell)
            if value is None and not is_missing(cell):
                raise UserError(f"{p.name}: row {i + 1}, column {name!r}: {cell!r} is not a number")
            num[i, j] = np.nan if value is None else value
    cat = np.empty((n, len(prep.cat_columns)), dtype=object)
    for j, name in enumerate(prep.cat_columns):
        cat[:, j] = [None if is_missing(v) else str(v).strip() for v in columns[name]]
    x_num, x_cat = prep.transform(num, cat)
    features = set(prep.num_columns) | set(prep.cat_columns)
    ids = columns["id"] if "id" in columns and "id" not in features else list(range(1, n + 1))
    unseen = int(sum((x_cat[:, j] == 0).sum() for j in range(x_cat.shape[1]))) if x_cat.size else 0
    summary = {"rows": n, "unseen categories": unseen}
    inputs = {"num": torch.from_numpy(x_num), "cat": torch.from_numpy(x_cat)}
    return predict_rows(model, inputs, ids, ctx, summary)
