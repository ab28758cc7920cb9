"""Recsys search spaces: biased MF, NeuMF and a two-tower model, and their training step.

Every model is called as ``model(user=LongTensor, item=LongTensor)`` and returns one score
per (user, item) row: a rating (explicit feedback, where core's TargetScaler maps it to
rating units) or a preference logit (implicit feedback). Index 0 of users and items is the
unknown (cold-start) id: its embeddings and biases are fixed at zero.

Searched besides the usual training hyperparameters (see :func:`train_space`):
``dim`` (embedding size), ``reg`` (L2 penalty on the embeddings of each batch), and for
implicit feedback ``loss`` (``bpr`` or ``bce``) and ``neg_ratio`` (sampled negatives per
positive). Explicit feedback is trained with MSE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl import DataInfo, TrainContext
from automl.training import suggest_training


def _embedding(n: int, dim: int, std: float = 0.05) -> nn.Embedding:
    emb = nn.Embedding(n, dim, padding_idx=0)
    nn.init.normal_(emb.weight, std=std)
    with torch.no_grad():
        emb.weight[0].zero_()
    return emb


class _Penalised(nn.Module):
    """Models list their user and item embeddings so the step can penalise the rows used."""

    user_tables: tuple[str, ...] = ()
    item_tables: tuple[str, ...] = ()

    def penalty(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Mean over rows of the squared L2 norm of the embeddings the batch uses."""
        total = torch.zeros((), device=user.device)
        for names, ids in ((self.user_tables, user), (self.item_tables, item)):
            for name in names:
                total = total + getattr(self, name)(ids).pow(2).sum(-1).mean()
        return total


class BiasedMF(_Penalised):
    """``score = global + b_u + b_i + p_u . q_i`` (Koren et al., 2009)."""

    user_tables, item_tables = ("user", "user_bias"), ("item", "item_bias")

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.user, self.item = _embedding(n_users, dim), _embedding(n_items, dim)
        self.user_bias, self.item_bias = _embedding(n_users, 1, 0.0), _embedding(n_items, 1, 0.0)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        dot = (self.user(user) * self.item(item)).sum(-1)
        return dot + self.user_bias(user).squeeze(-1) + self.item_bias(item).squeeze(-1) + self.bias

    def score_all(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, n_items)`` scores of each user against all ``items`` (one matrix product)."""
        out = self.user(user) @ self.item(items).T + self.item_bias(items).squeeze(-1)[None, :]
        return out + self.user_bias(user) + self.bias


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class NeuMF(_Penalised):
    """NeuMF (He et al., 2017): a GMF branch (element-wise product of embeddings) and an MLP
    branch (tower over concatenated embeddings, halving width), fused by a linear layer."""

    user_tables, item_tables = ("gmf_user", "mlp_user"), ("gmf_item", "mlp_item")

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.gmf_user, self.gmf_item = _embedding(n_users, dim), _embedding(n_items, dim)
        self.mlp_user, self.mlp_item = _embedding(n_users, dim), _embedding(n_items, dim)
        sizes = [2 * dim] + [max(4, 2 * dim // 2**j) for j in range(1, layers + 1)]
        self.mlp = _mlp(sizes, dropout)
        self.out = nn.Linear(dim + sizes[-1], 1)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        gmf = self.gmf_user(user) * self.gmf_item(item)
        mlp = self.mlp(torch.cat([self.mlp_user(user), self.mlp_item(item)], dim=-1))
        return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)


class TwoTower(_Penalised):
    """User and item towers (embedding -> MLP with a residual) and dot-product scoring, plus an
    item bias (popularity). Item vectors do not depend on the user, so they can be indexed for
    retrieval."""

    user_tables, item_tables = ("user",), ("item",)

    def __init__(self, n_users: int, n_items: int, dim: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.user, self.item = _embedding(n_users, dim), _embedding(n_items, dim)
        self.item_bias = _embedding(n_items, 1, 0.0)
        self.user_tower = nn.Sequential(_mlp([dim] + [hidden] * layers, dropout), nn.Linear(hidden, dim))
        self.item_tower = nn.Sequential(_mlp([dim] + [hidden] * layers, dropout), nn.Linear(hidden, dim))

    def _user_vec(self, user: torch.Tensor) -> torch.Tensor:
        u = self.user(user)
        return u + self.user_tower(u)

    def _item_vec(self, item: torch.Tensor) -> torch.Tensor:
        i = self.item(item)
        return i + self.item_tower(i)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return (self._user_vec(user) * self._item_vec(item)).sum(-1) + self.item_bias(item).squeeze(-1)

    def score_all(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, n_items)`` scores: each tower runs once, then one matrix product."""
        return self._user_vec(user) @ self._item_vec(items).T + self.item_bias(items).squeeze(-1)[None, :]


def _sizes(info: DataInfo) -> tuple[int, int]:
    return int(info.extra["n_users"]), int(info.extra["n_items"])


#: The configuration of biased MF tried first: the textbook BPR-MF setting (32 factors, Adam at
#: 1e-2, L2 1e-2 on the batch's embeddings, 4 sampled negatives per positive; Rendle et al.,
#: 2009, as the implicit-feedback libraries default to). ``loss`` and ``neg_ratio`` are only
#: suggested for ranking; explicit ratings ignore them.
MF_STARTS = ({"dim": 32, "optimizer": "adam", "lr": 1e-2, "reg": 1e-2, "loss": "bpr", "neg_ratio": 4},)


def define_mf(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest the embedding size of biased MF."""
    return {"dim": trial.suggest_categorical("dim", [16, 32, 64])}


def build_mf(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build :class:`BiasedMF` for the dataset's users and items."""
    return BiasedMF(*_sizes(info), cfg["dim"])


def define_ncf(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest NeuMF's embedding size, MLP depth and dropout."""
    return {"dim": trial.suggest_categorical("dim", [8, 16, 32, 64]),
            "layers": trial.suggest_int("mlp_layers", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3)}


def build_ncf(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build :class:`NeuMF` for the dataset's users and items."""
    return NeuMF(*_sizes(info), cfg["dim"], cfg["layers"], cfg["dropout"])


def define_two_tower(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest the two-tower embedding size, tower width, depth and dropout."""
    return {"dim": trial.suggest_categorical("dim", [16, 32, 64]),
            "hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
            "layers": trial.suggest_int("tower_layers", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3)}


def build_two_tower(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build :class:`TwoTower` for the dataset's users and items."""
    return TwoTower(*_sizes(info), cfg["dim"], cfg["hidden"], cfg["layers"], cfg["dropout"])


def train_space(trial, info: DataInfo) -> dict[str, Any]:
    """Training hyperparameters: the usual ones plus ``reg``, and for implicit feedback the
    ``loss`` (BPR or BCE) and ``neg_ratio``; explicit ratings use ``loss = mse``."""
    cfg = suggest_training(trial, info, epochs=(6, 16), batch_sizes=(256, 512, 1024), lr=(1e-3, 3e-2),
                           weight_decay=(1e-8, 1e-4), optimizers=("adam", "adamw"), patience=4)
    cfg["reg"] = trial.suggest_float("reg", 1e-6, 1e-1, log=True)
    if info.task == "ranking":
        cfg["loss"] = trial.suggest_categorical("loss", ["bpr", "bce"])
        cfg["neg_ratio"] = trial.suggest_int("neg_ratio", 1, 6)
    else:
        cfg["loss"] = "mse"
    return cfg


def ranking_loss(pos: torch.Tensor, neg: torch.Tensor, kind: str) -> torch.Tensor:
    """``pos`` (B,) and ``neg`` (B, R) scores. BPR: ``-log sigmoid(pos - neg)``; BCE: binary
    cross-entropy with positives labelled 1 and sampled negatives 0 (each term weighted alike)."""
    if kind == "bpr":
        return -F.logsigmoid(pos[:, None] - neg).mean()
    if kind == "bce":
        logits = torch.cat([pos, neg.reshape(-1)])
        labels = torch.cat([torch.ones_like(pos), torch.zeros(neg.numel(), device=pos.device)])
        return F.binary_cross_entropy_with_logits(logits, labels)
    raise ValueError(f"unknown ranking loss {kind!r}; valid: bpr, bce")


def step(model: nn.Module, inputs: dict[str, torch.Tensor], targets: torch.Tensor,
         ctx: TrainContext) -> torch.Tensor:
    """One training step. Explicit: MSE (core's loss) on the ratings. Implicit: ``neg_ratio``
    negatives per positive drawn uniformly from the catalogue (with ``ctx.generator``; a
    sampled negative is occasionally a positive, the standard approximation), then BPR or
    BCE. Both add ``reg`` times the L2 norm of the batch's embeddings."""
    user, item = inputs["user"], inputs["item"]
    core = getattr(model, "inner", model)  # regression models are wrapped by TargetScaler
    if ctx.info.task == "ranking":
        ratio = int(ctx.config.get("neg_ratio", 1))
        n_items = int(ctx.info.extra["n_items"])
        neg = torch.randint(1, n_items, (len(user) * ratio,), generator=ctx.generator).to(user.device)
        pos_scores = model(user=user, item=item)
        neg_scores = model(user=user.repeat_interleave(ratio), item=neg).reshape(len(user), ratio)
        loss = ranking_loss(pos_scores.float(), neg_scores.float(), ctx.config.get("loss", "bpr"))
    else:
        loss = ctx.loss(model(user=user, item=item), targets)
    reg = float(ctx.config.get("reg", 0.0))
    if reg > 0 and hasattr(core, "penalty"):
        loss = loss + reg * core.penalty(user, item)
    return loss
