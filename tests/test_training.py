"""The shared trainer: what a custom step sees, stopping between batches, checkpoints that load
on the CPU whatever device saved them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from automl import DataBundle, DataInfo, Split, metrics
from automl.training import fit


def _bundle(n: int = 64) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    parts = [Split(x[i * n:(i + 1) * n], y[i * n:(i + 1) * n]) for i in range(3)]
    return DataBundle(*parts, DataInfo(task="classification", num_classes=2, input_shape=(4,)))


def test_a_custom_step_sees_train_and_val_never_test():
    data, seen = _bundle(), []

    def step(model, x, y, ctx):
        seen.append({f.name for f in dataclasses.fields(ctx)})
        assert ctx.train.targets.shape[0] == 64 and ctx.val.targets.shape[0] == 64
        return ctx.loss(model(x), y)

    fit(nn.Linear(4, 2), data, {"epochs": 1, "batch_size": 32, "lr": 0.01}, metrics.ACCURACY,
        torch.device("cpu"), step=step)
    assert seen and all("test" not in names and "data" not in names for names in seen)


def test_after_batch_can_stop_training_between_batches():
    calls = []

    class Stop(BaseException):
        pass

    def after_batch():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        fit(nn.Linear(4, 2), _bundle(), {"epochs": 5, "batch_size": 8, "lr": 0.01}, metrics.ACCURACY,
            torch.device("cpu"), after_batch=after_batch)
    assert len(calls) == 3


def test_a_checkpoint_loads_on_the_cpu_and_training_continues_from_it(tmp_path):
    """A run stopped after its first epoch continues from its checkpoint: the saved RNG
    states are CPU tensors (set_rng_state takes no other), whatever device trained."""
    ckpt = tmp_path / "checkpoint.pt"
    cfg = {"epochs": 3, "batch_size": 16, "lr": 0.05, "patience": 10}
    batches = []

    class Stop(BaseException):
        pass

    def stop_in_second_epoch():
        batches.append(1)
        if len(batches) == 5:  # 4 batches per epoch: the second epoch's first batch
            raise Stop

    torch.manual_seed(0)
    with pytest.raises(Stop):
        fit(nn.Linear(4, 2), _bundle(), cfg, metrics.ACCURACY, torch.device("cpu"), checkpoint=ckpt,
            checkpoint_every_s=0, after_batch=stop_in_second_epoch)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["epoch"] == 0 and state["torch_rng"].device.type == "cpu"
    result = fit(nn.Linear(4, 2), _bundle(), cfg, metrics.ACCURACY, torch.device("cpu"), checkpoint=ckpt,
                 checkpoint_every_s=0)
    assert result.resumed_from_epoch == 1 and result.epochs_run == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a lent GPU machine)")
def test_a_checkpoint_saved_on_cuda_continues_on_cuda(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    cfg = {"epochs": 3, "batch_size": 16, "lr": 0.05, "patience": 10}
    batches = []

    class Stop(BaseException):
        pass

    def stop():
        batches.append(1)
        if len(batches) == 5:
            raise Stop

    with pytest.raises(Stop):
        fit(nn.Linear(4, 2), _bundle(), cfg, metrics.ACCURACY, torch.device("cuda"), checkpoint=ckpt,
            checkpoint_every_s=0, after_batch=stop)
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["cuda_rng"]
    result = fit(nn.Linear(4, 2), _bundle(), cfg, metrics.ACCURACY, torch.device("cuda"), checkpoint=ckpt)
    assert result.resumed_from_epoch == 1


@pytest.mark.parametrize("scheduler", ["onecycle", "warmup_cosine", "cosine"])
def test_every_schedule_runs_its_whole_course(scheduler):
    """A per-batch schedule is made for exactly the batches training runs (the last batch of
    one row is dropped): OneCycleLR refuses a step past its total, so running every epoch is
    the check; the rate ends far below where it started or peaked."""
    data = _bundle(65)  # 65 rows in batches of 16: 4 batches, the last row dropped
    model = nn.Linear(4, 2)
    cfg = {"epochs": 4, "batch_size": 16, "lr": 0.05, "patience": 10, "scheduler": scheduler}
    rates = []
    result = fit(model, data, cfg, metrics.ACCURACY, torch.device("cpu"),
                 report=lambda epoch, value, loss: rates.append(epoch))
    assert result.epochs_run == 4 and len(rates) == 4


def test_weight_decay_skips_biases_and_sgd_takes_its_momentum():
    from automl.training import make_optimizer

    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = make_optimizer(model, {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-3, "momentum": 0.8,
                                 "nesterov": False})
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[2].weight)}
    assert all(g["momentum"] == 0.8 and g["nesterov"] is False for g in opt.param_groups)


def test_ema_weights_are_what_is_validated_and_kept():
    """With ``ema`` the averaged weights are validated and handed back: after training, the
    model holds the average, which differs from the raw weights the optimizer left."""
    data, cfg = _bundle(), {"epochs": 3, "batch_size": 8, "lr": 0.1, "patience": 10}
    torch.manual_seed(0)
    plain = fit(nn.Linear(4, 2), data, cfg, metrics.ACCURACY, torch.device("cpu"))
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    averaged = fit(model, data, {**cfg, "ema": 0.9}, metrics.ACCURACY, torch.device("cpu"))
    assert set(averaged.state_dict) == set(model.state_dict())  # a plain module's keys, loadable
    assert not torch.equal(plain.state_dict["weight"], averaged.state_dict["weight"])
    assert torch.equal(model.weight.detach(), averaged.state_dict["weight"])


def test_ema_decay_is_warmed_up_so_early_epochs_follow_the_weights():
    """The average's first steps move most of the way to the weights (decay
    min(d, (1 + n) / (10 + n))), later ones by 1 - d; integer buffers follow the model."""
    from torch.optim.swa_utils import AveragedModel

    from automl.training import ema_update

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = AveragedModel(model, multi_avg_fn=ema_update(0.999), use_buffers=True)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    before = ema.module[0].weight.clone()
    ema.update_parameters(model)  # n = 1: keeps (1 + 1) / (10 + 1) of the average, not 0.999
    moved = (ema.module[0].weight - before) / (model[0].weight - before)
    assert torch.allclose(moved, torch.full_like(moved, 1 - 2 / 11), atol=1e-5)
    assert int(ema.module[1].num_batches_tracked) == int(model[1].num_batches_tracked)
    ema.n_averaged.fill_(100_000)  # long after the warm-up: the decay itself
    with torch.no_grad():
        model[0].weight.add_(1.0)
    before = ema.module[0].weight.clone()
    ema.update_parameters(model)
    moved = (ema.module[0].weight - before) / (model[0].weight - before)
    assert torch.allclose(moved, torch.full_like(moved, 0.001), atol=1e-5)


def test_ema_trial_scores_near_its_weights_after_one_epoch():
    """A 0.999 average validated after one short epoch is not the random initialisation: its
    score is close to the raw weights' (what keeps pruning from ending EMA trials early)."""
    data, cfg = _bundle(), {"epochs": 1, "batch_size": 8, "lr": 0.1, "patience": 10}
    torch.manual_seed(0)
    raw = fit(nn.Linear(4, 2), data, cfg, metrics.ACCURACY, torch.device("cpu"))
    torch.manual_seed(0)
    avg = fit(nn.Linear(4, 2), data, {**cfg, "ema": 0.999}, metrics.ACCURACY, torch.device("cpu"))
    assert raw.best_value > 0.8 and avg.best_value >= raw.best_value - 0.1


def test_suggest_training_searches_the_keywords_a_space_asks_for():
    import optuna

    from automl.training import fixed_epochs, suggest_training

    trial = optuna.trial.FixedTrial({"optimizer": "sgd", "lr": 0.01, "weight_decay": 1e-4, "batch_size": 32,
                                     "epochs": 12, "scheduler": "onecycle", "momentum": 0.9, "nesterov": True,
                                     "ema": 0.99})
    cfg = suggest_training(trial, schedulers=("cosine", "onecycle"), momentum=(0.85, 0.95), ema=(0.0, 0.99))
    assert cfg["scheduler"] == "onecycle" and cfg["momentum"] == 0.9 and cfg["ema"] == 0.99
    with fixed_epochs(30):
        again = optuna.trial.FixedTrial({**trial.params, "scheduler": "cosine"})
        assert suggest_training(again)["epochs"] == 30 and "epochs" not in again.params
