"""Text datasets: the generated ``synthetic_reviews`` and a user's CSV, TSV or JSONL file.

A loaded bundle holds the raw texts (see :mod:`._tokens`); the tokenisation is per trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl import DataBundle, DataInfo, Metric, Option, Split, UserError
from automl.data import read_table, three_way_split
from automl_plugins.text._synth import LABELS, generate
from automl_plugins.text._tokens import encode_texts, split_texts

CSV_OPTIONS = (
    Option("text_column", str, "text", "the column holding the text"),
    Option("label_column", str, "label", "the column holding the label"),
)
SYNTH_OPTIONS = (Option("size", int, 2400, "number of generated reviews"),)


def bundle_from_texts(texts: list[str], labels: list[int], class_names: list[str], seed: int,
                      summary: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> DataBundle:
    """A stratified train / validation / test bundle of raw texts and class ids."""
    y = np.asarray(labels, dtype=np.int64)
    train_idx, val_idx, test_idx = three_way_split(len(y), seed, stratify=y)
    inputs = encode_texts(texts)
    targets = torch.from_numpy(y)

    def take(idx: np.ndarray) -> Split:
        t = torch.from_numpy(idx)
        return Split({k: v[t] for k, v in inputs.items()}, targets[t])

    info = DataInfo(task="classification", num_classes=len(class_names), class_names=list(class_names))
    counts = {"texts": len(texts), "classes": len(class_names), **(summary or {})}
    return DataBundle(take(train_idx), take(val_idx), take(test_idx), info,
                      state={"class_names": list(class_names), **(state or {})}, summary=counts)


def load_synthetic(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """Generated reviews whose labels depend on negation and on which clause of a contrast
    dominates (see :mod:`automl_plugins.text._synth`); deterministic, no download."""
    size = int(options.get("size") or 2400)
    if size < 50 or size > 1_000_000:
        raise UserError(f"option 'size' must be between 50 and 1000000, not {size}")
    texts, labels = generate(size)
    return bundle_from_texts(texts, labels, list(LABELS), seed, state={"source": "synthetic_reviews"})


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """``(column names, rows)`` of a CSV, TSV or JSONL file (comma-separated unless .tsv:
    texts are full of the characters a delimiter sniffer would guess)."""
    columns = read_table(path, sniff=False)
    names = list(columns)
    return names, [dict(zip(names, values)) for values in zip(*columns.values())]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def load_table(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """A user's labelled texts: ``--data PATH`` to a CSV, TSV (by extension) or JSONL file,
    columns chosen with ``--option text_column=...`` and ``--option label_column=...``.

    Labels may be any strings or numbers (any number of classes, sorted numerically when all
    are numbers); rows with a missing text or label are skipped and counted in the summary.
    """
    p = Path(path)
    names, rows = _read_rows(p)
    text_col, label_col = options.get("text_column") or "text", options.get("label_column") or "label"
    missing = [c for c in (text_col, label_col) if c not in names]
    if missing:
        raise UserError(f"{p.name}: no column {', '.join(map(repr, missing))}; the file has columns: "
                        f"{', '.join(names) or 'none'} (choose with --option text_column=... / label_column=...)")
    texts, raw_labels, skipped = [], [], 0
    for row in rows:
        text, label = row.get(text_col), row.get(label_col)
        if not (_present(text) and _present(label)):
            skipped += 1
            continue
        texts.append(str(text))
        raw_labels.append(str(label).strip())
    class_names = _class_names(raw_labels)
    if len(texts) < 10:
        raise UserError(f"{p.name}: {len(texts)} usable rows; at least 10 labelled texts are needed")
    if len(class_names) < 2:
        raise UserError(f"{p.name}: column {label_col!r} has a single label {class_names[0]!r}")
    index = {c: i for i, c in enumerate(class_names)}
    return bundle_from_texts(texts, [index[c] for c in raw_labels], class_names, seed,
                             summary={"skipped rows (missing text or label)": skipped},
                             state={"source": p.name, "text_column": text_col, "label_column": label_col})


def _class_names(labels: list[str]) -> list[str]:
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def fit_unigram_logreg(data: DataBundle, metric: Metric) -> dict[str, float]:
    """Baseline: TF-IDF of single words and logistic regression, fitted on train. It ignores
    word order, so it shows how much order matters on a dataset."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = split_texts(data)
    vec = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b\w+\b")
    model = LogisticRegression(max_iter=2000)
    y_train = data.train.targets.cpu().numpy()
    model.fit(vec.fit_transform(texts["train"]), y_train)
    scores = {}
    for name in ("val", "test"):
        proba = np.zeros((len(texts[name]), int(data.info.num_classes)))
        proba[:, model.classes_] = model.predict_proba(vec.transform(texts[name]))
        scores[name] = float(metric.fn(data.split(name).targets.cpu().numpy(), proba))
    return scores
