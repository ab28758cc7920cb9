"""The hand-written PyTorch CNN objective the raw-Optuna and Ray Tune baselines tune.

It is what a user writes without automl: the digits tensors standardised once, a CNN of
``blocks`` x (conv-BN-ReLU x2, max-pool) with a dropout and a linear head, Adam, index
batching, validation after every epoch and the test accuracy of the best validation epoch.
Its search space mirrors the vision plugin's ``cnn`` space (channels, blocks, dropout,
learning rate, batch size, epochs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def digits_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """The vision plugin's digits split (same seed, same rows), as standardised float tensors."""
    from automl.plugins import load_registry

    bundle = load_registry([]).get("vision").datasets["digits"].load(None, {}, seed)
    mean, std = bundle.info.extra["mean"][0], bundle.info.extra["std"][0]
    out = {}
    for name in ("train", "val", "test"):
        split = bundle.split(name)
        out[f"x_{name}"] = ((split.inputs.float() / 255.0 - mean) / std).contiguous()
        out[f"y_{name}"] = split.targets.long()
    return out


def make_cnn(channels: int, blocks: int, dropout: float) -> nn.Module:
    """conv-BN-ReLU x2 + max-pool per block (channels doubling), global pool, dropout, head."""
    layers: list[nn.Module] = []
    c_in, c = 1, channels
    for _ in range(blocks):
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                   nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, c = c, c * 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, 10)]
    return nn.Sequential(*layers)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train()
    return acc


def train_cnn(params: dict[str, Any], data: dict[str, torch.Tensor], seed: int,
              report: Callable[[int, float], None] | None = None) -> tuple[float, float]:
    """Train one config; returns (best validation accuracy, test accuracy at that epoch).
    ``report(epoch, val)`` may raise to prune (Optuna)."""
    torch.manual_seed(seed)
    model = make_cnn(int(params["channels"]), int(params["blocks"]), float(params["dropout"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(params["lr"]))
    x, y, bs = data["x_train"], data["y_train"], int(params["batch_size"])
    n = len(y)
    best_val, test_at_best = -1.0, 0.0
    for epoch in range(int(params["epochs"])):
        perm = torch.randperm(n)
        for i in range(0, n - 1 if n % bs == 1 else n, bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = _accuracy(model, data["x_val"], data["y_val"])
        if val > best_val:
            best_val, test_at_best = val, _accuracy(model, data["x_test"], data["y_test"])
        if report is not None:
            report(epoch, val)
    return best_val, test_at_best


def optuna_params(trial: Any) -> dict[str, Any]:
    """The space, define-by-run (raw Optuna)."""
    return {"channels": trial.suggest_categorical("channels", [16, 32, 64]),
            "blocks": trial.suggest_int("blocks", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "lr": trial.suggest_float("lr", 3e-4, 3e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
            "epochs": trial.suggest_int("epochs", 10, 40)}


def tune_space() -> dict[str, Any]:
    """The same space for Ray Tune's default searcher (random sampling)."""
    from ray import tune

    return {"channels": tune.choice([16, 32, 64]), "blocks": tune.randint(1, 3),
            "dropout": tune.uniform(0.0, 0.5), "lr": tune.loguniform(3e-4, 3e-2),
            "batch_size": tune.choice([32, 64, 128]), "epochs": tune.randint(10, 41)}
