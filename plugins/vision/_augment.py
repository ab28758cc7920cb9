"""Augmentation and batch mixing as searched training hyperparameters, applied to whole
batches on the device.

``augment`` is the policy; which policies are offered depends on the image size:

- every size: ``none``; ``light`` (random resized crop, scale 0.8..1); ``strong`` (random
  resized crop 0.55..1, rotation up to 15 degrees, colour jitter on colour images);
  ``affine``: small rotations, shifts and zooms scaled by the searched ``aug_strength``
  (at strength 1: 10 degrees, 10 % shift, 10 % zoom) - what small glyphs such as the 8x8
  digits tolerate without changing their class;
- images of at least :data:`LARGE` pixels (CIFAR-10, image folders): ``crop`` (pad by an eighth
  of the side with reflection, random crop back: the standard CIFAR recipe) and ``trivial``
  (pad-and-crop, then torchvision's ``TrivialAugmentWide``).

Horizontal flips are a separate searched knob, offered only where a flip keeps the label
(``info.extra["hflip"]``: not for digits); colour jitter applies only to colour images
(``info.extra["color"]``).

``mix`` mixes the batch after augmentation: ``none``, ``mixup`` or ``cutmix`` (torchvision's
``v2.MixUp`` / ``v2.CutMix``, one mixing coefficient per batch drawn from Beta(``mix_alpha``,
``mix_alpha``)); the targets become class probabilities, and :func:`vision_step` takes the
cross-entropy against them (with the config's label smoothing) itself, so the core trainer
needs no soft-target support.

torchvision's v2 transforms draw one set of parameters per call, so a batch is cut into
groups of :data:`GROUP` images and each group is transformed with its own draw: the batch
sees varied augmentation at the cost of a few calls, with the pixels never leaving the device.
Evaluation never augments nor mixes: only the training ``step`` does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from automl import DataInfo, TrainContext
from automl.data import call_model

#: Every policy :func:`make_transform` knows; :func:`policies` says which a dataset searches.
POLICIES = ("none", "light", "strong", "affine", "crop", "trivial")
#: Policies searched for images of at least ``LARGE`` pixels a side only.
LARGE_ONLY = ("crop", "trivial")
LARGE = 32
MIXES = ("none", "mixup", "cutmix")
GROUP = 16


def policies(info: DataInfo) -> list[str]:
    """The augmentation policies worth searching for a dataset's image size."""
    shape = info.input_shape or (1, 0, 0)
    large = min(shape[-2:]) >= LARGE
    return [p for p in POLICIES if large or p not in LARGE_ONLY]


def suggest_augmentation(trial, info: DataInfo) -> dict[str, Any]:
    """Suggest ``augment`` (the policy), ``aug_strength`` (for ``affine``), ``hflip`` (only
    where flips keep the label), ``mix`` and ``mix_alpha`` (when mixing)."""
    policy = trial.suggest_categorical("augment", policies(info))
    cfg: dict[str, Any] = {"augment": policy}
    if policy == "affine":
        cfg["aug_strength"] = trial.suggest_float("aug_strength", 0.25, 1.5)
    hflip = bool(info.extra.get("hflip", False)) and trial.suggest_categorical("hflip", [True, False])
    cfg["hflip"] = bool(hflip)
    cfg["mix"] = trial.suggest_categorical("mix", list(MIXES))
    if cfg["mix"] != "none":
        cfg["mix_alpha"] = trial.suggest_float("mix_alpha", 0.1, 1.0, log=True)
    return cfg


@lru_cache(maxsize=64)
def make_transform(policy: str, hflip: bool, color: bool, height: int, width: int,
                   strength: float = 1.0) -> v2.Transform | None:
    """The v2 transform of a policy for images of ``height`` x ``width``; ``None`` when it
    would do nothing. ``strength`` scales the ``affine`` policy."""
    if policy not in POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; valid: {', '.join(POLICIES)}")
    steps: list[v2.Transform] = []
    bilinear = v2.InterpolationMode.BILINEAR
    if policy == "light":
        steps.append(v2.RandomResizedCrop((height, width), scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True))
    elif policy == "strong":
        steps.append(v2.RandomResizedCrop((height, width), scale=(0.55, 1.0), antialias=True))
        steps.append(v2.RandomRotation(15))
        if color:
            steps.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03))
    elif policy == "affine":
        s = max(0.0, float(strength))
        steps.append(v2.RandomAffine(degrees=10.0 * s, translate=(0.1 * s, 0.1 * s),
                                     scale=(1.0 - 0.1 * s, 1.0 + 0.1 * s), interpolation=bilinear))
    elif policy in ("crop", "trivial"):
        pad = max(1, min(height, width) // 8)
        steps.append(v2.RandomCrop((height, width), padding=pad, padding_mode="reflect"))
        if policy == "trivial":
            steps.append(v2.TrivialAugmentWide(interpolation=bilinear))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps) if steps else None


def augment(x: torch.Tensor, cfg: dict[str, Any], info: DataInfo) -> torch.Tensor:
    """Augment a batch ``(N, C, H, W)`` (uint8 or float) on its own device, per the config."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return x
    transform = make_transform(cfg.get("augment", "none"), bool(cfg.get("hflip", False)),
                               bool(info.extra.get("color", x.shape[1] == 3)) and x.shape[1] == 3,
                               int(x.shape[2]), int(x.shape[3]), float(cfg.get("aug_strength", 1.0)))
    if transform is None:
        return x
    return torch.cat([transform(chunk) for chunk in x.split(GROUP)])


@lru_cache(maxsize=16)
def make_mix(kind: str, alpha: float, num_classes: int) -> v2.Transform | None:
    """torchvision's ``MixUp`` or ``CutMix`` for ``num_classes`` classes (``None`` for ``none``)."""
    if kind not in MIXES:
        raise ValueError(f"unknown batch mixing {kind!r}; valid: {', '.join(MIXES)}")
    if kind == "none":
        return None
    return (v2.MixUp if kind == "mixup" else v2.CutMix)(alpha=float(alpha), num_classes=int(num_classes))


def mix_batch(x: torch.Tensor, y: torch.Tensor, cfg: dict[str, Any],
              info: DataInfo) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mix a batch per the config's ``mix``: float images on the 0..1 scale (what the models'
    ``Normalize`` takes) and soft targets ``(N, classes)``; ``(x, None)`` when not mixing."""
    mixer = make_mix(str(cfg.get("mix", "none")), float(cfg.get("mix_alpha", 0.2)), int(info.num_classes or 0))
    if mixer is None or not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] < 2:
        return x, None
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x
    return mixer(xf, y.long())


def vision_step(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                ctx: TrainContext) -> torch.Tensor:
    """The training step of every vision space: augment the batch, mix it (when the config
    says so), then the cross-entropy - against the mixed soft targets, or the task's loss."""
    x = augment(inputs, ctx.config, ctx.info)
    x, soft = mix_batch(x, targets, ctx.config, ctx.info)
    out = call_model(model, x)
    if soft is None:
        return ctx.loss(out, targets)
    return F.cross_entropy(out.float(), soft, label_smoothing=float(ctx.config.get("label_smoothing", 0.0)))
