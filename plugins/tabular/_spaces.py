"""Tabular search spaces: ``mlp`` and ``resmlp``.

Both read ``{"num": float (N, D), "cat": long (N, K)}``: each categorical column gets its
own embedding (searched size, capped by its cardinality), concatenated with the numeric
features. Width, depth, dropout, normalisation (batch / layer / none) and activation are
searched. The head gives ``num_classes`` logits, or one value for regression (core's
``TargetScaler`` maps it back to the target's units).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from automl import DataInfo
from automl.training import suggest_training

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
NORMS = ("batch", "layer", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


def _outputs(info: DataInfo) -> int:
    return int(info.num_classes) if info.task == "classification" else 1


class TableInput(nn.Module):
    """Numeric features plus one embedding per categorical column, concatenated."""

    def __init__(self, num_features: int, cardinalities: list[int], emb_dim: int) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, min(emb_dim, max(2, c))) for c in cardinalities)
        self.width = num_features + sum(e.embedding_dim for e in self.embeddings)
        if self.width == 0:
            raise ValueError("the table has no feature columns")

    def forward(self, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        parts = [num.float()] + [emb(cat[:, j]) for j, emb in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)


def _input(cfg: dict[str, Any], info: DataInfo) -> TableInput:
    return TableInput(int(info.extra.get("num_features", 0)), list(info.extra.get("cat_cardinalities", [])),
                      int(cfg.get("emb_dim", 8)))


class MLP(nn.Module):
    """Input -> ``depth`` x (Linear, norm, activation, dropout) -> head."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        super().__init__()
        self.input = _input(cfg, info)
        act, width, layers = ACTIVATIONS[cfg["activation"]], int(cfg["width"]), []
        width_in = self.input.width
        for _ in range(int(cfg["depth"])):
            layers += [nn.Linear(width_in, width), _norm(cfg["norm"], width), act(), nn.Dropout(cfg["dropout"])]
            width_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, _outputs(info))

    def forward(self, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.input(num, cat)))


class ResBlock(nn.Module):
    """Pre-norm residual block: ``x + dropout(W2 act(W1 norm(x))))``."""

    def __init__(self, width: int, hidden: int, norm: str, act: type[nn.Module], dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(_norm(norm, width), nn.Linear(width, hidden), act(), nn.Dropout(dropout),
                                 nn.Linear(hidden, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ResMLP(nn.Module):
    """Input projection, ``blocks`` residual blocks, a final norm and the head."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        super().__init__()
        self.input = _input(cfg, info)
        width, act = int(cfg["width"]), ACTIVATIONS[cfg["activation"]]
        self.proj = nn.Linear(self.input.width, width)
        self.blocks = nn.Sequential(*(ResBlock(width, width * int(cfg["expansion"]), cfg["norm"], act,
                                               float(cfg["dropout"])) for _ in range(int(cfg["blocks"]))))
        self.out = nn.Sequential(_norm(cfg["norm"], width), act())
        self.head = nn.Linear(width, _outputs(info))

    def forward(self, num: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        return self.head(self.out(self.blocks(self.proj(self.input(num, cat)))))


def _common(trial, info: DataInfo) -> dict[str, Any]:
    cfg = {
        "width": trial.suggest_categorical("width", [64, 128, 256, 512]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "norm": trial.suggest_categorical("norm", list(NORMS)),
        "activation": trial.suggest_categorical("activation", list(ACTIVATIONS)),
    }
    if info.extra.get("cat_cardinalities"):
        cfg["emb_dim"] = trial.suggest_categorical("emb_dim", [4, 8, 16])
    return cfg


def define_mlp(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: width, depth (1-4), dropout, norm, activation, categorical embedding size."""
    return {**_common(trial, info), "depth": trial.suggest_int("depth", 1, 4)}


def build_mlp(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build the :class:`MLP` for a config."""
    return MLP(cfg, info)


def define_resmlp(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: width, residual blocks (1-4), hidden expansion (1-2), dropout, norm, activation."""
    return {**_common(trial, info), "blocks": trial.suggest_int("blocks", 1, 4),
            "expansion": trial.suggest_int("expansion", 1, 2)}


def build_resmlp(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build the :class:`ResMLP` for a config."""
    return ResMLP(cfg, info)


def train_space(trial, info: DataInfo) -> dict[str, Any]:
    """Training hyperparameters for small tables: more epochs, early stopping, gradient clipping."""
    cfg = suggest_training(trial, info, epochs=(20, 80), batch_sizes=(32, 64, 128), lr=(3e-4, 1e-2),
                           optimizers=("adam", "adamw"), patience=12)
    cfg["grad_clip"] = 5.0
    return cfg
