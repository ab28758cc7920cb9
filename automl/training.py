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
import contextvars
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

from automl.errors import TrialFailed, UserError
from automl.types import (
    ArrayModel,
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
#: Learning-rate schedules: per epoch (``cosine``) or per batch (``onecycle``, ``warmup_cosine``).
SCHEDULERS = ("constant", "cosine", "onecycle", "warmup_cosine")
EVAL_BATCH = 1024


#: Set while a search samples a config whose epochs it fixes itself (see fixed_epochs).
_FIXED_EPOCHS: contextvars.ContextVar[int | None] = contextvars.ContextVar("automl_fixed_epochs", default=None)


@contextlib.contextmanager
def fixed_epochs(epochs: int | None):
    """While active, :func:`suggest_training` does not search ``epochs`` but returns this
    number: a search fixes it when ``--max-epochs`` caps every trial or a time budget sets it
    (pruning and early stopping then decide how many epochs a trial really runs), so that no
    dead ``epochs`` dimension is searched. ``None`` leaves it searched."""
    token = _FIXED_EPOCHS.set(epochs)
    try:
        yield
    finally:
        _FIXED_EPOCHS.reset(token)


def suggest_training(
    trial: Any,
    info: DataInfo | None = None,
    *,
    epochs: tuple[int, int] = (8, 40),
    batch_sizes: tuple[int, ...] = (32, 64, 128),
    lr: tuple[float, float] = (3e-4, 3e-2),
    weight_decay: tuple[float, float] = (1e-6, 1e-2),
    optimizers: tuple[str, ...] = OPTIMIZERS,
    schedulers: tuple[str, ...] = ("constant", "cosine"),
    momentum: tuple[float, float] | None = None,
    ema: tuple[float, ...] = (),
    patience: int = 6,
) -> dict[str, Any]:
    """Suggest the training hyperparameters every model needs, and return them as a config.

    Searched, with these keywords (and defaults):

    - ``optimizer`` among ``optimizers`` (``("adam", "adamw", "sgd")``);
    - ``lr`` in ``lr`` (``(3e-4, 3e-2)``, log scale);
    - ``weight_decay`` in ``weight_decay`` (``(1e-6, 1e-2)``, log scale; never applied to biases
      and normalisation parameters);
    - ``batch_size`` among ``batch_sizes`` (``(32, 64, 128)``);
    - ``epochs`` in ``epochs`` (``(8, 40)``), unless the search fixes it (``--max-epochs``, a
      time budget: :func:`fixed_epochs`), when it is that number and not searched;
    - ``scheduler`` among ``schedulers`` (``("constant", "cosine")``; also ``"onecycle"`` and
      ``"warmup_cosine"``, stepped per batch: :data:`SCHEDULERS`);
    - with ``momentum=(low, high)``, when the optimizer is SGD: ``momentum`` in that range and
      ``nesterov`` (true or false); without it SGD uses momentum 0.9 with Nesterov;
    - with ``ema=(0.0, 0.99, ...)``: ``ema``, the decay of an exponential moving average of the
      weights, which is then what is validated and kept (0 turns it off; the decay is warmed
      up over the first updates: :func:`ema_update`).

    Early stopping ends a trial after ``patience`` epochs without improvement of the
    validation metric. Spaces add their own keys to the returned config
    (``label_smoothing``, ``class_weighted``, ``grad_clip``...). Example::

        cfg = suggest_training(trial, info, epochs=(10, 30), optimizers=("adamw", "sgd"),
                               schedulers=("cosine", "onecycle"), momentum=(0.85, 0.95))
    """
    fixed = _FIXED_EPOCHS.get()
    cfg = {
        "optimizer": trial.suggest_categorical("optimizer", list(optimizers)),
        "lr": trial.suggest_float("lr", lr[0], lr[1], log=True),
        "weight_decay": trial.suggest_float("weight_decay", weight_decay[0], weight_decay[1], log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(batch_sizes)),
        "epochs": fixed if fixed is not None else trial.suggest_int("epochs", epochs[0], epochs[1]),
        "scheduler": trial.suggest_categorical("scheduler", list(schedulers)),
        "patience": patience,
    }
    if momentum is not None and cfg["optimizer"] == "sgd":
        cfg["momentum"] = trial.suggest_float("momentum", momentum[0], momentum[1])
        cfg["nesterov"] = trial.suggest_categorical("nesterov", [True, False])
    if ema:
        cfg["ema"] = trial.suggest_categorical("ema", list(ema))
    return cfg


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


def build_model(space: SearchSpace, model_config: dict[str, Any], info: DataInfo) -> nn.Module | ArrayModel:
    """Build a space's model for a config: a torch module (regression modules get a
    :class:`TargetScaler`, unless they fit themselves) or an :class:`automl.ArrayModel`."""
    model = space.build(model_config, info)
    if not isinstance(model, nn.Module):
        if isinstance(model, ArrayModel):
            return model
        raise TypeError(f"space {space.name!r} build() returned {type(model).__name__}, not nn.Module or an "
                        "ArrayModel (fit, predict, save, load)")
    if info.task == "regression" and info.target_std and not fits_itself(model):
        model = TargetScaler(model, info.target_mean or 0.0, info.target_std)
    return model


def fits_itself(model: Any) -> bool:
    """Whether a model is trained by its own ``fit`` (an :class:`automl.ArrayModel`, or a
    closed-form torch module) rather than by the gradient loop."""
    return callable(getattr(model, "fit", None))


def save_model(model: nn.Module | ArrayModel, path: Path) -> None:
    """Store a trained model at ``path`` atomically: a torch module's ``state_dict`` as the
    file ``path``; an :class:`automl.ArrayModel` with its own ``save`` into the folder
    ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(model, nn.Module):
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        tmp.replace(path)
        return
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)


def load_skops(path: Path, trusted: frozenset[str] | set[str], what: str) -> Any:
    """Load a scikit-learn object saved with ``skops.io.dump`` (scikit-learn's pickle-free
    format), trusting only the type names in ``trusted`` beyond those skops trusts by default:
    a file that asks for any other type (a function, a class from elsewhere: code a loaded file
    would run) is refused with a :class:`automl.UserError` naming them. ``what`` names the
    model in that message. For an :class:`ArrayModel`'s ``load``::

        self.pipeline = load_skops(folder / "model.skops", TRUSTED, "a tfidf model")
    """
    import skops.io

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no saved model at {path}")
    untrusted = skops.io.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise UserError(f"{path} holds types {what} does not: refusing to load types {', '.join(refused)}")
    return skops.io.load(path, trusted=list(untrusted))


def load_model(model: nn.Module | ArrayModel, path: Path) -> nn.Module | ArrayModel:
    """Load what :func:`save_model` stored into a model freshly built from the same config
    (a state_dict is read with ``weights_only=True``)."""
    if isinstance(model, nn.Module):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        model.load(path)
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
    """The config's optimizer. Weight decay applies to weight matrices and kernels only: biases
    and normalisation parameters (every parameter of one dimension) are not decayed, as in
    the usual recipes for ResNets and transformers (decaying BatchNorm scales hurts)."""
    name = cfg.get("optimizer", "adamw")
    lr, wd = float(cfg.get("lr", 1e-3)), float(cfg.get("weight_decay", 0.0))
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        nesterov = bool(cfg.get("nesterov", True))
        return torch.optim.SGD(groups, lr=lr, momentum=float(cfg.get("momentum", 0.9)), nesterov=nesterov)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise TrialFailed(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], epochs: int,
                   steps_per_epoch: int) -> tuple[Any, bool]:
    """The config's learning-rate schedule (torch's own schedulers) and whether it steps per
    batch: ``cosine`` anneals per epoch; ``onecycle`` (OneCycleLR) and ``warmup_cosine`` (a
    linear warm-up over the first 5 % of the steps, at least one epoch's worth up to 500 steps,
    then cosine) step per batch; ``constant``: none."""
    name = cfg.get("scheduler", "constant")
    sched = torch.optim.lr_scheduler
    total = max(1, epochs * max(1, steps_per_epoch))
    if name in ("constant", None):
        return None, False
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, epochs)), False
    if name == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=float(cfg.get("lr", 1e-3)), total_steps=total), True
    if name == "warmup_cosine":
        warm = min(total - 1, max(1, min(500, steps_per_epoch), int(0.05 * total)))
        if warm < 1:
            return sched.CosineAnnealingLR(optimizer, T_max=total), True
        return sched.SequentialLR(optimizer, [sched.LinearLR(optimizer, start_factor=0.1, total_iters=warm),
                                              sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warm))],
                                  milestones=[warm]), True
    raise TrialFailed(f"unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)}")


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
    #: Training stopped at ``deadline`` (after a validated, possibly partial, epoch).
    cut: bool = False


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()


def _loader(split: StreamSplit, batch_size: int, shuffle: bool, device: torch.device):
    return torch.utils.data.DataLoader(
        split.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=split.num_workers,
        persistent_workers=split.num_workers > 0, pin_memory=device.type == "cuda")


def split_outputs(model: nn.Module | ArrayModel, split: Split | StreamSplit, info: DataInfo,
                  device: torch.device, batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """A model's outputs on a whole labelled split: ``(y_true, y_pred)`` as numpy arrays, with
    class probabilities (softmax) for classification. This is what a :class:`automl.Metric`
    receives.

    Example::

        y_true, y_pred = split_outputs(model, bundle.val, bundle.info, torch.device("cpu"))
        accuracy = automl.metrics.ACCURACY.fn(y_true, y_pred)
    """
    if not isinstance(model, nn.Module):
        if not isinstance(split, Split):
            raise TypeError("an ArrayModel predicts on a split held in memory, not a streamed one")
        return _as_numpy(split.targets), np.asarray(model.predict(split.inputs))
    model.eval()
    outs, ys = [], []
    if isinstance(split, StreamSplit):
        batches = ((map_inputs(x, lambda t: t.to(device, non_blocking=True)), y)
                   for x, y in _loader(split, batch_size, False, device))
    else:
        # Contiguous slices are views: no per-epoch copy (gather) of the split.
        batches = ((map_inputs(split.inputs, lambda t, i=i: t[i:i + batch_size]), split.targets[i:i + batch_size])
                   for i in range(0, len(split), batch_size))
    for xb, yb in batches:
        outs.append(batch_outputs(model, xb, info, device))
        ys.append(yb)
    return _as_numpy(torch.cat(ys)), _as_numpy(torch.cat(outs))


def batch_outputs(model: nn.Module, inputs: Any, info: DataInfo, device: torch.device) -> torch.Tensor:
    """One batch's outputs of a model already in ``eval()`` mode, as :func:`split_outputs`
    computes them: the forward pass under ``inference_mode`` (and autocast on a GPU), as
    float, with class probabilities (softmax) for classification. ``inputs`` are on
    ``device``. This is also what a timed prediction runs (:mod:`automl.search.deploy`): a
    deployed model is put in eval mode once, not before every request."""
    with torch.inference_mode(), _autocast(device):
        out = call_model(model, _channels_last(inputs)).float()
        return torch.softmax(out, dim=-1) if info.task == "classification" else out


def evaluate(model: nn.Module | ArrayModel, data: DataBundle, split_name: str,
             device: torch.device) -> tuple[Any, Any]:
    """``(y_true, y_pred)`` of one split (``train``, ``val`` or ``test``): the dataset's own
    ``evaluate`` when it has one (ranking over a catalogue), else :func:`split_outputs`."""
    if data.evaluate is not None:
        return data.evaluate(model, split_name, device)
    return split_outputs(model, data.split(split_name), data.info, device)


def validation_loss(task: str, y_true: Any, y_pred: Any) -> float | None:
    """The task's loss on a split's outputs: cross-entropy of the class probabilities for
    classification, mean squared error for regression; ``None`` for other outputs."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if task == "classification" and p.ndim == 2 and t.ndim == 1 and len(t) == len(p) and len(t):
        picked = np.clip(p[np.arange(len(t)), t.astype(np.int64)], 1e-12, 1.0)
        return float(-np.mean(np.log(picked)))
    if task == "regression" and p.shape == t.shape and len(t):
        return float(np.mean((p.astype(np.float64) - t.astype(np.float64)) ** 2))
    return None


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
    deadline: float | None = None,
    refit_epochs: int | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train`` and select its best epoch on ``data.val``.

    ``report(epoch, value, train_loss)`` is called after each epoch and may raise
    ``optuna.TrialPruned``. When ``checkpoint`` is given, the full training state (model,
    optimizer, scheduler, RNG, history) is saved there at most every ``checkpoint_every_s``
    seconds, and a run that finds one continues from it. ``after_batch()`` is called after
    every optimizer step; it may raise to stop training at once (a worker asked to stop).
    ``deadline`` (a ``time.time()`` value: a time budget): once it passes, the current epoch
    ends after its current batch, is validated and reported, and training stops with the best
    epoch so far (``FitResult.cut``).

    ``refit_epochs`` (a refit, :mod:`automl.search.refit`): train exactly that many epochs of
    the same schedule (the scheduler still spans ``cfg["epochs"]``, so the learning rate
    follows the trial's trajectory) and keep the last one; nothing is validated, so
    ``data.train`` may hold the validation rows too. ``FitResult.best_value`` is then NaN.
    """
    if fits_itself(model):
        return _fit_itself(model, data, metric, device, report)
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
    steps = len(train) // bs + (1 if len(train) % bs > 1 else 0)  # the batches an epoch runs (see below)
    scheduler, per_batch = make_scheduler(optimizer, cfg, epochs, steps)
    ema = _ema(model, cfg)
    judged = ema.module if ema is not None else model  # what is validated and kept
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
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
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
    last_save, samples, cut = time.perf_counter(), 0, False

    refit = refit_epochs is not None
    for epoch in range(first_epoch, min(epochs, refit_epochs) if refit else epochs):
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
            if ema is not None:
                ema.update_parameters(model)
            if per_batch and scheduler is not None and scheduler.last_epoch < scheduler_total(scheduler):
                scheduler.step()
            total += loss.detach().float()
            n_batches += 1
            samples += int(yb.shape[0])
            if after_batch is not None:
                after_batch()
            if deadline is not None and time.time() >= deadline:
                cut = True  # the budget ends this epoch here: validate what was trained
                break
        if scheduler is not None and not per_batch:
            scheduler.step()
        train_loss = float(total) / max(1, n_batches)  # the one sync of the epoch
        if not math.isfinite(train_loss):
            raise TrialFailed(f"loss became {train_loss} at epoch {epoch}")
        if refit:  # nothing held out to validate on: the last epoch is the one kept
            history.append({"epoch": float(epoch), "train_loss": train_loss, "value": math.nan})
            if cut:
                break
            continue
        value = score(metric, *evaluate(judged, moved, "val", device))
        history.append({"epoch": float(epoch), "train_loss": train_loss, "value": value})
        if sign * value > sign * best_value:
            best_value, best_epoch = value, epoch
            best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
        if report is not None:
            report(epoch, value, train_loss)
        if cut or epoch - best_epoch >= patience:
            break
        if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every_s:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, gen, epoch, best_value,
                             best_epoch, best_state, history, ema)
            last_save = time.perf_counter()

    if refit and history:
        best_value, best_epoch = math.nan, int(history[-1]["epoch"])
        best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
    if best_state is None:
        raise TrialFailed("no epoch was trained (epochs must be at least 1)")
    model.load_state_dict(best_state)
    cpu_state = {k: v.detach().cpu() for k, v in best_state.items()}
    return FitResult(best_value, best_epoch, len(history), cpu_state, history, samples,
                     time.perf_counter() - start, first_epoch or None, cut)


def _fit_itself(model: nn.Module | ArrayModel, data: DataBundle, metric: Metric, device: torch.device,
                report: Callable[[int, float, float], None] | None) -> FitResult:
    """Train a model that fits itself (see :func:`fits_itself`): one call of its ``fit`` on the
    train split, then the validation score, reported as epoch 0."""
    start = time.perf_counter()
    if isinstance(model, nn.Module):
        model.to(device)
    model.fit(data.train, data.val, data.info)
    value = score(metric, *evaluate(model, data, "val", device))
    if report is not None:
        report(0, value, 0.0)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()} if isinstance(model, nn.Module) else {}
    return FitResult(value, 0, 1, state, [{"epoch": 0.0, "train_loss": 0.0, "value": value}], len(data.train),
                     time.perf_counter() - start)


def _ema(model: nn.Module, cfg: dict[str, Any]) -> Any:
    """An exponential moving average of the model's weights and buffers (torch's
    ``AveragedModel``, updated by :func:`ema_update`) when the config's ``ema`` decay is set,
    else ``None``."""
    decay = float(cfg.get("ema") or 0.0)
    if not 0.0 < decay < 1.0:
        return None
    from torch.optim.swa_utils import AveragedModel

    return AveragedModel(model, multi_avg_fn=ema_update(decay), use_buffers=True)


def ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """The EMA step for ``AveragedModel(multi_avg_fn=...)``, with the decay warmed up: after
    ``n`` updates the average moves by ``1 - min(decay, (1 + n) / (10 + n))`` towards the
    weights (as in TensorFlow's and timm's EMA). Without the warm-up a 0.99 or 0.999 average
    is still mostly the random initialisation after the first epochs of a short trial: its
    early validation scores are poor and pruning ends the trial. The weight is computed on
    the device from the update count, so a GPU step never waits for a host read."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = n_averaged.to(torch.float32)
        keep = torch.clamp((1.0 + n) / (10.0 + n), max=decay)
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, (1.0 - keep).to(averaged[0].dtype))
        else:  # integer buffers (batch norm's num_batches_tracked): follow the model
            for a, c in zip(averaged, current):
                a.copy_(c)

    return update


def scheduler_total(scheduler: Any) -> float:
    """The steps a per-batch schedule was made for (OneCycleLR refuses a step past them)."""
    return getattr(scheduler, "total_steps", math.inf)


def _save_checkpoint(path: Path, model, optimizer, scheduler, gen, epoch, best_value, best_epoch,
                     best_state, history, ema=None) -> None:
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
    if ema is not None:
        state["ema"] = ema.state_dict()
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
        model = build_model(space, config["model"], info)
        if isinstance(model, nn.Module):
            model.to(device)
    except Exception as exc:
        raise CheckError("build", _reason(exc)) from exc
    if fits_itself(model):
        try:  # a model that fits itself: fitted on the first rows, as a batch would be
            model.fit(_head(data.train, max(batch_size, 64)), _head(data.val, eval_rows), info)
        except Exception as exc:
            raise CheckError("batch", _reason(exc)) from exc
        return model, _check_outputs(model, data, metric, device, eval_rows)
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
    return model, _check_outputs(model, data, metric, device, eval_rows)


def _head(split: Split | StreamSplit, rows: int) -> Split | StreamSplit:
    """The first ``rows`` rows of an in-memory split (a streamed one as it is)."""
    if not isinstance(split, Split) or len(split) <= rows:
        return split
    return Split(*split.take(torch.arange(rows, device=split.targets.device)))


def _check_outputs(model: nn.Module | ArrayModel, data: DataBundle, metric: Metric | None, device: torch.device,
                   eval_rows: int) -> tuple[Any, Any]:
    """Evaluate the first validation rows (or the dataset's own evaluate) and score the metric."""
    info = data.info
    if isinstance(model, nn.Module):
        model.eval()
    try:
        if data.evaluate is not None:
            with torch.no_grad():
                output = data.evaluate(model, "val", device)
        else:
            output = split_outputs(model, _head(data.val, eval_rows), info, device)
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
    return output
