"""automl: plugin-based AutoML and hyperparameter tuning for PyTorch.

This namespace is the plugin contract, and only that: the hook marker, the types a plugin
registers or receives, the errors it raises, and the standard metrics::

    from automl import hookimpl, Dataset, DataBundle, DataInfo, Split, SearchSpace, Metric

Helpers for plugin authors live in named modules: :mod:`automl.training` (the shared trainer:
``fit``, ``suggest_training``, ``build_model``...), :mod:`automl.data` (``read_table``,
``three_way_split``, ``predict_rows``...) and :mod:`automl.testing` (the conformance kit).
Everything else (``automl.study``, ``automl.search``, ``automl.backends``, ``automl.output``,
``automl.cli``, ``automl.plugins``) is internal.

Names are imported on first use (PEP 562), so ``import automl`` costs nothing: the command
line starts without importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from automl._version import __version__

__all__ = [
    "TASKS",
    "ArrayModel",
    "Baseline",
    "DataBundle",
    "DataInfo",
    "Dataset",
    "EpochEvent",
    "Metric",
    "Option",
    "PluginInfo",
    "PredictContext",
    "Predictions",
    "SearchSpace",
    "Split",
    "StreamSplit",
    "StudyEvent",
    "TrainContext",
    "TrialEvent",
    "TrialFailed",
    "UserError",
    "__version__",
    "hookimpl",
    "metrics",
]

# Where each public name lives; ``from automl import X`` imports that module on first use.
_HOMES = {name: "automl.types" for name in __all__ if name[0].isupper()}
_HOMES.update(hookimpl="automl.hookspecs", TrialFailed="automl.errors", UserError="automl.errors",
              metrics="automl.metrics")
#: Public submodules, also reachable as attributes after a plain ``import automl``.
_MODULES = ("data", "training", "testing", "types", "errors", "hookspecs")

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from automl import metrics
    from automl.errors import TrialFailed, UserError
    from automl.hookspecs import hookimpl
    from automl.types import (
        TASKS,
        ArrayModel,
        Baseline,
        DataBundle,
        DataInfo,
        Dataset,
        EpochEvent,
        Metric,
        Option,
        PluginInfo,
        PredictContext,
        Predictions,
        SearchSpace,
        Split,
        StreamSplit,
        StudyEvent,
        TrainContext,
        TrialEvent,
    )


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return import_module(f"automl.{name}")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'automl' has no attribute {name!r}")
    module = import_module(home)
    value = module if name == "metrics" else getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
