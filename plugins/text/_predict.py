"""``automl predict`` for text: new texts from a CSV, TSV, JSONL or plain text file.

The texts are read from the column ``text_column`` (the study's option, ``text`` by default;
override with ``--option text_column=...``), or one per line from a ``.txt`` file. Each row's
id is its ``id`` column when the file has one, else its row number. Empty texts are skipped
and counted. The vocabulary fitted on the study's train split (``state["tokenizer"]``)
tokenises them exactly as in training; the ``tfidf`` space's model (an
:class:`automl.ArrayModel`, which holds its own fitted vocabulary) gets the raw texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from automl import PredictContext, Predictions, UserError
from automl.data import predict_rows
from automl_plugins.text._data import _present, _read_rows
from automl_plugins.text._tokens import MAX_CHARS, Tokenizer, encode_texts


def read_texts(path: Path, text_column: str) -> tuple[list[Any], list[str], int]:
    """``(ids, texts, skipped)`` of a file of new texts."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; text prediction reads a CSV, TSV, JSONL or .txt file")
    if path.suffix.lower() == ".txt":
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a UTF-8 text file") from None
        kept = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
        return [i for i, _ in kept], [t for _, t in kept], len(lines) - len(kept)
    names, rows = _read_rows(path)
    if text_column not in names:
        raise UserError(f"{path.name}: no column {text_column!r}; the file has columns: {', '.join(names) or 'none'} "
                        "(choose with --option text_column=...)")
    ids, texts, skipped = [], [], 0
    for n, row in enumerate(rows, 1):
        text = row.get(text_column)
        if not _present(text):
            skipped += 1
            continue
        ids.append(row["id"] if "id" in names and _present(row.get("id")) else n)
        texts.append(str(text))
    return ids, texts, skipped


def predict_texts(model: nn.Module, path: str, ctx: PredictContext) -> Predictions:
    """``Dataset.predict`` of the text datasets: classify the texts of a file."""
    tok_state = ctx.state.get("tokenizer")
    raw = not isinstance(model, nn.Module)  # the tfidf model reads raw texts
    if not raw and not tok_state:
        raise UserError("the model's preprocessing has no fitted vocabulary (state['tokenizer'])")
    ids, texts, skipped = read_texts(Path(path), ctx.options.get("text_column") or "text")
    summary = {"texts": len(texts), "skipped rows (empty text)": skipped}
    if not texts:
        return Predictions([], summary)
    if raw:
        return predict_rows(model, encode_texts(texts), ids, ctx, summary)
    tok = Tokenizer(list(tok_state["vocab"]), int(tok_state["max_len"]), int(tok_state.get("word_ngrams", 1)),
                    int(tok_state.get("char_ngrams", 0)))
    tokens, lengths = tok.encode([t[:MAX_CHARS] for t in texts])
    return predict_rows(model, {"tokens": tokens, "lengths": lengths}, ids, ctx, summary)
