"""The kit's driver: load the plugin, run every check, collect one result per check.

A check never raises: an exception inside a plugin's code becomes a failed result that names
the object and the error, so that one run reports everything that is wrong at once.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.errors import UserError
from automl.plugins import KINDS, LoadedPlugin, Registry, load_registry
from automl.study.resolve import parse_options, resolve
from automl.testing import _array_checks, _data_checks, _model_checks
from automl.testing._data_checks import CheckFailed, Skip
from automl.types import NAME_RE, DataBundle, EpochEvent, StudyEvent, TrialEvent

LIFECYCLE = ("on_trial_start", "on_epoch_end", "on_trial_end", "on_study_end")


@dataclass
class CheckResult:
    """One check of one object: ``status`` is ``pass``, ``fail`` or ``skip``; ``reason`` says
    why it failed or was skipped (or, for a pass, what was seen)."""

    check: str
    target: str
    status: str
    reason: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """A skipped check is not a failure."""
        return self.status != "fail"

    def __str__(self) -> str:
        return f"{self.status.upper():4} {self.check} {self.target}" + (f": {self.reason}" if self.reason else "")


class _Run:
    """Collects results; ``do`` runs one check and turns its outcome into a result."""

    def __init__(self) -> None:
        self.results: list[CheckResult] = []

    def do(self, check: str, target: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value, status, reason = None, "pass", ""
        try:
            value = fn()
            if isinstance(value, str):
                reason = value
            elif isinstance(value, tuple) and value and isinstance(value[0], str):
                reason = value[0]
        except Skip as exc:
            status, reason = "skip", str(exc)
        except CheckFailed as exc:
            status, reason = "fail", str(exc)
        except Exception as exc:  # noqa: BLE001 - the plugin's error is the finding
            status, reason = "fail", _describe(exc)
        self.results.append(CheckResult(check, target, status, reason, round(time.perf_counter() - start, 3)))
        return value if status == "pass" else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def check_plugin(name: str, *, sample_data: Mapping[str, str | os.PathLike] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 plugin_paths: list[str] | tuple[str, ...] = (), seed: int = 0, n_configs: int = 2,
                 batch_size: int = 8, registry: Registry | None = None,
                 new_data: Mapping[str, str | os.PathLike] | None = None) -> list[CheckResult]:
    """Run every conformance check on the plugin ``name`` and return the results.

    ``sample_data`` maps a dataset that needs ``--data`` to a sample path (other such datasets
    are skipped); ``options`` maps a dataset to its ``--option`` values; ``plugin_paths`` loads
    plugins that are not installed (like ``--plugin-path``). ``n_configs`` configs of each
    space are drawn and built. ``new_data`` maps a dataset with a ``predict_new`` to a file or
    folder of new data in the format it reads: its ``predict_new`` then runs with a model of
    every space (without it, a dataset's sample data is tried, and the check is skipped when
    the reader refuses that format). Raises :class:`automl.UserError` for an unknown or blocked
    plugin; a broken one gives a failed ``load`` result.
    """
    registry = registry or load_registry(list(plugin_paths))
    plugin = registry.find(name)  # a broken plugin is a failed ``load`` result below, not an error
    run = _Run()
    if plugin.error:
        run.results.append(CheckResult("load", f"plugin {name}", "fail", plugin.error))
        return run.results
    counts = ", ".join(f"{len(getattr(plugin, k))} {k}" for k in KINDS)
    run.results.append(CheckResult("load", f"plugin {name}", "pass", f"{plugin.source}: {counts}"))
    run.do("names", f"plugin {name}", lambda: _check_names(plugin))
    run.do("defaults", f"plugin {name}", lambda: _check_defaults(registry, plugin))

    bundles: dict[str, DataBundle] = {}
    opts_of: dict[str, dict[str, Any]] = {}
    samples = {k: str(v) for k, v in (sample_data or {}).items()}
    fresh = {k: str(v) for k, v in (new_data or {}).items()}
    for unknown in sorted(set(samples) | set(options or {}) | set(fresh)):
        if unknown not in plugin.datasets:
            raise UserError(f"plugin {name!r} has no dataset {unknown!r}; datasets: "
                            f"{', '.join(sorted(plugin.datasets)) or 'none'}")
    for ds in plugin.datasets.values():
        target = f"dataset {ds.name}"
        opts = opts_of[ds.name] = parse_options(ds, dict((options or {}).get(ds.name, {})))
        bundle = run.do("dataset", target, lambda: _data_checks.load(name, ds, samples.get(ds.name), opts, seed))
        if bundle is None:
            continue
        bundle = bundle[1]
        if run.do("splits", target, lambda: _data_checks.check_splits(ds, bundle)) is None:
            continue  # spaces and metrics are not checked on inconsistent data
        bundles[ds.name] = bundle
        run.do("overlap", target, lambda: _data_checks.check_overlap(bundle))

    outputs: dict[str, tuple[Any, Any]] = {}
    defined: dict[str, list[Any]] = {}  # dataset -> the spaces whose own define check passed on it
    models: dict[str, list[Any]] = {}  # dataset -> (space, (model, prepared data, config)) per space
    for space in plugin.spaces.values():
        fitting = [(n, b) for n, b in bundles.items() if b.info.task in space.tasks]
        if not fitting:
            run.results.append(CheckResult("define", f"space {space.name}", "skip",
                                           f"no loaded dataset of task {', '.join(space.tasks)}"))
        for ds_name, bundle in fitting:
            target = f"space {space.name} on {ds_name}"
            configs = run.do("define", target, lambda: _model_checks.check_define(space, bundle, seed, n_configs))
            if configs is None:
                continue
            defined.setdefault(ds_name, []).append(space)
            out = run.do("model", target, lambda: _model_checks.check_model(space, bundle, configs[1], seed,
                                                                            batch_size))
            if out is not None and out[1] is not None:
                outputs.setdefault(ds_name, out[1])
            if out is not None:
                models.setdefault(ds_name, []).append((space, out[2]))

    for ds_name, fitting in defined.items():
        if len(fitting) > 1:
            run.do("study", f"spaces on {ds_name}",
                   lambda: _model_checks.check_shared_study(fitting, bundles[ds_name], seed, n_configs))

    for ds_name, fitted in models.items():
        _check_predict(run, plugin.datasets[ds_name], fitted, opts_of[ds_name], fresh, samples)

    for metric in plugin.metrics.values():
        target = f"metric {metric.name}"
        run.do("metric", target, lambda: _model_checks.check_direction(metric))
        _model_checks.check_metric_order(run, metric, bundles, outputs)

    run.do("pickle", f"plugin {name}", lambda: _check_pickle(plugin, bundles))
    _check_hooks(run, registry, plugin)
    return run.results


def assert_conforms(name: str, **kwargs: Any) -> list[CheckResult]:
    """Run :func:`check_plugin` and raise ``AssertionError`` listing every failed check;
    return the results when none failed. Takes the same keyword arguments."""
    results = check_plugin(name, **kwargs)
    failed = [r for r in results if r.status == "fail"]
    if failed:
        lines = "\n".join(f"  - {r.check} {r.target}: {r.reason}" for r in failed)
        raise AssertionError(f"plugin {name!r} fails {len(failed)} conformance check(s):\n{lines}")
    return results


def _check_predict(run: _Run, ds: Any, fitted: list[Any], options: dict[str, Any], fresh: dict[str, str],
                   samples: dict[str, str]) -> None:
    """``predict_new`` of a dataset that has one, with a model of each space checked on it."""
    if ds.predict_new is None:
        return
    try:
        path, explicit = _array_checks.new_data_for(ds, fresh, samples)
    except Skip as exc:
        run.results.append(CheckResult("predict", f"dataset {ds.name}", "skip", str(exc)))
        return
    for space, (model, data, config) in fitted:
        run.do("predict", f"space {space.name} on {ds.name}",
               lambda: _array_checks.check_predict_new(ds, space, model, config, data, options, path, explicit))


def _check_names(plugin: LoadedPlugin) -> str:
    problems = []
    if not NAME_RE.match(plugin.name):
        problems.append(f"plugin name {plugin.name!r} is not a lowercase identifier (entry point name)")
    total = 0
    for kind in KINDS:
        table = getattr(plugin, kind)
        names = [obj.name for obj in table.values()]
        total += len(names)
        for key, obj in table.items():
            if key != obj.name or not NAME_RE.match(obj.name):
                problems.append(f"{kind[:-1]} name {obj.name!r} is not a lowercase identifier")
        if len(set(names)) != len(names):
            problems.append(f"{kind} names repeat: {sorted(names)}")
    if problems:
        raise CheckFailed("; ".join(problems))
    note = ""
    if plugin.info is not None and plugin.info.name != plugin.name:
        note = f" (plugin_info calls it {plugin.info.name!r}; its name is the entry point name {plugin.name!r})"
    return f"{total} names, all well-formed and unique{note}"


def _check_defaults(registry: Registry, plugin: LoadedPlugin) -> str:
    if not plugin.datasets:
        kind = "a logger (opt-in)" if plugin.info is not None and plugin.info.opt_in else "no datasets"
        raise Skip(f"{kind}: nothing to search with --plugin {plugin.name}")
    if plugin.info is None:
        raise CheckFailed("no plugin_info hook: --plugin NAME alone does not know which dataset to use")
    resolved = resolve(registry, plugin.name)
    metric = plugin.info.default_metric
    if metric is not None and resolved.dataset.task not in plugin.metrics[metric].tasks:
        raise CheckFailed(f"default metric {metric!r} does not fit the default dataset's task "
                          f"{resolved.dataset.task!r}")
    return (f"--plugin {plugin.name} uses dataset {resolved.dataset.name}, space "
            f"{resolved.spaces[0].name}, metric {metric or '(first that fits)'}")


def _check_pickle(plugin: LoadedPlugin, bundles: dict[str, DataBundle]) -> str:
    """Ray sends these objects to its workers; they must pickle by reference (module-level
    functions, no lambdas or closures). Only ``dumps`` is used: nothing is loaded."""
    bad, count = [], 0
    objects: list[tuple[str, Any]] = [(f"{kind[:-1]} {n}", obj) for kind in KINDS
                                      for n, obj in getattr(plugin, kind).items()]
    objects += [(f"DataInfo of {n}", b.info) for n, b in bundles.items()]
    for label, obj in objects:
        try:
            pickle.dumps(obj)
            count += 1
        except Exception as exc:  # noqa: BLE001 - any pickling error is the finding
            bad.append(f"{label}: {_describe(exc)}")
    if bad:
        raise CheckFailed("; ".join(bad) + " (use module-level functions, not lambdas or local functions)")
    return f"{count} objects pickle"


def _check_hooks(run: _Run, registry: Registry, plugin: LoadedPlugin) -> None:
    hooks = {name: registry.hook(name, plugin.name) for name in (*LIFECYCLE, "register_commands")
             if plugin.name in registry.implementers(name)}
    if any(h in hooks for h in LIFECYCLE):
        with tempfile.TemporaryDirectory(prefix="automl-kit-") as tmp:
            study_dir = str(Path(tmp) / "kit-study")
            Path(study_dir).mkdir()
            params = {"lr": 0.01, "layers": 2, "activation": "relu"}
            config = {"space": "kit", "model": {"layers": 2}, "train": {"lr": 0.01, "epochs": 2}}
            events = {
                "on_trial_start": [TrialEvent("kit-study", study_dir, 0, params, config=config)],
                "on_epoch_end": [EpochEvent("kit-study", study_dir, 0, e, 1.0 / (e + 1), 0.5 + 0.1 * e, "accuracy")
                                 for e in range(2)],
                "on_trial_end": [TrialEvent("kit-study", study_dir, 0, params, config=config, state="COMPLETE",
                                            value=0.6, duration_s=1.5)],
                "on_study_end": [StudyEvent("kit-study", study_dir, 1, 0.6, params)],
            }
            for hook in LIFECYCLE:
                if hook in hooks:
                    run.do("hook", hook, lambda: _fire(hooks[hook], events[hook], study_dir))
    if "register_commands" in hooks:
        run.do("hook", "register_commands", lambda: _commands_added(hooks["register_commands"]))


def _fire(hook: Any, events: list[Any], study_dir: str) -> str:
    for event in events:
        hook(event=event)
    written = sorted(str(p.relative_to(study_dir)) for p in Path(study_dir).rglob("*") if p.is_file())
    return f"ran on {len(events)} sample event(s); files in the study folder: {len(written)}"


def _commands_added(hook: Any) -> str:
    import typer

    app = typer.Typer()
    hook(app=app)
    names = [c.name or (c.callback.__name__.replace("_", "-") if c.callback else "?")
             for c in app.registered_commands] + [g.name or "?" for g in app.registered_groups]
    if not names:
        raise CheckFailed("register_commands added no command")
    return "adds " + ", ".join(names)
