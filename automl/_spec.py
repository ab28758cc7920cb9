"""The study spec: what a search is, resolved against the plugin registry.

A :class:`StudySpec` is plain JSON-able data and is stored in the study; :func:`resolve`
turns it into the registered objects, raising :class:`UserError` with the valid choices for
any unknown name, so that bad input is rejected before anything is written.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from automl import __version__
from automl._errors import UserError
from automl._plugins import LoadedPlugin, Registry
from automl._types import DataInfo, Dataset, Metric, Option, SearchSpace

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("median", "asha", "hyperband", "none")


@dataclass
class StudySpec:
    plugin: str
    dataset: str
    spaces: list[str]
    metric: str
    direction: str = "maximize"
    data_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    trials: int = 20
    timeout: float | None = None
    workers: int = 1
    max_failures: int | None = None
    max_epochs: int | None = None
    backend: str = "local"
    address: str | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    gpus: str = "auto"
    loggers: list[str] = field(default_factory=list)
    checkpoint_every_s: float = 10.0
    data_fingerprint: str = ""
    space_hash: str = ""
    automl_version: str = __version__
    plugin_version: str = ""
    created: float = field(default_factory=time.time)
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudySpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Resolved:
    plugin: LoadedPlugin
    dataset: Dataset
    spaces: list[SearchSpace]
    metric: Metric | None
    options: dict[str, Any]


def _choose(kind: str, name: str | None, table: dict[str, Any], plugin: str) -> Any:
    if name in table:
        return table[name]
    valid = ", ".join(sorted(table)) or "none"
    if name is None:
        raise UserError(f"plugin {plugin!r} names no default {kind}; give --{kind} (choices: {valid})")
    raise UserError(f"unknown {kind} {name!r} for plugin {plugin!r}; choices: {valid}")


def parse_options(dataset: Dataset, raw: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Validate ``--option key=value`` strings against the options the dataset declares."""
    declared = {o.name: o for o in dataset.options}
    given: dict[str, Any] = {}
    items = raw.items() if isinstance(raw, dict) else [_split_option(r) for r in raw]
    for key, value in items:
        if key not in declared:
            valid = ", ".join(sorted(declared)) or "none"
            raise UserError(f"unknown option {key!r} for dataset {dataset.name!r}; options: {valid}")
        given[key] = _convert(declared[key], value)
    return {name: given.get(name, opt.default) for name, opt in declared.items()}


def _split_option(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise UserError(f"bad --option {raw!r}: expected key=value")
    return key.strip(), value.strip()


def _convert(opt: Option, value: Any) -> Any:
    if not isinstance(value, str):
        converted = value
    elif opt.type is bool:
        low = value.lower()
        if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise UserError(f"option {opt.name!r} takes true or false, not {value!r}")
        converted = low in ("1", "true", "yes", "on")
    else:
        try:
            converted = opt.type(value)
        except (TypeError, ValueError):
            raise UserError(f"option {opt.name!r} takes a {opt.type.__name__}, not {value!r}") from None
    if opt.choices is not None and converted not in opt.choices and not (converted is None and opt.default is None):
        raise UserError(f"option {opt.name!r} must be one of {', '.join(map(str, opt.choices))}, "
                        f"not {value!r}")
    return converted


def resolve(registry: Registry, plugin_name: str, dataset: str | None = None,
            spaces: list[str] | None = None, metric: str | None = None,
            options: list[str] | dict[str, Any] | None = None) -> Resolved:
    plugin = registry.get(plugin_name)
    info = plugin.info
    ds = _choose("dataset", dataset or (info.default_dataset if info else None), plugin.datasets, plugin.name)
    names = spaces or ([info.default_space] if info and info.default_space else [])
    if not names:
        names = [n for n, s in plugin.spaces.items() if ds.task in s.tasks][:1]
    chosen = [_choose("space", n, plugin.spaces, plugin.name) for n in dict.fromkeys(names)]
    if not chosen:
        raise UserError(f"plugin {plugin.name!r} has no search space for task {ds.task!r}")
    met = _choose("metric", metric, plugin.metrics, plugin.name) if metric else None
    return Resolved(plugin, ds, chosen, met, parse_options(ds, options or []))


def check_task_fit(resolved: Resolved, info: DataInfo) -> Metric:
    """After loading (the task may be inferred from the data), check spaces and pick the metric."""
    for space in resolved.spaces:
        if info.task not in space.tasks:
            fits = [n for n, s in resolved.plugin.spaces.items() if info.task in s.tasks]
            raise UserError(f"space {space.name!r} does not fit task {info.task!r}; choices: "
                            f"{', '.join(fits) or 'none'}")
        if space.check is not None:
            space.check(info)
    metrics = resolved.plugin.metrics

    def fits(m: Metric) -> bool:
        return info.task in m.tasks and (m.applies is None or bool(m.applies(info)))

    valid = [n for n, m in metrics.items() if fits(m)]
    if resolved.metric is not None:
        if not fits(resolved.metric):
            raise UserError(f"metric {resolved.metric.name!r} does not fit this {info.task} dataset; "
                            f"choices: {', '.join(valid) or 'none'}")
        return resolved.metric
    default = resolved.plugin.info.default_metric if resolved.plugin.info else None
    if default in metrics and fits(metrics[default]):
        return metrics[default]
    if not valid:
        raise UserError(f"plugin {resolved.plugin.name!r} has no metric for task {info.task!r}")
    return metrics[valid[0]]


def space_hash(spaces: list[SearchSpace]) -> str:
    """A hash of the spaces' code: resume warns (and refuses without --force) when it changed."""
    h = hashlib.sha256()
    for space in spaces:
        h.update(space.name.encode())
        for fn in (space.define, space.build, space.train, space.prepare, space.step):
            if fn is None:
                continue
            try:
                h.update(inspect.getsource(fn).encode())
            except (OSError, TypeError):
                h.update(getattr(fn, "__qualname__", repr(fn)).encode())
    return h.hexdigest()[:16]


def make_sampler(name: str, seed: int | None, parallel: bool = False) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel, multivariate=True,
                                          group=True, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise UserError(f"unknown sampler {name!r}; choices: {', '.join(SAMPLERS)}")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"unknown pruner {name!r}; choices: {', '.join(PRUNERS)}")
