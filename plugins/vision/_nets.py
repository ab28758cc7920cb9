"""torchvision families adapted to small images: ResNet-18/34 and MobileNetV3-Small.

- ``resnet``: torchvision's ResNet (its ``BasicBlock`` and forward) with a small-input stem
  (a 3x3 convolution, stride 1, no max-pool), a searched base width (channels of the first
  stage; the stages double it) and depth (18 or 34 layers).
- ``mobilenet``: torchvision's ``mobilenet_v3_small`` with a stride-1 stem and a searched
  width multiplier.
- Both search the input resolution: images are resized inside the model (bilinear), so the
  saved model takes the dataset's native images.
- Parameter names shared between spaces keep identical choices (Optuna requires it when one
  study searches several spaces): the categorical knobs with other choices get their own names.
- ``resnet_pretrained`` / ``mobilenet_pretrained``: ImageNet weights read from the local torch
  hub cache (``torch.hub.get_dir()/checkpoints``), never downloaded; freezing the backbone
  (train the head only) versus fine-tuning everything is searched. Without the cached file,
  the space's ``check`` stops the search with the file name and the folder to put it in.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, ResNet

from automl import DataInfo, UserError
from automl.training import suggest_training
from automl_plugins.vision._augment import suggest_augmentation
from automl_plugins.vision._spaces import EMA, MOMENTUM, SCHEDULES, Normalize, normalize

LAYERS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
#: Base widths (channels of the first stage; the stages double it): 64 is the width of the
#: CIFAR ResNets, 32 and 16 cost a quarter and a sixteenth of its compute on a CPU.
WIDTHS = (16, 32, 64)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
WEIGHTS = {
    "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
    "mobilenet_v3_small": models.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
}


class Resize(nn.Module):
    """Resize a batch to ``size`` x ``size`` (bilinear) unless it already is."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


class ToRGB(nn.Module):
    """Repeat a single grayscale channel three times (pretrained stems take RGB)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def resolutions(info: DataInfo) -> list[int]:
    """The input sizes worth searching: native, and 16/32/64 up to twice native. Upsampling
    helps small images through a deep network (more positions per feature map), at a cost
    that grows with the square of the size."""
    native = min(info.input_shape[1:])
    return [native] + [r for r in (16, 32, 64) if native < r <= 2 * native]


class SmallResNet(ResNet):
    """torchvision's ResNet with a small-input stem and a chosen base width."""

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int, dropout: float) -> None:
        nn.Module.__init__(self)
        self._norm_layer, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, 1, 1, 64
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        layers = LAYERS[depth]
        self.layer1 = self._make_layer(BasicBlock, width, layers[0])
        self.layer2 = self._make_layer(BasicBlock, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * 8, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)  # zero-init residuals: each block starts as identity


def define_resnet(trial, info: DataInfo) -> dict[str, Any]:
    """Depth (18/34), base width, input resolution and head dropout."""
    return {
        "depth": trial.suggest_categorical("depth", [18, 34]),
        "width": trial.suggest_categorical("base_width", list(WIDTHS)),
        "resolution": trial.suggest_categorical("resolution", resolutions(info)),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def build_resnet(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Normalize -> resize -> :class:`SmallResNet`."""
    net = SmallResNet(int(cfg["depth"]), int(cfg["width"]), info.input_shape[0], info.num_classes,
                      float(cfg["dropout"]))
    return nn.Sequential(normalize(info), Resize(cfg["resolution"]), net)


def define_mobilenet(trial, info: DataInfo) -> dict[str, Any]:
    """Width multiplier, input resolution and classifier dropout."""
    return {
        "width_mult": trial.suggest_categorical("width_mult", [0.5, 0.75, 1.0]),
        "resolution": trial.suggest_categorical("resolution", resolutions(info)),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def build_mobilenet(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """Normalize -> resize -> ``mobilenet_v3_small`` with a stride-1 stem for small images."""
    net = models.mobilenet_v3_small(num_classes=info.num_classes, width_mult=float(cfg["width_mult"]),
                                    dropout=float(cfg["dropout"]))
    stem = net.features[0][0]
    net.features[0][0] = nn.Conv2d(info.input_shape[0], stem.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
    return nn.Sequential(normalize(info), Resize(cfg["resolution"]), net)


def train_net(trial, info: DataInfo) -> dict[str, Any]:
    """Training hyperparameters of the torchvision families: fewer epochs than mlp/cnn (each
    costs more), the shared schedules, momentum and EMA, label smoothing, augmentation and
    batch mixing."""
    cfg = suggest_training(trial, info, epochs=(2, 8), lr=(5e-4, 1e-2), patience=3, schedulers=SCHEDULES,
                           momentum=MOMENTUM, ema=EMA)
    cfg["label_smoothing"] = trial.suggest_float("label_smoothing", 0.0, 0.2)
    cfg.update(suggest_augmentation(trial, info))
    return cfg


# ---- transfer learning ---------------------------------------------------------------------

def weights_file(arch: str) -> str:
    """Where torchvision keeps ``arch``'s ImageNet weights in the local torch hub cache."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(WEIGHTS[arch].url))


def cached(archs: list[str]) -> list[str]:
    """The architectures among ``archs`` whose weights are in the cache."""
    return [a for a in archs if os.path.isfile(weights_file(a))]


def require_weights(space: str, archs: list[str]) -> None:
    """Raise :class:`automl.UserError` unless at least one of ``archs`` is cached."""
    if cached(archs):
        return
    arch = archs[0]
    raise UserError(
        f"space {space!r} needs torchvision's ImageNet weights in the local torch cache: put "
        f"{os.path.basename(WEIGHTS[arch].url)} (from {WEIGHTS[arch].url}) in "
        f"{os.path.dirname(weights_file(arch))}, e.g. on a machine online run: python -c \"import torchvision; "
        f"torchvision.models.{arch}(weights='DEFAULT')\" and copy it (TORCH_HOME moves the cache)")


def _load(arch: str) -> nn.Module:
    net = getattr(models, arch)()
    path = weights_file(arch)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (OSError, RuntimeError, KeyError) as exc:
        raise UserError(f"cannot load pretrained weights {path}: {str(exc).splitlines()[0]}") from None
    return net


class Pretrained(nn.Module):
    """RGB -> ImageNet normalisation -> resize -> a pretrained network with a new head.
    Frozen: only the head trains, and the backbone's batch norm stays in eval mode."""

    def __init__(self, net: nn.Module, head: nn.Module, resolution: int, frozen: bool) -> None:
        super().__init__()
        self.pre = nn.Sequential(ToRGB(), Normalize(IMAGENET_MEAN, IMAGENET_STD), Resize(resolution))
        self.net, self.head, self.frozen = net, head, frozen
        if frozen:
            for p in self.net.parameters():
                p.requires_grad_(False)
        for p in self.head.parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True) -> Pretrained:
        super().train(mode)
        if self.frozen:
            self.net.eval()
            self.head.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.pre(x))


def define_resnet_pretrained(trial, info: DataInfo) -> dict[str, Any]:
    """Which cached ResNet, freeze or fine-tune, input resolution and head dropout."""
    return {
        "arch": trial.suggest_categorical("arch", cached(["resnet18", "resnet34"]) or ["resnet18"]),
        "finetune": trial.suggest_categorical("finetune", ["head", "all"]),
        "resolution": trial.suggest_categorical("pretrained_resolution", [32, 64, 128]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def build_resnet_pretrained(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """ImageNet ResNet with its own stem (the weights need it) and a new classification head."""
    net = _load(cfg["arch"])
    net.fc = nn.Sequential(nn.Dropout(float(cfg["dropout"])), nn.Linear(net.fc.in_features, info.num_classes))
    return Pretrained(net, net.fc, cfg["resolution"], frozen=cfg["finetune"] == "head")


def define_mobilenet_pretrained(trial, info: DataInfo) -> dict[str, Any]:
    """Freeze or fine-tune, input resolution and classifier dropout."""
    return {
        "finetune": trial.suggest_categorical("finetune", ["head", "all"]),
        "resolution": trial.suggest_categorical("pretrained_resolution", [32, 64, 128]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def build_mobilenet_pretrained(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
    """ImageNet MobileNetV3-Small with a new classifier (its hidden layer fine-tunes too)."""
    net = _load("mobilenet_v3_small")
    net.classifier[2] = nn.Dropout(float(cfg["dropout"]))
    net.classifier[3] = nn.Linear(net.classifier[3].in_features, info.num_classes)
    return Pretrained(net, net.classifier, cfg["resolution"], frozen=cfg["finetune"] == "head")


def train_pretrained(trial, info: DataInfo) -> dict[str, Any]:
    """Transfer learning trains briefly with smaller learning rates."""
    cfg = suggest_training(trial, info, epochs=(2, 10), lr=(1e-4, 5e-3), patience=3, schedulers=SCHEDULES,
                           momentum=MOMENTUM, ema=EMA)
    cfg.update(suggest_augmentation(trial, info))
    return cfg


def check_resnet_pretrained(info: DataInfo) -> None:
    """Stop before the search when no ResNet weights are cached."""
    require_weights("resnet_pretrained", ["resnet18", "resnet34"])


def check_mobilenet_pretrained(info: DataInfo) -> None:
    """Stop before the search when the MobileNetV3-Small weights are not cached."""
    require_weights("mobilenet_pretrained", ["mobilenet_v3_small"])
