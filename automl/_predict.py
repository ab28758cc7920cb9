"""Predictions on new data: the common forward pass plugins call, and ``automl predict``.

A dataset's ``predict(model, path, ctx)`` (see :class:`automl.Dataset`) reads new data with
the plugin's own reader and applies the fitted preprocessing in ``ctx.state``; it then calls
:func:`predict_rows`, which batches the inputs through the model and turns the outputs into
rows: the class name and one probability column per class for classification, the value for
regression. :func:`run_predict` is what the CLI calls: it loads the model (the best of a study,
one of its kept trials, or an ``automl export`` folder), calls the dataset's ``predict`` and
writes the rows as CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from automl._errors import UserError
from automl._types import PredictContext, Predictions, call_model, map_inputs


def _length(inputs: Any) -> int:
    sizes: list[int] = []
    map_inputs(inputs, lambda t: sizes.append(int(t.shape[0])) or t)
    if not sizes or len(set(sizes)) != 1:
        raise ValueError(f"inputs have different first dimensions: {sizes}")
    return sizes[0]


def model_outputs(model: nn.Module, inputs: Any, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """The model's raw outputs for ``inputs`` (a tensor or a mapping of tensors with one row
    per example), computed in batches in inference mode; returned as a float CPU tensor."""
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


def predict_rows(model: nn.Module, inputs: Any, ids: Sequence[Any], ctx: PredictContext,
                 summary: dict[str, Any] | None = None) -> Predictions:
    """Run ``model`` on preprocessed ``inputs`` (one row per id) and return :class:`Predictions`.

    Classification rows are ``{"id", "prediction": class name, "p_<class>": probability...}``
    (softmax of the outputs); regression rows ``{"id", "prediction": value}``; other tasks get
    the raw output as ``score`` (one number) or ``score_0..`` columns.
    """
    ids = list(ids)
    if not ids:
        return Predictions([], dict(summary or {}))
    out = model_outputs(model, inputs, ctx.device, ctx.batch_size)
    if out.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {out.shape[0]} outputs")
    info = ctx.info
    rows: list[dict[str, Any]] = []
    if info.task == "classification":
        probs = torch.softmax(out.reshape(len(ids), -1), dim=-1)
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


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV text; the columns are the union of the rows' keys, in first-seen order."""
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns) or ["id"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def run_predict(source: str, data: str, *, trial: int | None = None, options: list[str] | None = None,
                out: str | None = None, batch_size: int = 1024,
                device: str | None = None) -> tuple[Predictions, str]:
    """Predict on ``data`` with the model of ``source`` (a study name or an export folder).

    Returns the predictions and their CSV text; with ``out`` the CSV is also written there.
    """
    from automl._export import load_artifact
    from automl._spec import parse_options

    if batch_size <= 0:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    path = Path(data)
    if not path.exists():
        raise UserError(f"--data {data}: no such file or folder")
    art = load_artifact(source, trial)
    dataset = art.dataset
    if dataset.predict is None or not callable(dataset.predict):
        raise UserError(f"dataset {dataset.name!r} of plugin {art.plugin_name!r} cannot predict on new data "
                        "(it registers no predict function)")
    merged = dict(art.options)
    declared = {o.name for o in dataset.options}
    for raw in options or []:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad --option {raw!r}: expected key=value")
        key = key.strip()
        # a declared option is checked and converted; others (text_column for a generated
        # dataset) are for the plugin's reader of new data and pass as text
        merged[key] = parse_options(dataset, [raw])[key] if key in declared else value.strip()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = art.model()
    ctx = PredictContext(state=art.state, options=merged, info=art.info, config=art.config, device=dev,
                         batch_size=batch_size)
    try:
        result = dataset.predict(model, str(path.resolve()), ctx)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise UserError(f"--data {data}: {exc.strerror or exc}") from None
    if not isinstance(result, Predictions):
        raise TypeError(f"dataset {dataset.name!r} predict() returned {type(result).__name__}, not Predictions")
    if not result.rows:
        raise UserError(f"--data {data}: no example to predict on"
                        + (f" ({', '.join(f'{k}: {v}' for k, v in result.summary.items())})" if result.summary else ""))
    text = rows_to_csv(result.rows)
    if out:
        target = Path(out)
        if not target.parent.is_dir():
            raise UserError(f"--out {out}: folder {target.parent} does not exist")
        target.write_text(text)
    return result, text
