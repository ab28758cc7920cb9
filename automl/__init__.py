"""automl: plugin-based AutoML and hyperparameter tuning for PyTorch.

This module is the public API. Plugins import from here only::

    from automl import hookimpl, Dataset, DataBundle, DataInfo, Split, SearchSpace, Metric
"""

__version__ = "0.1.0"

from automl import metrics
from automl._errors import TrialFailed, UserError
from automl._predict import predict_rows
from automl._splits import three_way_split
from automl._tables import read_table
from automl._trainer import TargetScaler, build_model, fit, predict, suggest_training
from automl._types import (
    TASKS,
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
    call_model,
    map_inputs,
)
from automl.hookspecs import hookimpl

__all__ = [
    "TASKS",
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
    "TargetScaler",
    "TrainContext",
    "TrialEvent",
    "TrialFailed",
    "UserError",
    "__version__",
    "build_model",
    "call_model",
    "fit",
    "hookimpl",
    "map_inputs",
    "metrics",
    "predict",
    "predict_rows",
    "read_table",
    "suggest_training",
    "three_way_split",
]
