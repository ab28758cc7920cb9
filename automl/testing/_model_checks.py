"""Space and metric checks: configs, models on a real batch, metric direction and order."""

from __future__ import annotations

import io
import json
import math
import warnings
from typing import Any

import numpy as np
import optuna
import torch

from automl.errors import UserError
from automl.study.sampling import SpaceTrial, sample_config
from automl.testing._array_checks import check_array_model
from automl.testing._data_checks import CheckFailed, Skip
from automl.training import CheckError, build_model, check_space, fits_itself, suggest_training
from automl.types import (
    DIRECTIONS,
    TASKS,
    DataBundle,
    DataInfo,
    Metric,
    SearchSpace,
    Split,
)

CPU = torch.device("cpu")
EVAL_ROWS = 64  # validation rows a model is evaluated on (without a custom evaluate)


def check_define(space: SearchSpace, bundle: DataBundle, seed: int, n_configs: int
                 ) -> tuple[str, list[dict[str, Any]]]:
    """``define`` and ``train`` give JSON-able configs for trials of an in-memory study."""
    info = bundle.info
    if space.check is not None:
        try:
            space.check(info)
        except UserError as exc:
            raise Skip(f"the space cannot run here: {exc}") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(max(1, n_configs)):
        trial = study.ask()
        train = (space.train or suggest_training)(trial, info)
        model = space.define(SpaceTrial(trial, space.name), info)
        for what, cfg in (("define", model), ("train", train)):
            if not isinstance(cfg, dict):
                raise CheckFailed(f"{what}() returned {type(cfg).__name__}, not a dict")
            try:
                text = json.dumps(cfg)
            except (TypeError, ValueError) as exc:
                raise CheckFailed(f"{what}() config is not JSON-able: {exc}") from None
            if not isinstance(json.loads(text), dict):  # pragma: no cover - dumps of a dict is an object
                raise CheckFailed(f"{what}() config does not survive JSON")
        # The engine stores the JSON form and builds from it: so does the kit.
        configs.append(json.loads(json.dumps({"model": model, "train": train})))
        study.tell(trial, 0.0)
    return f"{len(configs)} configs, e.g. {json.dumps(configs[0]['model'])[:120]}", configs


def check_shared_study(spaces: list[SearchSpace], bundle: DataBundle, seed: int, n_configs: int) -> str:
    """All the spaces that fit a dataset, sampled into one study as a search of all of them
    samples them (:mod:`automl.study.sampling`): model parameters are per space, training
    parameters are shared, and Optuna refuses one name with two different sets of choices."""
    table = {s.name: s for s in spaces}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for name in table:
        for _ in range(max(1, n_configs)):
            if len(table) > 1:
                study.enqueue_trial({"space": name})
            trial = study.ask()
            try:
                sample_config(table, trial, bundle.info)
            except ValueError as exc:
                others = ", ".join(n for n in table if n != name)
                raise CheckFailed(f"space {name!r} cannot share a study with {others}: {exc} (training parameters "
                                  "are shared by all spaces: give them the same choices, or suggest the parameter "
                                  "in define, where it is the space's own)") from None
            study.tell(trial, 0.0)
    return f"{len(table)} space(s) share one study, {len(study.trials)} configs"


def check_model(space: SearchSpace, bundle: DataBundle, configs: list[dict[str, Any]], seed: int,
                batch_size: int) -> tuple[str, tuple[Any, Any] | None, tuple[Any, DataBundle, dict[str, Any]]]:
    """Build each config's model, run forward and backward on a real train batch, evaluate the
    validation split (:func:`automl.training.check_space`, as a search does before its first
    trial), and save / load the weights as the engine does. A model that is not a torch
    module (an :class:`automl.ArrayModel`) is fitted on the first train rows instead, and its
    protocol is checked (:func:`automl.testing._array_checks.check_array_model`).

    Returns the reason, the first output of a dataset's own ``evaluate`` (else ``None``) and
    the last ``(model, prepared data, config)``, for the ``predict_new`` check."""
    first_output = None
    params, kinds, last = 0, [], None
    for config in configs:
        full = {"space": space.name, **config}  # what the engine gives prepare: space, model, train
        data = space.prepare(bundle, full) if space.prepare is not None else bundle
        if not isinstance(data, DataBundle):
            raise CheckFailed(f"prepare() returned {type(data).__name__}, not DataBundle")
        try:
            model, output = check_space(space, data, config, None, CPU, seed=seed, batch_size=batch_size,
                                        eval_rows=EVAL_ROWS)
        except CheckError as exc:
            raise CheckFailed(str(exc)) from None
        first_output = first_output if first_output is not None else (output if data.evaluate is not None else None)
        if isinstance(model, torch.nn.Module):
            params = sum(p.numel() for p in model.parameters())
            _check_weights(model, space, config, data.info)
            kinds.append("closed form" if fits_itself(model) else "module")
        else:
            kinds.append(check_array_model(model, space, config, data, EVAL_ROWS))
        last = (model, data, config)
    if all(k == "module" for k in kinds):
        return f"{len(configs)} models, forward + backward ok ({params:,} parameters in the last)", first_output, last
    if all(k == "closed form" for k in kinds):
        return (f"{len(configs)} models fitted by their own fit() (closed form); the state_dict saves and loads",
                first_output, last)
    return f"{len(configs)} models; {kinds[-1]}", first_output, last


def _check_weights(model: torch.nn.Module, space: SearchSpace, config: dict[str, Any], info: DataInfo) -> None:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, map_location="cpu", weights_only=True)
    fresh = build_model(space, config["model"], info)
    try:
        fresh.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckFailed(f"a new model of the same config cannot load the saved weights: "
                          f"{str(exc).splitlines()[0]}") from None


def check_direction(metric: Metric) -> str:
    """A direction and tasks are declared, and valid."""
    if metric.direction not in DIRECTIONS:
        raise CheckFailed(f"direction {metric.direction!r} is not maximize or minimize")
    if not metric.tasks or any(t not in TASKS for t in metric.tasks):
        raise CheckFailed(f"tasks {metric.tasks!r} are not among {', '.join(TASKS)}")
    return f"{metric.direction}, tasks {', '.join(metric.tasks)}"


def _fits(metric: Metric, info: DataInfo) -> bool:
    return info.task in metric.tasks and (metric.applies is None or bool(metric.applies(info)))


def _targets(bundle: DataBundle, limit: int = 5000) -> np.ndarray:
    parts = []
    for name in ("val", "test", "train"):
        split = bundle.split(name)
        if isinstance(split, Split):
            parts.append(split.targets[:limit].detach().cpu().numpy())
    return np.concatenate(parts)[:limit] if parts else np.zeros(0)


def toy_predictions(task: str, y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Perfect and poor predictions for targets ``y``: for classification, probabilities with
    the mass on the true class, or on a wrong class with the true class least likely; for
    regression, the targets, or their mirror
    image about the mean shifted by one standard deviation."""
    if task == "classification":
        c = int(num_classes or (int(y.max()) + 1))
        y = y.astype(np.int64)
        rows = np.arange(len(y))
        perfect = np.full((len(y), c), 0.03 / c)
        perfect[rows, y] += 0.97
        # 0.97 on a wrong class; the rest spread so that the true class gets the least.
        share = 0.03 / (c - 2 + 0.5)
        poor = np.full((len(y), c), share)
        poor[rows, y] = 0.5 * share
        poor[rows, (y + 1) % c] = 0.97
        return perfect, poor
    y = y.astype(np.float64)
    return y.copy(), 2 * y.mean() - y + y.std()


def check_metric_order(run: Any, metric: Metric, bundles: dict[str, DataBundle],
                       outputs: dict[str, tuple[Any, Any]]) -> None:
    """Perfect predictions must score better than poor ones, in the declared direction."""
    target = f"metric {metric.name}"
    plain = [(n, b) for n, b in bundles.items() if b.evaluate is None and _fits(metric, b.info)
             and b.info.task in ("classification", "regression")]
    for name, bundle in plain:
        y = _targets(bundle)
        if len(y) >= 2 and len(np.unique(y)) >= 2:
            run.do("order", target, lambda: _order(metric, bundle.info.task, y, bundle.info.num_classes,
                                                   f"targets of {name}"))
            return
    custom = [(n, b) for n, b in bundles.items() if b.evaluate is not None and _fits(metric, b.info)]
    for name, _bundle in custom:
        if name in outputs:
            run.do("metric-runs", target, lambda: _runs(metric, outputs[name], name))
            run.do("order", target, lambda: _skip(f"dataset {name} has its own evaluate: no generic toy "
                                                  "example of perfect and poor outputs"))
            return
    for task, info, y in (("classification", DataInfo("classification", num_classes=10), np.arange(200) % 10),
                          ("regression", DataInfo("regression"), np.linspace(-2.0, 3.0, 200))):
        if task in metric.tasks and (metric.applies is None or metric.applies(info)):
            run.do("order", target, lambda: _order(metric, task, y, info.num_classes, f"a toy {task} example"))
            return
    run.do("order", target, lambda: _skip(f"no loaded dataset of task {', '.join(metric.tasks)} to build a toy "
                                          "example from (give sample data)"))


def _skip(reason: str) -> None:
    raise Skip(reason)


def _order(metric: Metric, task: str, y: np.ndarray, num_classes: int | None, source: str) -> str:
    perfect, poor = toy_predictions(task, y, num_classes)
    good, bad = float(metric.fn(y, perfect)), float(metric.fn(y, poor))
    if not (math.isfinite(good) and math.isfinite(bad)):
        raise CheckFailed(f"not finite on {source}: {good} for perfect predictions, {bad} for poor ones")
    better = good > bad if metric.direction == "maximize" else good < bad
    if not better:
        raise CheckFailed(f"{good:.4g} for perfect predictions and {bad:.4g} for poor ones on {source}: "
                          f"the wrong order for direction {metric.direction!r}")
    return f"perfect {good:.4g}, poor {bad:.4g} on {source}"


def _runs(metric: Metric, output: tuple[Any, Any], name: str) -> str:
    value = float(metric.fn(*output))
    if not math.isfinite(value):
        raise CheckFailed(f"{value} on an untrained model's evaluate output of {name}")
    return f"{value:.4g} on an untrained model's evaluate output of {name}"
