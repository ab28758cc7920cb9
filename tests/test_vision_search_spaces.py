"""The vision spaces a practitioner searches (issue 15): batch mixing (mixup, cutmix) with soft
targets, the affine / pad-and-crop / TrivialAugment policies on 8x8 and 32x32 images, the
schedules, momentum and EMA the spaces search, CIFAR-sized ResNet widths, the ``svc`` baseline
row, and a short CLI search that runs the new choices.

(Named apart from tests/plugins/vision/test_vision_spaces.py: two test modules of one name in
folders without ``__init__.py`` cannot both be collected.)
"""

from __future__ import annotations

import optuna
import pytest
import torch

from automl import DataInfo, TrainContext, metrics
from automl.plugins import load_registry
from automl.training import fit
from automl_plugins.vision import _nets as nets
from automl_plugins.vision._augment import (
    LARGE_ONLY,
    MIXES,
    augment,
    make_transform,
    mix_batch,
    policies,
    suggest_augmentation,
    vision_step,
)
from automl_plugins.vision._baseline import fit_svc
from automl_plugins.vision._data import image_info, load_digits_bundle
from automl_plugins.vision._spaces import EMA, SCHEDULES, START_CNN, build_cnn, train_space

DIGITS = image_info([str(i) for i in range(10)], (1, 8, 8), [0.3], [0.2], hflip=False)
CIFAR = image_info([str(i) for i in range(10)], (3, 32, 32), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26], hflip=True)
CNN = {"blocks": 1, "channels": 8, "kernel": 3, "dropout": 0.0, "batch_norm": True, "activation": "relu", "head": 16}


def _trial(seed: int = 0) -> optuna.Trial:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()


def _batch(info: DataInfo, n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *info.input_shape), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % info.num_classes


def _ctx(cfg: dict, info: DataInfo) -> TrainContext:
    smoothing = float(cfg.get("label_smoothing", 0.0))
    return TrainContext(cfg, info, None, None, torch.device("cpu"),
                        lambda out, y: torch.nn.functional.cross_entropy(out, y, label_smoothing=smoothing))


def test_large_image_policies_are_offered_from_32_pixels():
    assert not set(LARGE_ONLY) & set(policies(DIGITS))
    assert "affine" in policies(DIGITS) and set(LARGE_ONLY) <= set(policies(CIFAR))


@pytest.mark.parametrize("info", [DIGITS, CIFAR], ids=["8x8", "32x32"])
@pytest.mark.parametrize("policy, strength", [("affine", 0.5), ("affine", 1.5), ("crop", 1.0), ("trivial", 1.0)])
def test_new_policies_change_images_and_keep_shape_dtype(info, policy, strength):
    x, _ = _batch(info, 40)
    x = (x // 2 + torch.linspace(0, 100, x.shape[-1]).to(torch.uint8)).contiguous()  # structure to move
    torch.manual_seed(0)
    out = augment(x, {"augment": policy, "aug_strength": strength, "hflip": info.extra["hflip"]}, info)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert not torch.equal(out, x)


def test_affine_strength_scales_the_transform():
    weak = make_transform("affine", False, False, 8, 8, 0.25).transforms[0]
    strong = make_transform("affine", False, False, 8, 8, 1.5).transforms[0]
    assert weak.degrees[1] < strong.degrees[1] and weak.translate[0] < strong.translate[0]
    names = [type(t).__name__ for t in make_transform("trivial", True, True, 32, 32).transforms]
    assert names == ["RandomCrop", "TrivialAugmentWide", "RandomHorizontalFlip"]


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
@pytest.mark.parametrize("info", [DIGITS, CIFAR], ids=["8x8", "32x32"])
def test_mixing_gives_soft_targets_and_a_loss_with_gradients(mix, info):
    cfg = {"augment": "none", "mix": mix, "mix_alpha": 1.0, "label_smoothing": 0.1}
    x, y = _batch(info)
    torch.manual_seed(3)
    xm, soft = mix_batch(x, y, cfg, info)
    assert xm.dtype == torch.float32 and 0.0 <= float(xm.min()) and float(xm.max()) <= 1.0
    assert soft.shape == (len(y), info.num_classes)
    assert torch.allclose(soft.sum(1), torch.ones(len(y)))
    assert (soft.max(1).values < 1.0).any()  # mixed: not one-hot
    model = build_cnn(CNN, info)
    model.train()
    torch.manual_seed(3)
    loss = vision_step(model, x, y, _ctx(cfg, info))
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    hard = vision_step(model, x, y, _ctx(dict(cfg, mix="none"), info))
    assert not torch.isclose(loss, hard)


def test_no_mixing_leaves_the_batch_and_hard_targets():
    x, y = _batch(DIGITS)
    assert mix_batch(x, y, {"mix": "none"}, DIGITS) == (x, None)
    with pytest.raises(ValueError, match="unknown batch mixing"):
        mix_batch(x, y, {"mix": "blend"}, DIGITS)


def test_spaces_search_mixing_schedules_momentum_and_ema():
    seen: dict[str, set] = {"mix": set(), "scheduler": set(), "ema": set(), "augment": set()}
    momentum = False
    for seed in range(40):
        trial = _trial(seed)
        cfg = train_space(trial, DIGITS)
        for key in seen:
            seen[key].add(cfg[key])
        assert ("aug_strength" in cfg) == (cfg["augment"] == "affine")
        assert ("mix_alpha" in cfg) == (cfg["mix"] != "none")
        momentum |= "momentum" in cfg and "nesterov" in cfg
        assert ("momentum" in cfg) == (cfg["optimizer"] == "sgd")
    assert seen["mix"] == set(MIXES) and seen["scheduler"] == set(SCHEDULES) and seen["ema"] == set(EMA)
    assert seen["augment"] == set(policies(DIGITS)) and momentum
    assert "hflip" in suggest_augmentation(_trial(), CIFAR)


def test_resnet_widths_fit_cifar_and_train_with_mixing_and_ema():
    widths = {nets.define_resnet(_trial(seed), CIFAR)["width"] for seed in range(20)}
    assert widths == set(nets.WIDTHS) and max(widths) == 64
    x, y = _batch(CIFAR, 24)
    from automl import DataBundle, Split

    data = DataBundle(Split(x[:16], y[:16]), Split(x[16:], y[16:]), Split(x[16:], y[16:]), CIFAR)
    model = nets.build_resnet({"depth": 18, "width": 16, "resolution": 32, "dropout": 0.0}, CIFAR)
    cfg = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "batch_size": 8, "epochs": 1,
           "scheduler": "onecycle", "ema": 0.99, "augment": "trivial", "hflip": True, "mix": "cutmix",
           "mix_alpha": 1.0}
    result = fit(model, data, cfg, metrics.ACCURACY, torch.device("cpu"), step=vision_step, seed=0)
    assert result.epochs_run == 1 and 0.0 <= result.best_value <= 1.0


def test_svc_baseline_is_tuned_on_train_and_scores_digits():
    data = load_digits_bundle(None, {}, 0)
    out = fit_svc(data, metrics.ACCURACY)
    assert out["val"] > 0.97 and out["test"] > 0.97
    assert out["C"] in (1.0, 10.0, 100.0, 1000.0) and out["gamma"] > 0
    small = fit_svc(data, metrics.ACCURACY, c_grid=(10.0,), gamma_factors=(1.0,))  # no CV: one candidate
    assert small["C"] == 10.0 and small["test"] > 0.95


def test_default_vision_search_starts_from_known_good_configs():
    """The cnn space's starts set every searched parameter but the epochs (the budget or the
    sampler sets those), inside its range, and differ where an ensemble gains: EMA and affine
    jitter, SGD."""
    import warnings

    from automl.study.sampling import sample_config, start_params

    plugin = load_registry([]).get("vision")
    space = plugin.spaces["cnn"]
    assert space.starts[0] == START_CNN and "svc" in plugin.baselines
    configs = []
    for params in start_params({"cnn": space}, DIGITS):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial warns about a value out of its range
            configs.append(sample_config({"cnn": space}, optuna.trial.FixedTrial(params), DIGITS, epochs=40))
    trains = [c["train"] for c in configs]
    assert len(trains) == 3 and trains[0]["ema"] == 0.0 and trains[0]["mix"] == "none"
    assert any(t["ema"] > 0 and t["augment"] == "affine" for t in trains)
    assert any(t["optimizer"] == "sgd" and t["nesterov"] and t["scheduler"] == "warmup_cosine" for t in trains)


def test_short_cli_search_runs_the_new_choices_and_shows_the_svc_row(cli):
    r = cli("search", "--plugin", "vision", "--trials", "2", "--max-epochs", "1", "--study", "v15")
    assert r.code == 0, r.err
    rows = cli("leaderboard", "v15", "--format", "json").json()
    params = [row["params"] for row in rows if row.get("state") == "COMPLETE"]
    assert len(params) == 2  # the first two starts: one of them with EMA and affine jitter
    assert any(p.get("ema", 0) > 0 and p.get("augment") == "affine" and p.get("aug_strength") for p in params)
    table = cli("leaderboard", "v15")
    assert table.code == 0 and "svc" in table.out  # the baseline row, beside the trials
