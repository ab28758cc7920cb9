"""The shared trainer: one loop for every plugin and task, and the helpers around it.

Public for plugin authors: :func:`fit`, :func:`split_outputs`, :func:`evaluate`,
:func:`suggest_training`, :func:`build_model` and :class:`TargetScaler`.

In-memory splits are moved to the device once and batched by index (no per-sample Python,
no collation); :class:`StreamSplit` data goes through a ``DataLoader`` with workers. Each
epoch trains, validates on the whole validation split, reports to the caller (which reports
to Optuna and may prune), applies early stopping, and checkpoints when the trial is long
enough for a checkpoint to pay. The loss is synchronised once per epoch, not per batch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl.errors import TrialFailed
from automl.types import (
    DataBundle,
    DataInfo,
    Metric,
    SearchSpace,
    Split,
    StreamSplit,
    TrainContext,
    call_model,
    map_inputs,
)

OPTIMIZERS = ("adam", "adamw", "sgd")
EVAL_BATCH = 1024


def suggest_training(
    trial: Any,
    info: DataInfo | None = None,
    *,
    epochs: tuple[int, int] = (8, 40),
    batch_sizes: tuple[int, ...] = (32, 64, 128),
    lr: tuple[float, float] = (3e-4, 3e-2),
    weight_decay: tuple[float, float] = (1e-6, 1e-2),
    optimizers: tuple[str, ...] = OPTIMIZERS,
    patience: int = 6,
) -> dict[str, Any]:
    """Suggest the training hyperparameters every model needs, and return them as a config.

    Searched: ``optimizer``, ``lr`` (log scale), ``weight_decay`` (log scale), ``batch_size``,
    ``epochs`` and the ``scheduler`` (constant or cosine). Early stopping uses ``patience``
    epochs without improvement of the validation metric. Spaces call it with their own ranges
    and add their own keys (``label_smoothing``, ``class_weighted``, ``grad_clip``).
    """
    return {
        "optimizer": trial.suggest_categorical("optimizer", list(optimizers)),
        "lr": trial.suggest_float("lr", lr[0], lr[1], log=True),
        "weight_decay": trial.suggest_float("weight_decay", weight_decay[0], weight_decay[1], log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(batch_sizes)),
        "epochs": trial.suggest_int("epochs", epochs[0], epochs[1]),
        "scheduler": trial.suggest_categorical("scheduler", ["constant", "cosine"]),
        "patience": patience,
    }


class TargetScaler(nn.Module):
    """Regression head: the inner model learns standardised targets; outputs are in the
    targets' own units, so saved and exported models predict real values."""

    def __init__(self, inner: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.inner(*args, **kwargs)
        if out.dim() > 1 and out.shape[-1] == 1:
            out = out.squeeze(-1)
        return out * self.std + self.mean


def build_model(space: SearchSpace, model_config: dict[str, Any], info: DataInfo) -> nn.Module:
    """Build a space's model for a config; regression models get a :class:`TargetScaler`."""
    model = space.build(model_config, info)
    if not isinstance(model, nn.Module):
        raise TypeError(f"space {space.name!r} build() returned {type(model).__name__}, not nn.Module")
    if info.task == "regression" and info.target_std:
        model = TargetScaler(model, info.target_mean or 0.0, info.target_std)
    return model


def default_loss(info: DataInfo, cfg: dict[str, Any], train: Split | StreamSplit,
                 device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The task's default loss: cross-entropy (with optional label smoothing and class
    weights) for classification, MSE in standardised units for regression."""
    if info.task == "classification":
        weight = None
        if cfg.get("class_weighted") and isinstance(train, Split):
            counts = torch.bincount(train.targets.long().cpu(), minlength=info.num_classes or 0).float()
            weight = (counts.sum() / (counts.clamp(min=1) * len(counts))).to(device)
        smoothing = float(cfg.get("label_smoothing", 0.0))
        return lambda out, y: F.cross_entropy(out.float(), y.long(), weight=weight, label_smoothing=smoothing)
    if info.task == "regression":
        scale = float(info.target_std or 1.0) ** 2
        return lambda out, y: F.mse_loss(out.float(), y.float()) / scale

    def no_default(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise TrialFailed(f"task {info.task!r} has no default loss: the space must provide a step")

    return no_default


def make_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    name = cfg.get("optimizer", "adamw")
    lr, wd = float(cfg.get("lr", 1e-3)), float(cfg.get("weight_decay", 0.0))
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise TrialFailed(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


@dataclass
class FitResult:
    best_value: float
    best_epoch: int
    epochs_run: int
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    samples: int = 0
    seconds: float = 0.0
    resumed_from_epoch: int | None = None


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()


def _loader(split: StreamSplit, batch_size: int, shuffle: bool, device: torch.device):
    return torch.utils.data.DataLoader(
        split.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=split.num_workers,
        persistent_workers=split.num_workers > 0, pin_memory=device.type == "cuda")


def split_outputs(model: nn.Module, split: Split | StreamSplit, info: DataInfo, device: torch.device,
                  batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """A model's outputs on a whole labelled split: ``(y_true, y_pred)`` as numpy arrays, with
    class probabilities (softmax) for classification. This is what a :class:`automl.Metric`
    receives.

    Example::

        y_true, y_pred = split_outputs(model, bundle.val, bundle.info, torch.device("cpu"))
        accuracy = automl.metrics.ACCURACY.fn(y_true, y_pred)
    """
    model.eval()
    outs, ys = [], []
    with torch.inference_mode(), _autocast(device):
        if isinstance(split, StreamSplit):
            batches = ((map_inputs(x, lambda t: t.to(device, non_blocking=True)), y)
                       for x, y in _loader(split, batch_size, False, device))
        else:
            # Contiguous slices are views: no per-epoch copy (gather) of the split.
            batches = ((map_inputs(split.inputs, lambda t, i=i: t[i:i + batch_size]), split.targets[i:i + batch_size])
                       for i in range(0, len(split), batch_size))
        for xb, yb in batches:
            out = call_model(model, _channels_last(xb))
            outs.append(out.float())
            ys.append(yb)
    out, y = torch.cat(outs), torch.cat(ys)
    if info.task == "classification":
        out = torch.softmax(out, dim=-1)
    return _as_numpy(y), _as_numpy(out)


def evaluate(model: nn.Module, data: DataBundle, split_name: str, device: torch.device) -> tuple[Any, Any]:
    """``(y_true, y_pred)`` of one split (``train``, ``val`` or ``test``): the dataset's own
    ``evaluate`` when it has one (ranking over a catalogue), else :func:`split_outputs`."""
    if data.evaluate is not None:
        return data.evaluate(model, split_name, device)
    return split_outputs(model, data.split(split_name), data.info, device)


def score(metric: Metric, y_true: Any, y_pred: Any) -> float:
    """The metric's value as a float; a NaN or infinite value fails the trial."""
    value = float(metric.fn(y_true, y_pred))
    if not math.isfinite(value):
        raise TrialFailed(f"metric {metric.name} is {value}")
    return value


def _autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()  # entered once per batch: ~10x cheaper than a disabled autocast


def _channels_last(inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor) and inputs.is_cuda and inputs.dim() == 4 and inputs.is_floating_point():
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def _to_device(split: Split | StreamSplit, device: torch.device) -> Split | StreamSplit:
    return split.to(device) if isinstance(split, Split) else split


def fit(
    model: nn.Module,
    data: DataBundle,
    cfg: dict[str, Any],
    metric: Metric,
    device: torch.device,
    *,
    step: Callable[..., torch.Tensor] | None = None,
    report: Callable[[int, float, float], None] | None = None,
    seed: int = 0,
    checkpoint: Path | None = None,
    checkpoint_every_s: float = 10.0,
    after_batch: Callable[[], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train`` and select its best epoch on ``data.val``.

    ``report(epoch, value, train_loss)`` is called after each epoch and may raise
    ``optuna.TrialPruned``. When ``checkpoint`` is given, the full training state (model,
    optimizer, scheduler, RNG, history) is saved there at most every ``checkpoint_every_s``
    seconds, and a run that finds one continues from it. ``after_batch()`` is called after
    every optimizer step; it may raise to stop training at once (a worker asked to stop).
    """
    start = time.perf_counter()
    model.to(device)
    if device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    train, val = _to_device(data.train, device), _to_device(data.val, device)
    # The test split stays where it is: training and model selection never read it.
    moved = DataBundle(train, val, data.test, data.info, data.state, data.summary, data.evaluate)
    epochs, bs = int(cfg.get("epochs", 10)), int(cfg.get("batch_size", 64))
    patience = int(cfg.get("patience", 5))
    optimizer = make_optimizer(model, cfg)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
                 if cfg.get("scheduler") == "cosine" else None)
    loss_fn = default_loss(data.info, cfg, train, device)
    gen = torch.Generator().manual_seed(seed)
    ctx = TrainContext(cfg, data.info, train, val, device, loss_fn, gen)
    sign = 1.0 if metric.direction == "maximize" else -1.0
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    clip = cfg.get("grad_clip")

    best_value, best_epoch, best_state, history, first_epoch = -math.inf * sign, -1, None, [], 0
    if checkpoint is not None and checkpoint.exists():
        # Loaded on the CPU, whatever device saved it: RNG states must be CPU tensors, and
        # load_state_dict moves weights and optimizer state to the model's device.
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        best_value, best_epoch = float(state["best_value"]), int(state["best_epoch"])
        best_state = {k: v.to(device) for k, v in state["best_state"].items()}
        history = [dict(zip(("epoch", "train_loss", "value"), map(float, row))) for row in state["history"]]
        first_epoch = int(state["epoch"]) + 1
    last_save, samples = time.perf_counter(), 0

    for epoch in range(first_epoch, epochs):
        model.train()
        total = torch.zeros((), device=device)
        n_batches = 0
        if isinstance(train, StreamSplit):
            batches = ((map_inputs(x, lambda t: t.to(device, non_blocking=True)), y.to(device, non_blocking=True))
                       for x, y in _loader(train, bs, True, device))
        else:
            n = len(train)
            perm = torch.randperm(n, generator=gen).to(device)
            # A last batch of one row breaks batch norm and is noise anyway: drop it.
            stop = n - 1 if n % bs == 1 else n
            batches = (train.take(perm[i:i + bs]) for i in range(0, stop, bs))
        for xb, yb in batches:
            with _autocast(device):
                xb = _channels_last(xb)
                loss = step(model, xb, yb, ctx) if step else loss_fn(call_model(model, xb), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach().float()
            n_batches += 1
            samples += int(yb.shape[0])
            if after_batch is not None:
                after_batch()
        if scheduler is not None:
            scheduler.step()
        train_loss = float(total) / max(1, n_batches)  # the one sync of the epoch
        if not math.isfinite(train_loss):
            raise TrialFailed(f"loss became {train_loss} at epoch {epoch}")
        value = score(metric, *evaluate(model, moved, "val", device))
        history.append({"epoch": float(epoch), "train_loss": train_loss, "value": value})
        if sign * value > sign * best_value:
            best_value, best_epoch = value, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if report is not None:
            report(epoch, value, train_loss)
        if epoch - best_epoch >= patience:
            break
        if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every_s:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, gen, epoch, best_value,
                             best_epoch, best_state, history)
            last_save = time.perf_counter()

    if best_state is None:
        raise TrialFailed("no epoch was trained (epochs must be at least 1)")
    model.load_state_dict(best_state)
    cpu_state = {k: v.detach().cpu() for k, v in best_state.items()}
    return FitResult(best_value, best_epoch, len(history), cpu_state, history, samples,
                     time.perf_counter() - start, first_epoch or None)


def _save_checkpoint(path: Path, model, optimizer, scheduler, gen, epoch, best_value, best_epoch,
                     best_state, history) -> None:
    """Write atomically (temp file, then rename) so a kill mid-write leaves the old one."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "epoch": epoch,
        "best_value": best_value,
        "best_epoch": best_epoch,
        "best_state": best_state,
        "history": [[h["epoch"], h["train_loss"], h["value"]] for h in history],
    }
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(copy.copy(state), tmp)
    tmp.replace(path)


class CheckError(Exception):
    """A model that cannot train on its data, found by :func:`check_space`. ``stage`` says
    where: ``build``, ``batch`` (forward on a train batch), ``output`` (its shape),
    ``loss``, ``backward``, ``evaluate`` (the validation split) or ``metric``."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def _first_rows(split: Split | StreamSplit, size: int) -> tuple[Any, torch.Tensor]:
    if isinstance(split, Split):
        return split.take(torch.arange(min(size, len(split)), device=split.targets.device))
    loader = torch.utils.data.DataLoader(split.dataset, batch_size=size, shuffle=False, num_workers=0)
    return next(iter(loader))


def _check_output(out: Any, info: DataInfo, rows: int) -> None:
    if not isinstance(out, torch.Tensor):
        raise CheckError("output", f"the model returned {type(out).__name__}, not a tensor")
    if info.task == "classification" and tuple(out.shape) != (rows, info.num_classes):
        raise CheckError("output", f"the model returned shape {tuple(out.shape)} for a batch of {rows}; "
                                   f"classification needs ({rows}, {info.num_classes}) logits")
    if info.task == "regression" and tuple(out.shape) not in ((rows,), (rows, 1)):
        raise CheckError("output", f"the model returned shape {tuple(out.shape)} for a batch of {rows}; "
                                   f"regression needs ({rows},) or ({rows}, 1)")
    if not bool(torch.isfinite(out.detach()).all()):
        raise CheckError("output", "the untrained model's output is not finite")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def check_space(space: SearchSpace, data: DataBundle, config: dict[str, Any], metric: Metric | None = None,
                device: torch.device | None = None, *, seed: int = 0, batch_size: int = 8,
                eval_rows: int = 64) -> tuple[nn.Module, tuple[Any, Any]]:
    """One training step of a space's model on real data, and its metric: what a search checks
    before its first trial, and the conformance kit for every space.

    ``config`` is ``{"model": ..., "train": ...}`` as the space's ``define`` and ``train``
    gave it (``data`` already prepared for it). The model is built, run forward and backward
    on the first ``batch_size`` train rows (with the space's ``step`` if it has one), then
    evaluated on the first ``eval_rows`` validation rows (or the dataset's own ``evaluate``),
    and ``metric`` is computed on that. Returns the model and ``(y_true, y_pred)``; raises
    :class:`CheckError` naming the stage that failed. Example::

        model, (y_true, y_pred) = check_space(space, bundle, {"model": cfg, "train": train_cfg},
                                              automl.metrics.ACCURACY)
    """
    device = device or torch.device("cpu")
    info = data.info
    torch.manual_seed(seed)
    try:
        model = build_model(space, config["model"], info).to(device)
    except Exception as exc:
        raise CheckError("build", _reason(exc)) from exc
    model.train()
    train = _to_device(data.train, device)
    xb, yb = _first_rows(train, batch_size)
    loss_fn = default_loss(info, config["train"], train, device)
    try:
        if space.step is not None:
            ctx = TrainContext(config["train"], info, train, _to_device(data.val, device), device, loss_fn,
                               torch.Generator().manual_seed(seed))
            loss = space.step(model, xb, yb, ctx)
        else:
            if info.task not in ("classification", "regression"):
                raise CheckError("loss", f"task {info.task!r} has no default loss: the space needs a step")
            out = call_model(model, xb)
            _check_output(out, info, int(yb.shape[0]))
            loss = loss_fn(out, yb)
    except CheckError:
        raise
    except Exception as exc:
        raise CheckError("batch", _reason(exc)) from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise CheckError("loss", f"the loss is {type(loss).__name__} {getattr(loss, 'shape', '')}, "
                                 "not a scalar tensor")
    if not bool(torch.isfinite(loss.detach())):
        raise CheckError("loss", f"the loss of an untrained model is {float(loss)}")
    if not loss.requires_grad:
        raise CheckError("loss", "the loss does not depend on any trainable parameter")
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable or all(p.grad is None for _, p in trainable):
        raise CheckError("backward", "backward reached no trainable parameter")
    bad = [n for n, p in trainable if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    if bad:
        raise CheckError("backward", f"gradients are not finite in {', '.join(bad[:3])}")
    model.eval()
    try:
        if data.evaluate is not None:
            with torch.no_grad():
                output = data.evaluate(model, "val", device)
        else:
            val = data.val
            if isinstance(val, Split) and len(val) > eval_rows:
                val = Split(*val.take(torch.arange(eval_rows, device=val.targets.device)))
            output = split_outputs(model, val, info, device)
            if len(output[1]) != len(output[0]) or not np.isfinite(output[1]).all():
                raise CheckError("evaluate", f"evaluating the validation split gave {len(output[1])} predictions "
                                             f"for {len(output[0])} targets, or predictions that are not finite")
    except CheckError:
        raise
    except Exception as exc:
        raise CheckError("evaluate", _reason(exc)) from exc
    if metric is not None:
        try:
            value = float(metric.fn(*output))
        except Exception as exc:
            raise CheckError("metric", _reason(exc)) from exc
        if not math.isfinite(value):
            raise CheckError("metric", f"the metric gave {value} for an untrained model's predictions")
    return model, output
