"""Vision search spaces: width, depth, dropout, normalisation and activation are searched so a
search can fix underfitting (width, depth, learning rate), overfitting (dropout, weight
decay, early stopping) and vanishing gradients (activation, batch norm)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from automl import DataInfo
from automl.training import SCHEDULERS, suggest_training
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


def define_linear(trial, info: DataInfo) -> dict[str, Any]:
    """Dropout on the pixels, the one regulariser of a linear model besides weight decay."""
    return {"dropout": trial.suggest_float("dropout", 0.0, 0.3)}


def build_linear(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Softmax regression on the standardised pixels: normalize, flatten, dropout, one linear
    layer. The fastest and smallest model of the plugin, the low end of an accuracy/latency
    trade-off (on digits about 0.96 accuracy, against 0.99 for a CNN)."""
    c, h, w = info.input_shape
    return nn.Sequential(normalize(info), nn.Flatten(), nn.Dropout(cfg["dropout"]),
                         nn.Linear(c * h * w, info.num_classes))


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
#: and is hard to beat on small images; the search starts from these (``SearchSpace.starts``),
#: so a short budget already has strong, different models for the ensemble. Every searched
#: training knob is given (a start leaves nothing to chance): no EMA and no mixing in the first.
START_TRAIN = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64, "scheduler": "cosine",
               "label_smoothing": 0.05, "augment": "light", "ema": 0.0, "mix": "none"}
START_CNN = {"blocks": 2, "channels": 32, "kernel": 3, "dropout": 0.2, "batch_norm": True, "activation": "relu",
             "head": 128, **START_TRAIN}
#: The same network with small affine jitter (rotations, shifts, zooms) and an EMA of the weights.
START_CNN_AFFINE = {**START_CNN, "augment": "affine", "aug_strength": 0.5, "ema": 0.99}
#: SGD with Nesterov momentum, a warm-up then cosine schedule, and the affine jitter.
START_CNN_SGD = {**START_CNN, "optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "nesterov": True,
                 "weight_decay": 5e-4, "scheduler": "warmup_cosine", "augment": "affine", "aug_strength": 0.5}
START_MLP = {"layers": 2, "width": 256, "dropout": 0.2, "batch_norm": True, "activation": "relu", **START_TRAIN}
START_LINEAR = {"dropout": 0.0, **START_TRAIN}


#: What every vision space searches besides the optimizer: per-epoch cosine and the per-batch
#: schedules with warm-up, SGD's momentum and Nesterov, and an EMA of the weights (its decay;
#: 0 is off). Shared by the spaces so that one study can search several of them.
SCHEDULES = SCHEDULERS  # constant, cosine, onecycle, warmup_cosine
MOMENTUM = (0.8, 0.95)
EMA = (0.0, 0.99, 0.999)


def train_space(trial, info: DataInfo) -> dict[str, Any]:
    """Training hyperparameters of ``linear``, ``mlp`` and ``cnn``: the shared ones (with the schedules,
    momentum and EMA above), label smoothing, the augmentation policy and batch mixing (see
    :mod:`._augment`)."""
    cfg = suggest_training(trial, info, epochs=(10, 40), batch_sizes=(32, 64, 128), schedulers=SCHEDULES,
                           momentum=MOMENTUM, ema=EMA)
    cfg["label_smoothing"] = trial.suggest_float("label_smoothing", 0.0, 0.2)
    cfg.update(suggest_augmentation(trial, info))
    return cfg
