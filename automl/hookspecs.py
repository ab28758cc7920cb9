"""The plugin contract: every hook a plugin may implement.

A plugin is a module (or any object) with functions decorated by :data:`automl.hookimpl`,
named exactly like the hooks below. It is found through the ``automl.plugins`` entry point
group; the entry point's name is the plugin's name. First-party plugins (vision, text,
tabular, recsys, bio) are registered that same way.

The ``register_*`` hooks receive a ``register`` callback, and the plugin calls it once per
object it contributes. Core validates each object when it is registered (type, well-formed
unique name, declared task and direction) and names the plugin at fault when one is wrong.

Hooks are called per plugin, not all at once: an exception in one plugin's hook marks that
plugin broken, with the error shown by ``automl plugins``, and never breaks other plugins.
No hook runs at import time: plugins are loaded when a command needs them.

The guide for plugin authors, with a section and an example for every hook, is
``docs/writing-plugins.md`` (a test fails when a hook here has none); the conformance kit
that checks a plugin is :mod:`automl.testing` (``automl plugins check NAME``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import typer

    from automl.types import (
        Baseline,
        Dataset,
        EpochEvent,
        Metric,
        PluginInfo,
        SearchSpace,
        StudyEvent,
        TrialEvent,
    )

PROJECT = "automl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""The decorator that marks a plugin's hook implementations::

    from automl import hookimpl

    @hookimpl
    def register_metrics(register):
        register(automl.metrics.ACCURACY)

The function's name is the hook it implements (see :mod:`automl.hookspecs`); ``@hookimpl``
takes pluggy's options (``tryfirst``, ``trylast``, ``wrapper``)."""


@hookspec
def plugin_info() -> PluginInfo:
    """Describe the plugin and name its defaults.

    Return a :class:`automl.PluginInfo` whose ``default_dataset``, ``default_space`` and
    ``default_metric`` are used when the user gives only ``--plugin NAME``. The ``name`` field
    is for display; the plugin's identity is its entry point name.

    Example::

        @hookimpl
        def plugin_info():
            return PluginInfo(name="acme", description="Widgets", default_dataset="widgets",
                              default_space="mlp", default_metric="accuracy")
    """


@hookspec
def register_datasets(register: Callable[[Dataset], None]) -> None:
    """Contribute datasets: call ``register(Dataset(...))`` once for each.

    A :class:`automl.Dataset` has a ``name``, a ``task`` (``classification``, ``regression``
    or ``ranking``), a ``load(path, options, seed)`` returning a :class:`automl.DataBundle`
    with train / val / test splits, and the ``--option`` values it accepts.

    Example::

        @hookimpl
        def register_datasets(register):
            register(Dataset(name="widgets", task="classification", load=load_widgets))
    """


@hookspec
def register_spaces(register: Callable[[SearchSpace], None]) -> None:
    """Contribute search spaces (model families): call ``register(SearchSpace(...))``.

    A :class:`automl.SearchSpace` suggests the model's hyperparameters with ``define(trial,
    info)``, builds an ``nn.Module`` with ``build(config, info)``, and suggests the training
    hyperparameters with ``train(trial, info)`` (default :func:`automl.training.suggest_training`).

    Example::

        @hookimpl
        def register_spaces(register):
            register(SearchSpace(name="mlp", tasks=("classification",), define=define_mlp,
                                 build=build_mlp))
    """


@hookspec
def register_metrics(register: Callable[[Metric], None]) -> None:
    """Contribute metrics: call ``register(Metric(...))`` once for each.

    A :class:`automl.Metric` has a ``direction`` (``maximize`` or ``minimize``), the tasks it
    fits, and ``fn(y_true, y_pred) -> float`` computed on a whole split. The standard ones
    live in :mod:`automl.metrics` and can be registered as they are.

    Example::

        @hookimpl
        def register_metrics(register):
            register(automl.metrics.ACCURACY)
    """


@hookspec
def register_baselines(register: Callable[[Baseline], None]) -> None:
    """Contribute baselines: reference models shown as a row of the leaderboard.

    A :class:`automl.Baseline` has ``fit(data, metric) -> {"val": float, "test": float}``.
    Core fits every baseline that fits the dataset's task once per search, on the same
    splits, and stores its scores with the study, so the user sees whether the search won.

    Example::

        @hookimpl
        def register_baselines(register):
            register(Baseline(name="logreg", tasks=("classification",), fit=fit_logreg))
    """


@hookspec
def on_trial_start(event: TrialEvent) -> None:
    """Called in the worker process when a trial starts, after its parameters are sampled.

    The lifecycle hooks (this one, ``on_epoch_end``, ``on_trial_end``, ``on_study_end``) reach
    the search's own plugin, loggers named with ``--log``, and always-on plugins: those listed
    in the ``automl.listeners`` entry-point group as well (see :class:`automl.PluginInfo`).

    Example::

        @hookimpl
        def on_trial_start(event):
            print("trial", event.number, event.params)
    """


@hookspec
def on_epoch_end(event: EpochEvent) -> None:
    """Called in the worker process after each validated epoch of a trial, with the train
    loss and the validation metric. Loggers (CSV, TensorBoard) write learning curves here.

    Example::

        @hookimpl
        def on_epoch_end(event):
            print(event.number, event.epoch, event.value)
    """


@hookspec
def on_trial_end(event: TrialEvent) -> None:
    """Called in the worker process when a trial ends: ``state`` is ``COMPLETE``,
    ``PRUNED`` or ``FAIL`` (with ``error``).

    Example::

        @hookimpl
        def on_trial_end(event):
            print(event.number, event.state, event.value)
    """


@hookspec
def on_study_end(event: StudyEvent) -> None:
    """Called in the main process when a search or resume finishes or is interrupted.

    Example::

        @hookimpl
        def on_study_end(event):
            print("best", event.best_value)
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add CLI subcommands: decorate functions with ``@app.command()``.

    A plugin whose command registration fails gives a warning, never a broken CLI.

    Example::

        @hookimpl
        def register_commands(app):
            @app.command()
            def hello():
                print("hello")
    """
