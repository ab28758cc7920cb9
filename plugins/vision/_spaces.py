"""Vision search spaces: width, depth, dropout, normalisation and activation are searched so a
search can fix underfitting (width, depth, learning rate), overfitting (dropout, weight
decay, early stopping) and vanishing gradients (activation, batch norm)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from automl import DataInfo
from automl.training import suggest_training
from automl_plugins.vision._augment import suggest_augmentation

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Normalize(nn.Module):
    """uint8 (or float 0..1) images -> standardised floats, with the train split's statistics."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        x = (x - self.mean) / self.std
        # On CUDA the trainer makes conv weights channels_last; give them matching activations.
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def normalize(info: DataInfo) -> Normalize:
    """The :class:`Normalize` layer for a dataset, with its train-split statistics."""
    c = info.input_shape[0]
    return Normalize(info.extra.get("mean", [0.5] * c), info.extra.get("std", [0.25] * c))


def define_mlp(trial, info: DataInfo) -> dict[str, Any]:
    """Depth, width, dropout, batch norm and activation of the MLP."""
    return {
        "layers": trial.suggest_int("layers", 1, 3),
        "width": trial.suggest_categorical("width", [64, 128, 256, 512]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "batch_norm": trial.suggest_categorical("batch_norm", [True, False]),
        "activation": trial.suggest_categorical("activation", list(ACTIVATIONS)),
    }


def build_mlp(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Normalize, flatten, then ``layers`` x (linear, [BN], activation, dropout), and a head."""
    c, h, w = info.input_shape
    layers: list[nn.Module] = [normalize(info), nn.Flatten()]
    width_in = c * h * w
    for _ in range(cfg["layers"]):
        layers.append(nn.Linear(width_in, cfg["width"]))
        if cfg["batch_norm"]:
            layers.append(nn.BatchNorm1d(cfg["width"]))
        layers += [ACTIVATIONS[cfg["activation"]](), nn.Dropout(cfg["dropout"])]
        width_in = cfg["width"]
    layers.append(nn.Linear(width_in, info.num_classes))
    return nn.Sequential(*layers)


def define_cnn(trial, info: DataInfo) -> dict[str, Any]:
    """Blocks, channels, kernel, dropout, batch norm, activation and head width of the CNN."""
    return {
        "blocks": trial.suggest_int("blocks", 1, 3),
        "channels": trial.suggest_categorical("channels", [16, 32, 64]),
        "kernel": trial.suggest_categorical("kernel", [3, 5]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "batch_norm": trial.suggest_categorical("batch_norm", [True, False]),
        "activation": trial.suggest_categorical("activation", list(ACTIVATIONS)),
        "head": trial.suggest_categorical("head", [64, 128, 256]),
    }


def build_cnn(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Conv blocks (conv, [BN], act) x2 with channel doubling; a block pools only while the
    feature map is at least 2 pixels wide, so small inputs (8x8 digits) work at any depth."""
    c, h, w = info.input_shape
    act = ACTIVATIONS[cfg["activation"]]
    layers: list[nn.Module] = [normalize(info)]
    ch_in, ch, size = c, cfg["channels"], min(h, w)
    for _ in range(cfg["blocks"]):
        for _ in range(2):
            layers.append(nn.Conv2d(ch_in, ch, cfg["kernel"], padding=cfg["kernel"] // 2, bias=not cfg["batch_norm"]))
            if cfg["batch_norm"]:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(act())
            ch_in = ch
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        ch *= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg["dropout"]),
               nn.Linear(ch_in, cfg["head"]), act(), nn.Dropout(cfg["dropout"]),
               nn.Linear(cfg["head"], info.num_classes)]
    return nn.Sequential(*layers)


#: What a practitioner tries first: a small, regularised network that trains fast on a CPU
#: and is hard to beat on small images; the search starts from it (``SearchSpace.starts``).
START_TRAIN = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64, "scheduler": "cosine",
               "label_smoothing": 0.05, "augment": "light"}
START_CNN = {"blocks": 2, "channels": 32, "kernel": 3, "dropout": 0.2, "batch_norm": True, "activation": "relu",
             "head": 128, **START_TRAIN}
START_MLP = {"layers": 2, "width": 256, "dropout": 0.2, "batch_norm": True, "activation": "relu", **START_TRAIN}


def train_space(trial, info: DataInfo) -> dict[str, Any]:
    """Training hyperparameters of ``mlp`` and ``cnn``: the shared ones, label smoothing and
    the augmentation policy (see :mod:`._augment`)."""
    cfg = suggest_training(trial, info, epochs=(10, 40), batch_sizes=(32, 64, 128))
    cfg["label_smoothing"] = trial.suggest_float("label_smoothing", 0.0, 0.2)
    cfg.update(suggest_augmentation(trial, info))
    return cfg
