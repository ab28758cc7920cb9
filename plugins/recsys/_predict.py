"""``automl predict`` for recommendations: top-K items for users, or scores of user-item pairs.

The file (CSV, TSV or one id per line; a first row whose first field is ``user``, ``userId``
or ``user_id`` is a header) holds either one user id per row, for which the K best items of
the catalogue are listed (``K`` is the study's option ``k``; ``--option k=N`` changes it),
or ``user, item`` pairs, which are scored (the predicted rating for explicit feedback). Ids
are mapped with the vocabularies fitted on the study's train split (``state["users"]`` and
``state["items"]``); a user the model never saw is skipped and counted. Items the user already
interacted with are not known here, so they are not excluded from the top K.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn

from automl import PredictContext, Predictions, UserError
from automl.data import predict_rows

HEADERS = {"user", "userid", "user_id"}


def read_ids(path: Path) -> list[list[str]]:
    """The rows of a file of user ids or ``user, item`` pairs (header row dropped)."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; recommendation reads a file of user ids or user,item pairs")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    lines = [line for line in lines if line]
    if not lines:
        raise UserError(f"{path}: the file is empty")
    delim = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else (";" if ";" in lines[0] else None))
    rows = [[f.strip() for f in (next(csv.reader([line], delimiter=delim)) if delim else line.split())]
            for line in lines]
    if rows[0][0].lower() in HEADERS:
        rows = rows[1:]
    return rows


def _index(vocab: list[str], ids: list[str]) -> np.ndarray:
    lookup = {v: i + 1 for i, v in enumerate(vocab)}
    return np.array([lookup.get(x, 0) for x in ids], dtype=np.int64)


def predict_users(model: nn.Module, path: str, ctx: PredictContext) -> Predictions:
    """``Dataset.predict`` of the recsys datasets (see the module docstring)."""
    users_vocab, items_vocab = ctx.state.get("users"), ctx.state.get("items")
    if users_vocab is None or items_vocab is None:
        raise UserError("the model's preprocessing has no user and item vocabularies")
    rows = read_ids(Path(path))
    pairs = all(len(r) >= 2 for r in rows)
    users = _index(users_vocab, [r[0] for r in rows])
    if pairs:
        items = _index(items_vocab, [r[1] for r in rows])
        keep = np.flatnonzero((users > 0) & (items > 0))
        summary = {"pairs": len(keep), "skipped pairs (unknown user or item)": len(rows) - len(keep)}
        inputs = {"user": torch.from_numpy(users[keep]), "item": torch.from_numpy(items[keep])}
        ids = [f"{rows[i][0]}:{rows[i][1]}" for i in keep]
        return predict_rows(model, inputs, ids, ctx, summary)
    k = int(ctx.options.get("k") or 10)
    if k < 1:
        raise UserError(f"option 'k' must be at least 1, not {k}")
    keep = np.flatnonzero(users > 0)
    n_items = len(items_vocab) + 1
    k = min(k, n_items - 1)
    catalogue = torch.arange(n_items, device=ctx.device)
    model.eval().to(ctx.device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(keep), 256):
            u = torch.from_numpy(users[keep[start:start + 256]]).to(ctx.device)
            if hasattr(model, "score_all"):
                scores = model.score_all(u, catalogue)
            else:
                scores = model(user=u.repeat_interleave(n_items), item=catalogue.repeat(len(u))).reshape(len(u), -1)
            scores = scores.float()
            scores[:, 0] = -torch.inf  # id 0: an item unseen in train
            top = scores.topk(k, dim=1)
            pairs = zip(top.indices.cpu().tolist(), top.values.cpu().tolist())
            for row, (idx, val) in zip(keep[start:start + 256], pairs):
                out += [{"id": rows[row][0], "rank": r + 1, "item": items_vocab[i - 1], "score": round(s, 6)}
                        for r, (i, s) in enumerate(zip(idx, val))]
    return Predictions(out, {"users": len(keep), "skipped users (unknown)": len(rows) - len(keep), "k": k})
