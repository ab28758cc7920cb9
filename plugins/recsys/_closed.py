"""Closed-form item-item recommenders: EASE and ItemKNN, and the ``ease`` baseline row.

Both score a user against an item as ``sum_i X[u, i] * W[i, j]``: the user's train
interactions ``X[u]`` (a 0/1 row) times an item-item matrix ``W``. They are fitted in one
step from the train split (no gradient descent): core calls the module's ``fit(train, val,
info)`` instead of its training loop (see :class:`automl.ArrayModel`), then validates,
stores, exports and serves them as any torch module (``state_dict``), since both ``W`` and
the users' histories are buffers of the module.

- :class:`EASE` (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019):
  ``P = (X^T X + lambda I)^-1``, ``W = I - P / diag(P)`` (column ``j`` divided by
  ``P[j, j]``), so ``diag(W) = 0``: the closed-form solution of ridge regression of every item
  on all the others. Searched: ``lambda`` (log scale).
- :class:`ItemKNN` (Sarwar et al., 2001; Deshpande & Karypis, 2004): cosine similarity of the
  items' user columns, ``sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrink)``, with the ``k``
  most similar items kept per target item ``j`` (column ``j`` of ``W``; an item is never its
  own neighbour). Searched: ``k`` and ``shrink`` (which damps similarities resting on few
  co-occurrences).

Why written here and not taken from a library: EASE is four lines of linear algebra, and the
ItemKNN of the usual libraries (``implicit``) is a compiled extension that returns its own
model object; here both are torch modules so the search, ensembles, export and ``automl
predict`` need nothing special. The sparse Gram matrix ``X^T X`` is computed with SciPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import nn

from automl import Baseline, DataBundle, DataInfo, Metric, Split, UserError
from automl_plugins.recsys._rank import RANK, RankingEval

#: The largest catalogue the dense ``n_items x n_items`` matrices are built for: 0.8 GB per
#: float64 matrix at 10,000 items (EASE holds two while it inverts).
MAX_ITEMS = 10_000

#: The ``lambda`` values the ``ease`` baseline row chooses from on validation.
EASE_GRID = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


def interaction_matrix(train: Split, n_users: int, n_items: int) -> sparse.csr_matrix:
    """The 0/1 ``(n_users, n_items)`` matrix of the train split's (user, item) pairs (duplicate
    pairs count once; index 0, the unknown user or item, is left empty)."""
    users = train.inputs["user"].detach().cpu().numpy().astype(np.int64)
    items = train.inputs["item"].detach().cpu().numpy().astype(np.int64)
    keep = (users > 0) & (items > 0) & (users < n_users) & (items < n_items)
    x = sparse.csr_matrix((np.ones(int(keep.sum())), (users[keep], items[keep])), shape=(n_users, n_items))
    x.data[:] = 1.0  # duplicates were summed
    return x


class ItemItem(nn.Module):
    """Scores ``X[u] @ W`` from the buffers ``weights`` (``W``, ``(n_items, n_items)``) and the
    users' train items in CSR form (``indptr``, ``(n_users + 1,)``, and ``history``). A subclass
    computes ``W`` in :meth:`solve`. Unknown users (index 0) have no history: all scores 0."""

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.register_buffer("weights", torch.zeros(self.n_items, self.n_items))
        self.register_buffer("indptr", torch.zeros(self.n_users + 1, dtype=torch.long))
        self.register_buffer("history", torch.zeros(0, dtype=torch.long))

    def solve(self, x: sparse.csr_matrix) -> np.ndarray:
        """The ``(n_items, n_items)`` item-item matrix for the 0/1 interaction matrix ``x``."""
        raise NotImplementedError

    def fit(self, train: Split, val: Split | None, info: DataInfo) -> None:
        """Fit on the train split in closed form (``val`` is not needed: nothing is iterated)."""
        x = interaction_matrix(train, self.n_users, self.n_items)
        w = self.solve(x)
        device = self.weights.device
        self.weights.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
        self.indptr = torch.from_numpy(x.indptr.astype(np.int64)).to(device)
        self.history = torch.from_numpy(x.indices.astype(np.int64)).to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args: Any, **kwargs: Any) -> None:
        # The number of train interactions is not known when the module is built from its
        # config: take the stored history's length.
        stored = state_dict.get(prefix + "history")
        if stored is not None and stored.shape != self.history.shape:
            self.history = torch.zeros(stored.shape, dtype=torch.long, device=self.history.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def user_rows(self, user: torch.Tensor) -> torch.Tensor:
        """The dense 0/1 ``(len(user), n_items)`` train rows of ``user``. Written with sizes
        taken from tensors, never Python ints, so ``torch.jit.trace`` (``automl export``) gives
        a model that serves any batch size."""
        user = user.long().clamp(0, self.n_users - 1)
        start = self.indptr[user]
        lens = self.indptr[user + 1] - start
        rows = torch.repeat_interleave(torch.cumsum(torch.ones_like(user), 0) - 1, lens)
        first = torch.repeat_interleave(start - (torch.cumsum(lens, 0) - lens), lens)
        cols = self.history[first + torch.cumsum(torch.ones_like(rows), 0) - 1]
        out = torch.zeros((user.shape[0], self.n_items), device=self.weights.device, dtype=self.weights.dtype)
        return out.index_put_((rows, cols), torch.ones_like(cols, dtype=out.dtype))

    def score_all(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, len(items))`` scores of each user against ``items`` (one matrix product)."""
        return self.user_rows(user) @ self.weights[:, items.long()]

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """One score per (user, item) row."""
        return (self.user_rows(user) * self.weights[:, item.long()].T).sum(-1)


class EASE(ItemItem):
    """EASE: ``W = I - P / diag(P)`` with ``P = (X^T X + lambda I)^-1`` (see the module)."""

    def __init__(self, n_users: int, n_items: int, lam: float) -> None:
        super().__init__(n_users, n_items)
        self.lam = float(lam)

    def solve(self, x: sparse.csr_matrix) -> np.ndarray:
        gram = torch.from_numpy((x.T @ x).toarray())  # float64
        gram.diagonal().add_(self.lam)
        p = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # X^T X + lambda I is positive definite
        w = -p / p.diagonal()[None, :]
        w.diagonal().zero_()
        return w.numpy()


class ItemKNN(ItemItem):
    """Item-based k-nearest neighbours with shrunk cosine similarity (see the module)."""

    def __init__(self, n_users: int, n_items: int, k: int, shrink: float) -> None:
        super().__init__(n_users, n_items)
        self.k, self.shrink = int(k), float(shrink)

    def solve(self, x: sparse.csr_matrix) -> np.ndarray:
        gram = (x.T @ x).toarray()
        norms = np.sqrt(np.diag(gram))
        sim = gram / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        k = min(self.k, self.n_items - 1)
        if k < self.n_items:  # keep the k largest of each column, zero the others
            drop = np.argpartition(-sim, k, axis=0)[k:]
            np.put_along_axis(sim, drop, 0.0, axis=0)
        return sim


def _sizes(info: DataInfo) -> tuple[int, int]:
    return int(info.extra["n_users"]), int(info.extra["n_items"])


def check(info: DataInfo) -> None:
    """The item-item matrix is dense: refuse catalogues too large for it."""
    if int(info.extra.get("n_items", 0)) > MAX_ITEMS:
        raise UserError(f"the item-item spaces (ease, itemknn) hold a dense n_items x n_items matrix; "
                        f"{info.extra['n_items']} items exceed {MAX_ITEMS}: use mf, ncf or two_tower")


def define_ease(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest EASE's L2 penalty ``lambda`` on a log scale."""
    return {"lambda": trial.suggest_float("lambda", 1.0, 1e4, log=True)}


def build_ease(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build an (unfitted) :class:`EASE` for the dataset's users and items."""
    return EASE(*_sizes(info), cfg["lambda"])


def define_itemknn(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest ItemKNN's neighbourhood size ``k`` and similarity ``shrink`` (both log scale)."""
    most = min(1000, int(info.extra.get("n_items", 2)) - 1)  # every other item
    return {"k": trial.suggest_int("k", 5, most, log=True) if most > 5 else max(1, most),
            "shrink": trial.suggest_float("shrink", 0.01, 1000.0, log=True)}


def build_itemknn(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build an (unfitted) :class:`ItemKNN`; ``k`` is capped at the catalogue size."""
    return ItemKNN(*_sizes(info), cfg["k"], cfg["shrink"])


def no_training(trial, info: DataInfo) -> dict[str, Any]:
    """Closed-form spaces have no training hyperparameters (no epochs, batches, optimizer)."""
    return {}


def fit_ease_baseline(data: DataBundle, metric: Metric) -> dict[str, float]:
    """EASE with ``lambda`` chosen on validation from :data:`EASE_GRID`; its val and test score."""
    ev = RankingEval.from_bundle(data)
    n_users, n_items = _sizes(data.info)
    best: dict[str, float] | None = None
    sign = 1.0 if metric.direction == "maximize" else -1.0
    for lam in EASE_GRID:
        model = EASE(n_users, n_items, lam)
        model.fit(data.train, data.val, data.info)
        val = float(metric.fn(*ev(model, "val", torch.device("cpu"))))
        if best is None or sign * val > sign * best["val"]:
            best = {"val": val, "test": float(metric.fn(*ev(model, "test", torch.device("cpu"))))}
    assert best is not None
    return best


EASE_BASELINE = Baseline("ease", RANK, fit_ease_baseline,
                         "EASE (closed-form item-item ridge), lambda chosen on validation from "
                         + ", ".join(f"{v:g}" for v in EASE_GRID))
