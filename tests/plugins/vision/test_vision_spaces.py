"""Augmentation policies, and every vision space's forward and backward pass on a batch."""

from __future__ import annotations

import optuna
import pytest
import torch
from torchvision import models

from automl import DataInfo, TrainContext, UserError
from automl_plugins.vision import _nets as nets
from automl_plugins.vision._augment import POLICIES, augment, make_transform, suggest_augmentation, vision_step
from automl_plugins.vision._data import image_info
from automl_plugins.vision._spaces import (
    build_cnn,
    build_linear,
    build_mlp,
    define_cnn,
    define_linear,
    define_mlp,
    train_space,
)

GRAY = image_info(["a", "b", "c"], (1, 8, 8), [0.3], [0.2], hflip=False)
COLOR = image_info([str(i) for i in range(10)], (3, 16, 16), [0.4, 0.5, 0.6], [0.2, 0.2, 0.2], hflip=True)


def _trial(seed: int = 0) -> optuna.Trial:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()


def _batch(info: DataInfo, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *info.input_shape), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % info.num_classes


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("info", [GRAY, COLOR], ids=["gray", "color"])
def test_augmentation_policies_keep_shape_dtype_and_device(policy, info):
    x, _ = _batch(info, 40)
    torch.manual_seed(0)
    out = augment(x, {"augment": policy, "hflip": info.extra["hflip"]}, info)
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
    if policy == "none" and not info.extra["hflip"]:
        assert out is x
    if policy == "strong":
        assert not torch.equal(out, x)


def test_augmentation_groups_get_their_own_draws():
    x = torch.arange(64 * 3 * 16 * 16, dtype=torch.float32).reshape(64, 3, 16, 16) % 251
    x = x.to(torch.uint8)
    torch.manual_seed(1)
    out = augment(x, {"augment": "strong", "hflip": False}, COLOR)
    diffs = {round(float((out[i] != x[i]).float().mean()), 3) for i in (0, 16, 32, 48)}
    assert len(diffs) > 1


def test_color_jitter_only_for_color_images():
    color = make_transform("strong", False, True, 16, 16)
    gray = make_transform("strong", False, False, 16, 16)
    names = lambda t: [type(s).__name__ for s in t.transforms]
    assert "ColorJitter" in names(color) and "ColorJitter" not in names(gray)
    assert make_transform("none", False, True, 8, 8) is None
    assert "RandomHorizontalFlip" in names(make_transform("none", True, True, 8, 8))
    with pytest.raises(ValueError):
        make_transform("wild", False, False, 8, 8)


def test_flip_is_searched_only_where_it_keeps_the_label():
    for seed in range(6):
        assert suggest_augmentation(_trial(seed), GRAY)["hflip"] is False  # digits-like: never
    seen = {suggest_augmentation(_trial(seed), COLOR)["hflip"] for seed in range(12)}
    assert seen == {True, False}


def test_vision_step_augments_and_returns_a_loss():
    cfg = {"augment": "strong", "hflip": True}
    model = build_mlp({"layers": 1, "width": 16, "dropout": 0.0, "batch_norm": False, "activation": "relu"}, COLOR)
    x, y = _batch(COLOR, 8)
    ctx = TrainContext(cfg, COLOR, None, None, torch.device("cpu"), torch.nn.functional.cross_entropy)
    loss = vision_step(model, x, y, ctx)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)


def _forward_backward(model: torch.nn.Module, info: DataInfo, n: int = 4) -> None:
    x, y = _batch(info, n)
    model.train()
    out = model(x)
    assert out.shape == (n, info.num_classes)
    torch.nn.functional.cross_entropy(out, y).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (n, info.num_classes)


@pytest.mark.parametrize("info", [GRAY, COLOR], ids=["gray", "color"])
@pytest.mark.parametrize("define, build", [(define_linear, build_linear), (define_mlp, build_mlp),
                                           (define_cnn, build_cnn)], ids=["linear", "mlp", "cnn"])
def test_linear_mlp_and_cnn_forward_backward(info, define, build):
    trial = _trial()
    cfg = define(trial, info)
    train = train_space(trial, info)
    assert train["augment"] in POLICIES
    _forward_backward(build(cfg, info), info)


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("info", [GRAY, COLOR], ids=["gray", "color"])
def test_resnet_forward_backward(depth, info):
    cfg = {"depth": depth, "width": 8, "resolution": nets.resolutions(info)[0], "dropout": 0.1}
    model = nets.build_resnet(cfg, info)
    net = model[2]
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity) and net.layer4[0].conv1.out_channels == 64
    assert sum(len(getattr(net, f"layer{i}")) for i in range(1, 5)) == sum(nets.LAYERS[depth])
    _forward_backward(model, info)


def test_resnet_define_searches_depth_width_resolution():
    cfg = nets.define_resnet(_trial(), GRAY)
    assert cfg["depth"] in (18, 34) and cfg["width"] in nets.WIDTHS
    assert cfg["resolution"] in nets.resolutions(GRAY) == [8, 16]


@pytest.mark.parametrize("info", [GRAY, COLOR], ids=["gray", "color"])
def test_mobilenet_forward_backward(info):
    cfg = nets.define_mobilenet(_trial(), info)
    model = nets.build_mobilenet(dict(cfg, width_mult=0.5, resolution=8), info)
    assert model[2].features[0][0].stride == (1, 1)
    assert model[2].features[0][0].in_channels == info.input_shape[0]
    _forward_backward(model, info)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty local torch cache (TORCH_HOME): nothing is ever downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_pretrained_without_cached_weights_says_how_to_get_them(torch_home):
    with pytest.raises(UserError, match=r"resnet18-f37072fd\.pth.*hub[/\\]checkpoints"):
        nets.check_resnet_pretrained(GRAY)
    with pytest.raises(UserError, match=r"mobilenet_v3_small-047dcff4\.pth"):
        nets.check_mobilenet_pretrained(COLOR)


def test_resnet_pretrained_loads_cached_weights_and_freezes(torch_home):
    # A real torchvision state dict written where torchvision's cache keeps it.
    reference = models.resnet18()
    path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    nets.check_resnet_pretrained(GRAY)
    cfg = nets.define_resnet_pretrained(_trial(), GRAY)
    assert cfg["arch"] == "resnet18"  # resnet34 is not cached: not offered
    for finetune in ("head", "all"):
        model = nets.build_resnet_pretrained(dict(cfg, finetune=finetune, resolution=32), GRAY)
        assert torch.equal(model.net.conv1.weight, reference.conv1.weight)
        _forward_backward(model, GRAY, n=2)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        if finetune == "head":
            assert trainable and all(n.startswith("net.fc") for n in trainable)
            model.train()
            assert not model.net.bn1.training and model.head.training
        else:
            assert "net.conv1.weight" in trainable


def test_mobilenet_pretrained_loads_cached_weights(torch_home):
    path = torch_home / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    path.parent.mkdir(parents=True)
    torch.save(models.mobilenet_v3_small().state_dict(), path)
    model = nets.build_mobilenet_pretrained({"finetune": "head", "resolution": 32, "dropout": 0.1}, COLOR)
    _forward_backward(model, COLOR, n=2)
