"""tensorboard: learning curves and the hparams table for TensorBoard (``--log tensorboard``).

Needs the ``tensorboard`` package (``pip install 'automl[tensorboard]'`` or ``pip install
tensorboard``); without it the plugin is listed with that instruction as its reason and
``--log tensorboard`` is refused with it. It writes under ``STUDY/logs/tensorboard/``:

- ``trial_<N>/``: per epoch, the scalars ``train/loss`` and ``val/<metric>``; at the start,
  the trial's config as text; at the end, the trial's hyperparameters, its state and its
  value for the HParams dashboard (completed and pruned trials);
- ``study/``: when the search ends, the best value and parameters as text.

View with ``tensorboard --logdir STUDY/logs/tensorboard``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from automl import EpochEvent, PluginInfo, StudyEvent, TrialEvent, UserError, hookimpl

INSTALL = "pip install tensorboard (or pip install 'automl[tensorboard]')"
_writers: dict[tuple[str, int], Any] = {}
_last: dict[tuple[str, int], tuple[str, float]] = {}


def available() -> bool:
    """Whether the ``tensorboard`` package (needed by ``torch.utils.tensorboard``) is importable."""
    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        return False


def log_dir(study_dir: str) -> Path:
    """The folder this logger writes to: ``STUDY/logs/tensorboard``."""
    return Path(study_dir) / "logs" / "tensorboard"


def _writer(study_dir: str, number: int):
    key = (study_dir, number)
    if key not in _writers:
        from torch.utils.tensorboard import SummaryWriter

        _writers[key] = SummaryWriter(log_dir=str(log_dir(study_dir) / f"trial_{number}"))
    return _writers[key]


def _hparam(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


@hookimpl
def plugin_info() -> PluginInfo:
    if not available():
        raise UserError(f"the tensorboard logger needs the tensorboard package; install it with: {INSTALL}")
    return PluginInfo(name="tensorboard", description="TensorBoard curves and hparams under STUDY/logs/tensorboard",
                      opt_in=True)


@hookimpl
def on_trial_start(event: TrialEvent) -> None:
    _writer(event.study_dir, event.number).add_text("config", json.dumps(event.config, indent=2, sort_keys=True))


@hookimpl
def on_epoch_end(event: EpochEvent) -> None:
    writer = _writer(event.study_dir, event.number)
    writer.add_scalar("train/loss", event.train_loss, event.epoch)
    writer.add_scalar(f"val/{event.metric}", event.value, event.epoch)
    _last[(event.study_dir, event.number)] = (event.metric, event.value)


@hookimpl
def on_trial_end(event: TrialEvent) -> None:
    key = (event.study_dir, event.number)
    writer = _writer(event.study_dir, event.number)
    metric, last = _last.pop(key, ("value", None))
    value = event.value if event.value is not None else last
    try:
        if value is not None and event.state in ("COMPLETE", "PRUNED"):
            hparams = {k: _hparam(v) for k, v in event.params.items()}
            hparams["state"] = event.state
            # run_name "." keeps the hparams in the trial's own run, next to its curves.
            writer.add_hparams(hparams, {f"hparam/{metric}": float(value)}, run_name=".")
    finally:
        writer.close()
        _writers.pop(key, None)


@hookimpl
def on_study_end(event: StudyEvent) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir(event.study_dir) / "study")) as writer:
        writer.add_text("result", json.dumps({"reason": event.reason, "n_complete": event.n_complete,
                                              "best_value": event.best_value, "best_params": event.best_params},
                                             indent=2, sort_keys=True))
