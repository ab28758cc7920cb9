"""``automl predict``: predictions on new data with a study's model, as CSV.

A dataset's ``predict_new(model, path, ctx)`` (see :class:`automl.Dataset`) reads new data
with the plugin's own reader and applies the fitted preprocessing in ``ctx.state``; it then
calls :func:`automl.data.predict_rows`, which batches the inputs through the model and turns
the outputs into rows. :func:`run_predict` is what the CLI calls: it loads the model (the best
of a study, one of its kept trials, or an ``automl export`` folder), calls the dataset's
``predict_new`` and writes the rows as CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from automl.errors import UserError
from automl.types import PredictContext, Predictions


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
                device: str | None = None, plugin_paths: list[str] | None = None) -> tuple[Predictions, str]:
    """Predict on ``data`` with the model of ``source`` (a study name or an export folder): the
    study's final model (its ensemble where it has one), or trial ``trial``.

    Returns the predictions and their CSV text; with ``out`` the CSV is also written there.
    ``plugin_paths``: where the plugin's file is now, for a study or export made with
    ``--plugin-path`` whose file moved (default: the path the study stored).
    """
    import torch

    from automl.output.artifact import EnsembleArtifact, load

    if batch_size <= 0:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}")
    path = Path(data)
    if not path.exists():
        raise UserError(f"--data {data}: no such file or folder")
    found = load(source, trial, plugin_paths=plugin_paths)
    dataset = found.dataset
    if dataset.predict_new is None or not callable(dataset.predict_new):
        raise UserError(f"dataset {dataset.name!r} of plugin {found.plugin_name!r} cannot predict on new data "
                        "(it registers no predict_new function)")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(found, EnsembleArtifact):
        parts = [(_predict_one(art, path, data, options, dev, batch_size), w) for art, w in found.members]
        result = combine_rows(parts, found.members[0][0].info.task)
    else:
        result = _predict_one(found, path, data, options, dev, batch_size)
    text = rows_to_csv(result.rows)
    if out:
        target = Path(out)
        if not target.parent.is_dir():
            raise UserError(f"--out {out}: folder {target.parent} does not exist")
        target.write_text(text)
    return result, text


def _predict_one(art: Any, path: Path, data: str, options: list[str] | None, device: Any,
                 batch_size: int) -> Predictions:
    """One model's predictions on new data, through its dataset's ``predict_new``."""
    from automl.study.resolve import parse_options

    dataset = art.dataset
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
    ctx = PredictContext(state=art.state, options=merged, info=art.info, config=art.config, device=device,
                         batch_size=batch_size)
    try:
        result = dataset.predict_new(art.model(), str(path.resolve()), ctx)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise UserError(f"--data {data}: {exc.strerror or exc}") from None
    if not isinstance(result, Predictions):
        raise TypeError(f"dataset {dataset.name!r} predict_new() returned {type(result).__name__}, not Predictions")
    if not result.rows:
        raise UserError(f"--data {data}: no example to predict on"
                        + (f" ({', '.join(f'{k}: {v}' for k, v in result.summary.items())})" if result.summary else ""))
    return result


def combine_rows(parts: list[tuple[Predictions, float]], task: str) -> Predictions:
    """An ensemble's predictions from its members' (same examples, same order): every numeric
    column is the weighted average (class probabilities ``p_<class>``, values, scores), and a
    classification's ``prediction`` is then the most probable class."""
    first = parts[0][0]
    for other, _ in parts[1:]:
        if [r["id"] for r in other.rows] != [r["id"] for r in first.rows]:
            raise ValueError("the ensemble's members predicted on different examples")
    rows = []
    for i, base in enumerate(first.rows):
        row: dict[str, Any] = {"id": base["id"]}
        for key, value in base.items():
            if key == "id" or isinstance(value, str):
                continue
            row[key] = round(sum(w * float(p.rows[i][key]) for p, w in parts), 6)
        probs = {k[2:]: v for k, v in row.items() if k.startswith("p_")}
        if task == "classification" and probs:
            row = {"id": row["id"], "prediction": max(probs, key=probs.get), **row}
        elif "prediction" in base and isinstance(base["prediction"], str):
            row["prediction"] = base["prediction"]
        rows.append(row)
    return Predictions(rows, dict(first.summary))
