"""Recsys datasets: reading interaction files, the built-in synthetic data, and the splits.

Interactions are held as parallel arrays (user id, item id, rating, timestamp). Raw ids are
mapped to contiguous indices fitted on the **train split only**, starting at 1: index 0 means
"unknown" (a user or item seen only at validation or test time, i.e. cold start). Models give
index 0 a zero embedding, so a cold-start row gets a well-defined prediction (the global bias)
instead of an index error, and the number of cold-start rows is reported in ``summary``.

Explicit ratings (``implicit=false``) form a regression task: each row is a (user, item)
pair and its rating. Implicit feedback (``implicit=true``) forms a ranking task: each
interaction is a positive, negatives are sampled during training (see ``_spaces.step``), and
validation / test rank the whole item catalogue per user (see :mod:`._rank`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl import DataBundle, DataInfo, Split, UserError
from automl.data import three_way_split
from automl_plugins.recsys._rank import RankingEval


@dataclass
class Interactions:
    """Parallel arrays of one interaction log (raw ids as strings)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    times: np.ndarray
    has_time: bool = True

    def __len__(self) -> int:
        return len(self.users)


def _delimiter(line: str) -> str | None:
    if "\t" in line:
        return "\t"
    if "::" in line:
        return "::"
    if "," in line:
        return ","
    if ";" in line:
        return ";"
    return None  # whitespace


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_interactions(path: str | Path) -> Interactions:
    """Read ``user, item, rating[, timestamp]`` rows from a CSV or TSV file.

    The delimiter (tab, ``::``, comma, semicolon or whitespace) is detected from the first
    line; a header row (a non-numeric rating field, as in MovieLens ``ratings.csv``) is
    skipped. So MovieLens ``u.data`` (tab-separated, no header), ``ratings.csv`` (header
    ``userId,movieId,rating,timestamp``) and ``ratings.dat`` (``::``) are read directly.
    Every row must have the same 3 or 4 columns; anything else is a :class:`UserError`.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"ratings file not found: {p}")
    if not p.is_file():
        raise UserError(f"ratings path is not a file: {p}")
    with p.open(newline="", encoding="utf-8", errors="replace") as fh:
        lines = [(n, line.strip()) for n, line in enumerate(fh, 1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise UserError(f"{p}: the file is empty")
    delim = _delimiter(lines[0][1])

    def fields(line: str) -> list[str]:
        if delim is None:
            return line.split()
        if delim == "::":
            return line.split("::")
        return [f.strip() for f in next(csv.reader([line], delimiter=delim))]

    first = fields(lines[0][1])
    if len(first) >= 3 and not _number(first[2]):
        lines = lines[1:]  # a header row
    width = None
    users, items, ratings, times = [], [], [], []
    for n, line in lines:
        row = fields(line)
        if len(row) not in (3, 4):
            raise UserError(f"{p}: line {n} has {len(row)} columns; expected 3 or 4 "
                            "(user, item, rating[, timestamp])")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise UserError(f"{p}: line {n} has {len(row)} columns, earlier lines have {width}")
        try:
            rating = float(row[2])
            stamp = float(row[3]) if width == 4 else float(len(times))
        except ValueError:
            raise UserError(f"{p}: line {n}: rating and timestamp must be numbers, got {row[2:]!r}") from None
        if not (math.isfinite(rating) and math.isfinite(stamp)):
            raise UserError(f"{p}: line {n}: rating and timestamp must be finite numbers")
        users.append(row[0])
        items.append(row[1])
        ratings.append(rating)
        times.append(stamp)
    if not users:
        raise UserError(f"{p}: no interactions after the header")
    return Interactions(np.array(users, dtype=str), np.array(items, dtype=str),
                        np.array(ratings, dtype=np.float64), np.array(times, dtype=np.float64),
                        has_time=width == 4)


def synthetic_interactions(n_users: int = 600, n_items: int = 300, rank: int = 8,
                           seed: int = 20240607, order_seed: int | None = None) -> Interactions:
    """Deterministic interactions from a low-rank user-item model with popularity skew.

    - Users and items get ``rank``-dimensional Gaussian factors; the affinity of user *u*
      for item *i* is their scaled dot product (the learnable, personal signal).
    - Every item has a popularity log-weight ``-0.8 * log(popularity rank)`` (a Zipf-like
      skew, the signal a most-popular recommender captures).
    - Each user consumes ``8 + Poisson(12)`` distinct items, drawn without replacement
      with probability proportional to ``exp(2.5 * affinity + popularity)`` (Gumbel top-k,
      which is the noise). Consumption order (the timestamps) is random, so the last item
      of a user is a fresh draw from the same preferences. ``order_seed`` (the study's
      seed, see :func:`load_synthetic`) redraws that order, and nothing else: the same
      interactions, another item of each user held out by ``leave_last_out``.
    - The explicit rating is ``clip(round(3 + 1.2 * z(affinity) + N(0, 0.5)), 1, 5)``.

    How much of this a model can learn (measured for the defaults, ``leave_last_out``, NDCG@10
    on test, seed 0): ranking by the true logits 0.47; the true popularity alone 0.08 (what
    ``most_popular`` gets); random 0.01. The gap between the last two and the first is the
    personal signal a recommender must find.
    """
    rng = np.random.default_rng(seed)
    user_f = rng.normal(size=(n_users, rank))
    item_f = rng.normal(size=(n_items, rank))
    affinity = user_f @ item_f.T / math.sqrt(rank)
    popularity = -0.8 * np.log(rng.permutation(n_items) + 1.0)
    logits = 2.5 * affinity + popularity[None, :]
    counts = np.minimum(8 + rng.poisson(12, n_users), n_items)
    z = (affinity - affinity.mean()) / affinity.std()
    users, items, ratings, times = [], [], [], []
    clock = 0
    for u in range(n_users):
        keys = logits[u] + rng.gumbel(size=n_items)
        chosen = np.argsort(-keys)[: counts[u]]
        rng.shuffle(chosen)
        for i in chosen:
            users.append(f"u{u}")
            items.append(f"i{i}")
            ratings.append(float(np.clip(np.round(3 + 1.2 * z[u, i] + rng.normal(0, 0.5)), 1, 5)))
            times.append(float(clock))
            clock += 1
    users_arr, times_arr = np.array(users), np.array(times, dtype=np.float64)
    if order_seed is not None:  # each user's rows keep their own time stamps, in a new order
        order_rng = np.random.default_rng([order_seed, seed])
        starts = np.r_[0, np.cumsum(counts)]
        for u in range(n_users):
            times_arr[starts[u]:starts[u + 1]] = order_rng.permutation(times_arr[starts[u]:starts[u + 1]])
    return Interactions(users_arr, np.array(items), np.array(ratings), times_arr)


def leave_last_out(users: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, the latest interaction is test, the one before it validation, the rest train.

    Ties in time keep file order. Users with fewer than 3 interactions stay wholly in train.
    Returns sorted row indices ``(train, val, test)``.
    """
    n = len(users)
    order = np.lexsort((np.arange(n), times, users))
    sorted_users = users[order]
    _, start, counts = np.unique(sorted_users, return_index=True, return_counts=True)
    size = np.repeat(counts, counts)
    from_end = size - 1 - (np.arange(n) - np.repeat(start, counts))
    enough = size >= 3
    test = order[enough & (from_end == 0)]
    val = order[enough & (from_end == 1)]
    train = order[~enough | (from_end >= 2)]
    return np.sort(train), np.sort(val), np.sort(test)


def _encoder(train_ids: np.ndarray):
    vocab = np.unique(train_ids)

    def encode(ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(vocab, ids)
        pos = np.clip(pos, 0, max(len(vocab) - 1, 0))
        known = vocab[pos] == ids if len(vocab) else np.zeros(len(ids), bool)
        return np.where(known, pos + 1, 0).astype(np.int64)

    return vocab, encode


def build_bundle(data: Interactions, *, implicit: bool, split: str, k: int, seed: int,
                 source: str) -> DataBundle:
    """Split interactions, map ids (fitted on train) and build the regression or ranking bundle."""
    if k < 1:
        raise UserError(f"option 'k' must be at least 1, not {k}")
    if split == "leave_last_out":
        train_idx, val_idx, test_idx = leave_last_out(data.users, data.times)
        if len(val_idx) == 0:
            raise UserError(f"{source}: leave_last_out needs users with at least 3 interactions; none has")
    else:
        if len(data) < 10:
            raise UserError(f"{source}: {len(data)} interactions are too few to split (need 10)")
        train_idx, val_idx, test_idx = three_way_split(len(data), seed, val=0.1, test=0.1)
    user_vocab, enc_user = _encoder(data.users[train_idx])
    item_vocab, enc_item = _encoder(data.items[train_idx])
    n_users, n_items = len(user_vocab) + 1, len(item_vocab) + 1

    def pairs(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(enc_user(data.users[idx])), torch.from_numpy(enc_item(data.items[idx]))

    parts = {name: pairs(idx) for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
    summary: dict[str, Any] = {"interactions": len(data), "users": n_users - 1, "items": n_items - 1,
                               "split": f"{split} ({len(train_idx)}/{len(val_idx)}/{len(test_idx)})"}
    for name in ("val", "test"):
        u, i = parts[name]
        summary[f"cold-start {name} rows"] = (f"{int(((u == 0) | (i == 0)).sum())} "
                                              f"({int((u == 0).sum())} new user, {int((i == 0).sum())} new item)")
    extra = {"n_users": n_users, "n_items": n_items, "implicit": implicit, "k": k}
    state = {"users": user_vocab.tolist(), "items": item_vocab.tolist(), "implicit": implicit, "split": split}
    if not implicit:
        info = DataInfo(task="regression", input_shape=(), extra=extra)

        def split_of(name: str, idx: np.ndarray) -> Split:
            u, i = parts[name]
            return Split({"user": u, "item": i}, torch.from_numpy(data.ratings[idx]).float())

        return DataBundle(split_of("train", train_idx), split_of("val", val_idx), split_of("test", test_idx),
                          info, state=state, summary=summary)
    # Implicit: train positives deduplicated; evaluation ranks the catalogue (see RankingEval).
    u, i = parts["train"]
    uniq = torch.unique(torch.stack([u, i], dim=1), dim=0)
    parts["train"] = (uniq[:, 0].contiguous(), uniq[:, 1].contiguous())
    evaluator = RankingEval(n_items, parts["train"], parts["val"], parts["test"], k)
    for name in ("val", "test"):
        summary[f"ranked {name} users"] = f"{evaluator.n_users(name)} (top-{k} over {n_items - 1} items)"

    def implicit_split(name: str) -> Split:
        u, i = parts[name]
        return Split({"user": u, "item": i}, torch.ones(len(u)))

    info = DataInfo(task="ranking", input_shape=(), extra=extra)
    return DataBundle(implicit_split("train"), implicit_split("val"), implicit_split("test"), info,
                      state=state, summary=summary, evaluate=evaluator)


def load_ratings(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """``--data PATH`` to a ``user, item, rating[, timestamp]`` CSV / TSV (MovieLens ``u.data``,
    ``ratings.csv``). Explicit ratings (regression) by default; ``implicit=true`` turns every
    interaction into a positive for ranking. ``split=leave_last_out`` uses the timestamp
    column (file order when there is none)."""
    data = read_interactions(path)
    return build_bundle(data, implicit=bool(options["implicit"]), split=options["split"],
                        k=int(options["k"]), seed=seed, source=str(path))


def load_synthetic(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """The built-in data (no download): see :func:`synthetic_interactions`. Implicit feedback
    with a leave-last-out split by default, so the search is scored by NDCG@K. The study's
    ``seed`` draws the consumption order, so each seed holds out other items (the
    interactions themselves do not change)."""
    data = synthetic_interactions(order_seed=seed)
    return build_bundle(data, implicit=bool(options["implicit"]), split=options["split"],
                        k=int(options["k"]), seed=seed, source="synthetic")
