"""Augmentation as a searched training hyperparameter, applied to whole batches on the device.

The policy is ``none``, ``light`` or ``strong``; horizontal flips are a separate searched knob,
offered only where a flip keeps the label (``info.extra["hflip"]``: not for digits), and
colour jitter applies only to colour images (``info.extra["color"]``).

- ``light``: random resized crop (scale 0.8..1), flip when chosen.
- ``strong``: random resized crop (scale 0.55..1, aspect 3/4..4/3), rotation up to 15
  degrees, colour jitter (brightness, contrast, saturation 0.3, hue 0.03), flip when chosen.

torchvision's v2 transforms draw one set of parameters per call, so a batch is cut into
groups of :data:`GROUP` images and each group is transformed with its own draw: the batch
sees varied augmentation at the cost of a few calls, with the pixels never leaving the device.
Evaluation never augments: only the training ``step`` does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torchvision.transforms import v2

from automl import DataInfo, TrainContext
from automl.data import call_model

POLICIES = ("none", "light", "strong")
GROUP = 16


def suggest_augmentation(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest ``augment`` (the policy) and ``hflip`` (only where flips keep the label)."""
    policy = trial.suggest_categorical("augment", list(POLICIES))
    hflip = bool(info.extra.get("hflip", False)) and trial.suggest_categorical("hflip", [True, False])
    return {"augment": policy, "hflip": bool(hflip)}


@lru_cache(maxsize=64)
def make_transform(policy: str, hflip: bool, color: bool, height: int, width: int) -> v2.Transform | None:
    """The v2 transform of a policy for images of ``height`` x ``width``; ``None`` when it
    would do nothing."""
    if policy not in POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; valid: {', '.join(POLICIES)}")
    steps: list[v2.Transform] = []
    if policy == "light":
        steps.append(v2.RandomResizedCrop((height, width), scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True))
    elif policy == "strong":
        steps.append(v2.RandomResizedCrop((height, width), scale=(0.55, 1.0), antialias=True))
        steps.append(v2.RandomRotation(15))
        if color:
            steps.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps) if steps else None


def augment(x: torch.Tensor, cfg: dict[str, Any], info: DataInfo) -> torch.Tensor:
    """Augment a batch ``(N, C, H, W)`` (uint8 or float) on its own device, per the config."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return x
    transform = make_transform(cfg.get("augment", "none"), bool(cfg.get("hflip", False)),
                               bool(info.extra.get("color", x.shape[1] == 3)) and x.shape[1] == 3,
                               int(x.shape[2]), int(x.shape[3]))
    if transform is None:
        return x
    return torch.cat([transform(chunk) for chunk in x.split(GROUP)])


def vision_step(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                ctx: TrainContext) -> torch.Tensor:
    """The training step of every vision space: augment the batch, then the task's loss."""
    x = augment(inputs, ctx.config, ctx.info)
    return ctx.loss(call_model(model, x), targets)
