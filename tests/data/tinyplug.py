"""A tiny plugin for core tests, loaded with --plugin-path.

Dataset ``line``: y = 3*x0 - 2*x1 + noise (regression, learnable in a few epochs).
Dataset ``blobs``: two Gaussian blobs (binary classification).
Dataset ``faulty``: what a plugin author gets wrong (``--option fault=sizes|channels_last``).
Spaces: ``linear`` (works), ``boom`` (raises in build), ``late`` (fails after three training
batches: a trial error), ``nan`` (produces NaN losses),
``slow`` (sleeps per batch, for kill and signal tests), ``oom`` (out of memory above a
batch of 16), ``die`` (the training process kills itself, as the kernel's OOM killer would).
With ``TINYPLUG_DIE_HIDDEN=N`` every space's model with ``hidden == N`` kills its process.
"""

import os
import signal
import time

import numpy as np
import torch
from torch import nn

from automl import (
    Baseline,
    DataBundle,
    DataInfo,
    Dataset,
    Metric,
    Option,
    PluginInfo,
    SearchSpace,
    Split,
    hookimpl,
    metrics,
)
from automl.data import three_way_split
from automl.training import suggest_training


def _bundle(x, y, task, seed, num_classes=None):
    tr, va, te = three_way_split(len(y), seed, stratify=y if task == "classification" else None)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    return DataBundle(*(Split(xt[i], yt[i]) for i in (tr, va, te)),
                      DataInfo(task=task, num_classes=num_classes, input_shape=(x.shape[1],)),
                      summary={"rows": len(y)})


def load_line(path, options, seed):
    rng = np.random.default_rng(123)
    x = rng.normal(size=(options["rows"], 2))
    y = (3 * x[:, 0] - 2 * x[:, 1] + 0.1 * rng.normal(size=len(x))).astype(np.float32)
    return _bundle(x, y, "regression", seed)


def load_blobs(path, options, seed):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=300)
    x = rng.normal(size=(300, 2)) + 2.5 * y[:, None]
    return _bundle(x, y.astype(np.int64), "classification", seed, num_classes=2)


def define_linear(trial, info):
    return {"hidden": trial.suggest_int("hidden", 4, 16)}


class DiesTraining(nn.Module):
    """Kills its own process on its second training batch, as the kernel's OOM killer takes a
    worker mid-training (the first batch is the one a search checks before it starts)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > 1:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(x)


def build_linear(cfg, info):
    out = info.num_classes or 1
    model = nn.Sequential(nn.Linear(info.input_shape[0], cfg["hidden"]), nn.ReLU(), nn.Linear(cfg["hidden"], out))
    if str(cfg["hidden"]) == os.environ.get("TINYPLUG_DIE_HIDDEN"):
        return DiesTraining(model)  # this one configuration kills its worker, every time
    return model


def train_small(trial, info):
    cfg = suggest_training(trial, info, epochs=(3, 5), batch_sizes=(32,), optimizers=("adam",),
                           lr=(5e-3, 5e-2))
    return cfg


def build_boom(cfg, info):
    raise RuntimeError("boom: this model cannot be built")


class Late(nn.Module):
    """Trains for three batches, then fails: a trial error, not a broken space."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > 3:
                raise RuntimeError("boom: this model fails while training")
        return self.inner(x)


def build_late(cfg, info):
    return Late(build_linear(cfg, info))


def load_faulty(path, options, seed):
    """Data a plugin got wrong (``fault``): ``sizes`` gives the train split one target fewer
    than inputs; ``channels_last`` gives (8, 8, 1) images where DataInfo says (1, 8, 8)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=400).astype(np.int64)
    if options["fault"] == "channels_last":
        x = torch.tensor(rng.normal(size=(400, 8, 8, 1)), dtype=torch.float32)
        splits = [Split(x[i:i + 240 if i == 0 else i + 80], torch.tensor(y[i:i + 240 if i == 0 else i + 80]))
                  for i in (0, 240, 320)]
        return DataBundle(*splits, DataInfo(task="classification", num_classes=2, input_shape=(1, 8, 8)))
    bundle = load_blobs(path, options, seed)
    if options["fault"] == "sizes":
        bundle.train = Split(bundle.train.inputs, bundle.train.targets[:-1])
    return bundle


def one_argument_metric(y_true):
    """A metric written with the wrong signature (a metric is fn(y_true, y_pred))."""
    return 0.0


def train_nan(trial, info):
    cfg = train_small(trial, info)
    cfg.update(optimizer="sgd", lr=1e30)
    return cfg


class Slow(nn.Module):
    def __init__(self, inner, delay):
        super().__init__()
        self.inner, self.delay = inner, delay

    def forward(self, x):
        if self.training:
            # TINYPLUG_GATE=FILE: training waits while FILE exists, a closed gate (a test
            # closes it once the study exists and opens it when the processes it wants have
            # claimed their trials: no race with start-up time).
            gate = os.environ.get("TINYPLUG_GATE")
            while gate and os.path.exists(gate):
                time.sleep(0.05)
            time.sleep(self.delay)
        return self.inner(x)


def build_slow(cfg, info):
    return Slow(build_linear(cfg, info), float(os.environ.get("TINYPLUG_DELAY", "0.05")))


def train_slow(trial, info):
    cfg = train_small(trial, info)
    cfg.update(epochs=6, patience=100)
    return cfg


class OomAbove(nn.Module):
    """Raises torch's real out-of-memory exception type for batches above a size, the way a
    CUDA allocation failure surfaces, so the halve-and-retry path runs on a CPU machine."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x):
        if self.training and x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"cannot allocate a batch of {x.shape[0]}")
        return self.inner(x)


def build_oom(cfg, info):
    return OomAbove(build_linear(cfg, info), 16)


def build_die(cfg, info):
    return DiesTraining(build_linear(cfg, info))


ALL = ("classification", "regression")


@hookimpl
def plugin_info():
    return PluginInfo(name="tinyplug", description="core test plugin", default_dataset="line",
                      default_space="linear", default_metric="rmse")


@hookimpl
def register_datasets(register):
    register(Dataset("line", "regression", load_line, "y = 3 x0 - 2 x1 + noise",
                     options=(Option("rows", int, 200, "number of rows"),)))
    register(Dataset("blobs", "classification", load_blobs, "two Gaussian blobs"))
    register(Dataset("faulty", "classification", load_faulty, "data with a fault a plugin author can make",
                     options=(Option("fault", str, "none", "sizes, channels_last or none",
                                     choices=("none", "sizes", "channels_last")),)))


@hookimpl
def register_spaces(register):
    register(SearchSpace("linear", ALL, define_linear, build_linear, train=train_small))
    register(SearchSpace("boom", ALL, define_linear, build_boom, train=train_small))
    register(SearchSpace("late", ALL, define_linear, build_late, train=train_small))
    register(SearchSpace("nan", ALL, define_linear, build_linear, train=train_nan))
    register(SearchSpace("slow", ALL, define_linear, build_slow, train=train_slow))
    register(SearchSpace("oom", ALL, define_linear, build_oom, train=train_small))
    register(SearchSpace("die", ALL, define_linear, build_die, train=train_small))


@hookimpl
def register_metrics(register):
    register(metrics.RMSE)
    register(metrics.R2)
    register(metrics.ACCURACY)
    register(Metric("onearg", "maximize", ALL, one_argument_metric, "wrong signature on purpose"))


def fit_mean(data, metric):
    """Predicts the train split's mean target (regression); its predictions are stored."""
    mean = float(data.train.targets.float().mean())
    val, test = np.full(len(data.val.targets), mean), np.full(len(data.test.targets), mean)
    return {"val": metric.fn(data.val.targets.numpy(), val), "test": metric.fn(data.test.targets.numpy(), test),
            "val_pred": val, "test_pred": test}


def fit_sleepy(data, metric):
    """Sleeps ``TINYPLUG_BASELINE_SLEEP`` seconds first: a baseline slower than its share of a budget."""
    time.sleep(float(os.environ.get("TINYPLUG_BASELINE_SLEEP", "0")))
    return fit_mean(data, metric)


@hookimpl
def register_baselines(register):
    # Only on request: most core tests want no baseline rows in their leaderboards.
    if os.environ.get("TINYPLUG_BASELINES"):
        register(Baseline("mean", ("regression",), fit_mean, "the train mean"))
        register(Baseline("sleepy", ("regression",), fit_sleepy, "the train mean, after a sleep"))
