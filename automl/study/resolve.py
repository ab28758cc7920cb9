"""A spec's names resolved against the plugin registry.

:func:`resolve` turns plugin, dataset, space and metric names into the registered objects,
raising :class:`automl.UserError` with the valid choices for any unknown name, so that bad
input is rejected before anything is written; :func:`check_task_fit` checks them against the
loaded data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automl.errors import UserError
from automl.plugins import LoadedPlugin, Registry
from automl.types import DataInfo, Dataset, Metric, Option, SearchSpace


@dataclass
class Resolved:
    """A spec's names as the registered objects (``metric`` is None until the data is
    loaded, when the default can depend on the task)."""

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


def option_pairs(raw: list[str]) -> dict[str, str]:
    """``--option key=value`` strings as a dict (values still text; :func:`parse_options`
    converts them once the dataset is known)."""
    return dict(_split_option(r) for r in raw)


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


def default_spaces(plugin: Any, task: str, deployment: bool = False) -> list[str]:
    """The spaces a search without ``--space`` runs: the plugin's ``default_spaces`` that fit
    the task, else its ``default_space``; with ``deployment`` (a deployment figure among the
    objectives or constraints), its ``deployment_spaces`` that fit, where it names any (see
    :class:`automl.PluginInfo`)."""
    info = plugin.info
    if info is None:
        return []

    def fitting(names: tuple[str, ...]) -> list[str]:
        return [n for n in names if n in plugin.spaces and task in plugin.spaces[n].tasks]

    return ((deployment and fitting(info.deployment_spaces)) or fitting(info.default_spaces)
            or ([info.default_space] if info.default_space else []))


def resolve(registry: Registry, plugin_name: str, dataset: str | None = None,
            spaces: list[str] | None = None, metric: str | None = None,
            options: list[str] | dict[str, Any] | None = None, deployment: bool = False) -> Resolved:
    """The registered objects a spec names; ``None`` means the plugin's default
    (``deployment``: see :func:`default_spaces`)."""
    plugin = registry.get(plugin_name)
    info = plugin.info
    ds = _choose("dataset", dataset or (info.default_dataset if info else None), plugin.datasets, plugin.name)
    names = spaces or default_spaces(plugin, ds.task, deployment)
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


def check_goals(resolved: Resolved, info: DataInfo, objectives: list[str], constraints: list[str]) -> list[str]:
    """Check the names of ``--objective`` and ``--constraint`` against the deployment figures
    and the plugin's metrics that fit the data, and return each objective's direction (a
    metric's own; figures: lower is better, throughput higher)."""
    from automl.study.spec import FIGURES, parse_constraint

    metrics = {n: m for n, m in resolved.plugin.metrics.items()
               if info.task in m.tasks and (m.applies is None or bool(m.applies(info)))}
    choices = ", ".join([*sorted(metrics), *FIGURES])
    for flag, names in (("--objective", objectives), ("--constraint", [parse_constraint(c)[0] for c in constraints])):
        for name in names:
            if name not in FIGURES and name not in metrics:
                raise UserError(f"unknown {flag} name {name!r} for plugin {resolved.plugin.name!r} on this "
                                f"{info.task} dataset; choices: {choices}")
    return [FIGURES[n] if n in FIGURES else metrics[n].direction for n in objectives]
