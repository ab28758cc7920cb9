"""Ranking evaluation over the full item catalogue, the @K metrics and the baselines.

Protocol (the usual one for implicit feedback, e.g. NCF / RecBole "full ranking"):

- For each user of the validation (test) split, the model scores **every** item of the
  catalogue (the items seen in train; index 0, the unknown item, is never recommended).
- Items the user has already interacted with are excluded: the train items for validation,
  and the train + validation items for test.
- The top K remaining items are the recommendation; the user's held-out items (minus any
  already seen, and minus cold-start items, which no model can recommend) are the relevant set.
- Cold-start users (not in train) cannot be ranked and are skipped; they are counted in the
  dataset summary.

``evaluate`` returns ``(y_true, y_pred)``: ``y_true`` an ``(U, M)`` int array of each user's
relevant items padded with -1, ``y_pred`` an ``(U, K)`` int array of the recommended items
in rank order. The metrics below take exactly these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from automl import Baseline, DataBundle, Metric

RANK = ("ranking",)


def _groups(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of each user's distinct items."""
    key = np.unique(users.astype(np.int64) * (items.max(initial=0) + 1) + items)
    m = items.max(initial=0) + 1
    u, i = key // m, key % m
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.add.at(indptr, u + 1, 1)
    return np.cumsum(indptr), i


class RankingEval:
    """Callable ``(model, split_name, device) -> (y_true, y_pred)`` for a ranking bundle.

    ``train``, ``val`` and ``test`` are ``(user, item)`` index tensors; ``n_items`` counts
    index 0 (unknown). The model is called as ``model(user=..., item=...)`` on every
    (user, item) pair of a chunk of users and must return one score per pair.
    """

    def __init__(self, n_items: int, train, val, test, k: int) -> None:
        self.n_items, self.k = int(n_items), int(k)
        parts = {n: (u.cpu().numpy(), i.cpu().numpy()) for n, (u, i) in
                 (("train", train), ("val", val), ("test", test))}
        n_users = int(max(int(p[0].max(initial=0)) for p in parts.values())) + 1
        self.seen = {
            "val": _groups(*parts["train"], n_users),
            "test": _groups(np.concatenate([parts["train"][0], parts["val"][0]]),
                            np.concatenate([parts["train"][1], parts["val"][1]]), n_users),
        }
        self.targets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in ("val", "test"):
            u, i = parts[name]
            keep = (u > 0) & (i > 0)  # cold-start users and items cannot be ranked
            indptr, seen = self.seen[name]
            held_ptr, held = _groups(u[keep], i[keep], n_users)
            users, rows = [], []
            for user in np.nonzero(np.diff(held_ptr))[0]:
                rel = np.setdiff1d(held[held_ptr[user]:held_ptr[user + 1]], seen[indptr[user]:indptr[user + 1]])
                if len(rel):
                    users.append(user)
                    rows.append(rel)
            width = max((len(r) for r in rows), default=1)
            y_true = np.full((len(rows), width), -1, dtype=np.int64)
            for row, rel in enumerate(rows):
                y_true[row, : len(rel)] = rel
            self.targets[name] = (np.array(users, dtype=np.int64), y_true)

    def n_users(self, split: str) -> int:
        """How many users of ``split`` are ranked (not cold start, with a relevant item)."""
        return len(self.targets[split][0])

    def rank(self, scores_for: Callable[[torch.Tensor], torch.Tensor], split: str,
             device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """Top-K items per user from ``scores_for(users) -> (B, n_items)`` scores."""
        users, y_true = self.targets[split]
        indptr, seen = self.seen[split]
        k = min(self.k, self.n_items - 1)
        chunk = max(1, 2**18 // self.n_items)
        out = []
        for start in range(0, len(users), chunk):
            batch = users[start:start + chunk]
            scores = scores_for(torch.from_numpy(batch).to(device)).float().clone()
            lens = indptr[batch + 1] - indptr[batch]
            rows = np.repeat(np.arange(len(batch)), lens)
            cols = np.concatenate([seen[indptr[b]:indptr[b + 1]] for b in batch]) if len(batch) else []
            scores[:, 0] = -torch.inf
            seen = (torch.from_numpy(rows).to(scores.device), torch.as_tensor(cols, dtype=torch.long).to(scores.device))
            scores[seen] = -torch.inf
            out.append(scores.topk(k, dim=1).indices.cpu().numpy())
        y_pred = np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)
        return y_true, y_pred

    def __call__(self, model: torch.nn.Module, split: str, device: torch.device) -> tuple[Any, Any]:
        if split not in self.targets:
            raise KeyError(f"ranking evaluation covers val and test, not {split!r}")
        items = torch.arange(self.n_items, device=device)

        def scores_for(users: torch.Tensor) -> torch.Tensor:
            if hasattr(model, "score_all"):  # a fast path the model may offer
                return model.score_all(users, items)
            b = len(users)
            out = model(user=users.repeat_interleave(self.n_items), item=items.repeat(b))
            return out.reshape(b, self.n_items)

        model.eval()
        with torch.inference_mode():
            return self.rank(scores_for, split, device)

    @classmethod
    def from_bundle(cls, data: DataBundle) -> RankingEval:
        """Rebuild the evaluator of a ranking bundle from its splits."""
        if isinstance(data.evaluate, cls):
            return data.evaluate
        pick = lambda s: (s.inputs["user"], s.inputs["item"])
        return cls(data.info.extra["n_items"], pick(data.train), pick(data.val), pick(data.test),
                   data.info.extra.get("k", 10))


# --- metrics -------------------------------------------------------------------------------

def _hits(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    hits = (y_pred[:, :, None] == y_true[:, None, :]).any(axis=2) & (y_pred >= 0)
    return hits, (y_true >= 0).sum(axis=1)


def hit_rate(y_true, y_pred) -> float:
    """HR@K: the fraction of users with at least one relevant item in their top K."""
    hits, _ = _hits(y_true, y_pred)
    return float(hits.any(axis=1).mean()) if len(hits) else 0.0


def recall(y_true, y_pred) -> float:
    """Recall@K: relevant items in the top K over the user's relevant items, averaged over users."""
    hits, n_rel = _hits(y_true, y_pred)
    return float((hits.sum(axis=1) / np.maximum(n_rel, 1)).mean()) if len(hits) else 0.0


def ndcg(y_true, y_pred) -> float:
    """NDCG@K with binary relevance: DCG = sum of 1/log2(rank+1) over hits (rank from 1),
    divided by the DCG of an ideal list with min(#relevant, K) hits; averaged over users."""
    hits, n_rel = _hits(y_true, y_pred)
    if not len(hits):
        return 0.0
    discount = 1.0 / np.log2(np.arange(hits.shape[1]) + 2.0)
    dcg = (hits * discount).sum(axis=1)
    ideal = np.cumsum(discount)[np.clip(np.minimum(n_rel, hits.shape[1]) - 1, 0, None)]
    return float((dcg / ideal).mean())


_AT_K = "at K = --option k (default 10), over the full catalogue, seen items excluded"
HR = Metric("hr", "maximize", RANK, hit_rate, f"hit rate {_AT_K}")
NDCG = Metric("ndcg", "maximize", RANK, ndcg, f"normalised discounted cumulative gain {_AT_K}")
RECALL = Metric("recall", "maximize", RANK, recall, f"recall {_AT_K}")


# --- baselines -----------------------------------------------------------------------------

def fit_most_popular(data: DataBundle, metric: Metric) -> dict[str, float]:
    """Recommend the items with most train interactions (seen items excluded), to every user."""
    ev = RankingEval.from_bundle(data)
    counts = torch.bincount(data.train.inputs["item"].cpu(), minlength=ev.n_items).double()
    counts -= torch.arange(ev.n_items, dtype=torch.double) * 1e-9  # deterministic tie-break
    scores_for = lambda users: counts.expand(len(users), -1)
    return {name: float(metric.fn(*ev.rank(scores_for, name))) for name in ("val", "test")}


def fit_item_mean(data: DataBundle, metric: Metric) -> dict[str, float]:
    """Predict each item's mean train rating, shrunk towards the global mean by 5 pseudo-ratings;
    cold-start items get the global mean."""
    items, ratings = data.train.inputs["item"].cpu(), data.train.targets.double().cpu()
    n = int(data.info.extra["n_items"])
    mean = float(ratings.mean())
    sums = torch.zeros(n, dtype=torch.double).index_add_(0, items, ratings)
    counts = torch.bincount(items, minlength=n).double()
    item_mean = (sums + 5.0 * mean) / (counts + 5.0)
    item_mean[0] = mean
    out = {}
    for name in ("val", "test"):
        split = data.split(name)
        pred = item_mean[split.inputs["item"].cpu()]
        out[name] = float(metric.fn(split.targets.double().cpu().numpy(), pred.numpy()))
    return out


MOST_POPULAR = Baseline("most_popular", RANK, fit_most_popular,
                        "the K most interacted-with train items not yet seen by the user")
ITEM_MEAN = Baseline("item_mean", ("regression",), fit_item_mean,
                     "each item's (shrunk) mean train rating")
