"""Trainer throughput: samples per second of automl's ``fit`` against two hand-written loops.

The three contenders train the same freshly built model (same seed, same weights), on the
same data, with the same batch size, optimizer (Adam, lr 1e-3), loss and number of epochs,
and all three validate on the whole validation split after every epoch (a tuning trial must,
to report and to keep its best epoch):

- ``automl``: ``automl.fit`` as a trial calls it (with the space's own ``step``), early
  stopping switched off so every epoch runs;
- ``minimal``: the least a careful user writes: tensors in memory, a ``randperm`` per epoch,
  batches by index, the loss accumulated on the device and read once per epoch;
- ``dataloader``: the textbook ``DataLoader(TensorDataset(...), shuffle=True)`` loop with
  ``loss.item()`` per batch.

Samples/s is training rows times epochs over the wall time of the whole call (validation
included). Contenders run round-robin, median of the repeats; one torch thread (what each
of two workers gets on this machine).

Models: the vision ``cnn`` on digits (2 blocks of 32 channels, batch norm, 128-unit head)
and the tabular ``mlp`` on breast_cancer (2 x 256, batch norm), both built through the
plugin registry. If the tabular plugin is not installed, an equivalent MLP on the same
table (standardised numeric features) is used and the result says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._common import interleaved, load_avg, ratio

TRAIN = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 64, "scheduler": "constant",
         "patience": 10**9, "label_smoothing": 0.0, "augment": "none", "hflip": False}


def _call(model: nn.Module, x: Any) -> torch.Tensor:
    return model(**x) if isinstance(x, dict) else model(x)


def _take(x: Any, idx: torch.Tensor) -> Any:
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def _val_accuracy(model: nn.Module, x: Any, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        acc = (_call(model, x).argmax(1) == y).float().mean()
    model.train()
    return float(acc)


def minimal_loop(model: nn.Module, train_x: Any, train_y: torch.Tensor, val_x: Any, val_y: torch.Tensor,
                 epochs: int, bs: int, seed: int = 0) -> float:
    """The minimal hand-written loop: index batching, one loss sync per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN["lr"])
    gen = torch.Generator().manual_seed(seed)
    n = len(train_y)
    best = 0.0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total = torch.zeros(())
        for i in range(0, n - 1 if n % bs == 1 else n, bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(_call(model, _take(train_x, idx)), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        float(total)
        best = max(best, _val_accuracy(model, val_x, val_y))
    return best


def dataloader_loop(model: nn.Module, train_x: Any, train_y: torch.Tensor, val_x: Any, val_y: torch.Tensor,
                    epochs: int, bs: int, seed: int = 0) -> float:
    """The textbook loop: ``DataLoader(TensorDataset)``, ``loss.item()`` per batch."""
    keys = list(train_x) if isinstance(train_x, dict) else None
    tensors = [train_x[k] for k in keys] if keys else [train_x]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors, train_y), batch_size=bs,
                                         shuffle=True, generator=torch.Generator().manual_seed(seed),
                                         drop_last=len(train_y) % bs == 1)
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN["lr"])
    best = 0.0
    model.train()
    for _ in range(epochs):
        running = 0.0
        for *xs, y in loader:
            x = dict(zip(keys, xs)) if keys else xs[0]
            loss = F.cross_entropy(_call(model, x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
        best = max(best, _val_accuracy(model, val_x, val_y))
    return best


def _case(name: str, plugin: Any, dataset: str, space_name: str, model_cfg: dict[str, Any], epochs: int,
          repeats: int, note: str | None = None) -> dict[str, Any]:
    from automl.training import build_model, fit

    bundle = plugin.datasets[dataset].load(None, {}, 0)
    space = plugin.spaces[space_name]
    metric = plugin.metrics["accuracy"]
    cfg = dict(TRAIN, epochs=epochs)
    tr, va = bundle.train, bundle.val

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return build_model(space, model_cfg, bundle.info)

    runs: dict[str, Callable[[], Any]] = {
        "automl": lambda: fit(fresh(), bundle, cfg, metric, torch.device("cpu"), step=space.step, seed=0),
        "minimal": lambda: minimal_loop(fresh(), tr.inputs, tr.targets, va.inputs, va.targets, epochs, 64),
        "dataloader": lambda: dataloader_loop(fresh(), tr.inputs, tr.targets, va.inputs, va.targets, epochs, 64),
    }
    for fn in runs.values() if repeats > 1 else ():  # warm-up: first-call costs are not throughput
        fn()
    times = interleaved(runs, repeats)
    rows = len(tr) - (1 if len(tr) % 64 == 1 else 0)
    sps = {k: rows * epochs / statistics.median(v) for k, v in times.items()}
    out = {"case": name, "train_rows": len(tr), "epochs": epochs, "batch_size": 64, "repeats": repeats,
           "samples_per_s": {k: round(v, 1) for k, v in sps.items()},
           "vs_minimal": ratio(sps["automl"], sps["minimal"]), "vs_dataloader": ratio(sps["automl"], sps["dataloader"]),
           "goal": ">= 0.95 x minimal and > 1 x dataloader",
           "met": sps["automl"] >= 0.95 * sps["minimal"] and sps["automl"] > sps["dataloader"],
           "load_avg_1m": load_avg()}
    if note:
        out["note"] = note
    return out


def _tabular(registry: Any, epochs: int, repeats: int) -> dict[str, Any]:
    try:
        plugin = registry.get("tabular")
    except Exception:  # noqa: BLE001 - the plugin may be absent; fall back and say so
        plugin = None
    if plugin is not None and "mlp" in plugin.spaces and "breast_cancer" in plugin.datasets:
        cfg = {"width": 256, "depth": 2, "dropout": 0.1, "norm": "batch", "activation": "relu"}
        return _case("tabular mlp / breast_cancer", plugin, "breast_cancer", "mlp", cfg, epochs, repeats)
    return _fallback_tabular(epochs, repeats)


def _fallback_tabular(epochs: int, repeats: int) -> dict[str, Any]:
    """The same table and an equivalent MLP, wrapped as a one-off plugin-like object."""
    from types import SimpleNamespace

    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from automl import DataBundle, DataInfo, Dataset, SearchSpace, Split, metrics
    from automl.data import three_way_split

    x, y = load_breast_cancer(return_X_y=True)
    tr, va, te = three_way_split(len(y), 0, stratify=y)
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    xt, yt = torch.tensor((x - mu) / sd, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    info = DataInfo(task="classification", num_classes=2, input_shape=(x.shape[1],))

    def load(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
        cut = (lambda idx: Split(xt[np.asarray(idx)], yt[np.asarray(idx)]))
        return DataBundle(cut(tr), cut(va), cut(te), info)

    def build(cfg: dict[str, Any], info: DataInfo) -> nn.Module:
        w = cfg["width"]
        return nn.Sequential(nn.Linear(x.shape[1], w), nn.BatchNorm1d(w), nn.ReLU(), nn.Dropout(0.1),
                             nn.Linear(w, w), nn.BatchNorm1d(w), nn.ReLU(), nn.Dropout(0.1), nn.Linear(w, 2))

    plugin = SimpleNamespace(datasets={"bc": Dataset(name="bc", task="classification", load=load)},
                             spaces={"mlp": SearchSpace(name="mlp", tasks=("classification",), define=lambda t, i: {},
                                                        build=build)},
                             metrics={"accuracy": metrics.ACCURACY})
    return _case("tabular mlp / breast_cancer (fallback MLP)", plugin, "bc", "mlp", {"width": 256}, epochs,
                 repeats, note="tabular plugin not available: an equivalent 2 x 256 MLP was used")


def run(quick: bool = False) -> dict[str, Any]:
    """Both cases; samples/s of each contender and automl's ratios."""
    from automl.plugins import load_registry

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        registry = load_registry([])
        epochs_cnn, epochs_mlp, repeats = (1, 2, 1) if quick else (4, 30, 5)
        cnn = {"blocks": 2, "channels": 32, "kernel": 3, "dropout": 0.1, "batch_norm": True, "activation": "relu",
               "head": 128}
        rows = [_case("vision cnn / digits", registry.get("vision"), "digits", "cnn", cnn, epochs_cnn, repeats),
                _tabular(registry, epochs_mlp, repeats)]
    finally:
        torch.set_num_threads(threads)  # the caller's setting (a test process, the runner)
    return {"name": "trainer throughput", "rows": rows}
