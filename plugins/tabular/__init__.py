"""tabular: classification and regression on tables.

Datasets: scikit-learn's bundled ``breast_cancer`` (the default), ``wine``, ``iris`` and
``diabetes`` (regression), and ``csv`` (``--data PATH --option target=COLUMN``, numeric and
categorical columns detected, missing values imputed, task inferred or ``--option task=``).
Preprocessing is fitted on the train split only and recorded in the bundle's state.
Spaces: ``mlp`` and ``resmlp``, with embeddings for categorical columns, and ``gbm``:
scikit-learn's histogram gradient boosting, searched, an :class:`automl.ArrayModel` saved with
skops (no pickle). The default space stays ``mlp``: with its post-hoc ensemble it already
beats the gradient-boosting baseline on breast_cancer and diabetes over split seeds 0-2, and
adding ``gbm`` to it did not improve either (``--space mlp --space resmlp --space gbm``
searches them together; ensembles mix both families).
Metrics: accuracy (default), macro-F1, AUROC, log-loss; RMSE, MAE, R² for regression (a
regression dataset without ``--metric`` is scored by RMSE, the first regression metric).
Baselines: gradient boosting and logistic / ridge regression on the same split.
"""

from __future__ import annotations

from automl import Baseline, Dataset, PluginInfo, SearchSpace, hookimpl, metrics
from automl_plugins.tabular._baseline import fit_gradient_boosting, fit_linear
from automl_plugins.tabular._data import _SKLEARN, CSV_OPTIONS, LOADERS, load_csv
from automl_plugins.tabular._gbm import STARTS, build_gbm, define_gbm, train_gbm
from automl_plugins.tabular._predict import predict_table
from automl_plugins.tabular._spaces import build_mlp, build_resmlp, define_mlp, define_resmlp, train_space

TASKS = ("classification", "regression")
_DESCRIPTIONS = {
    "breast_cancer": "scikit-learn's breast cancer table: 569 rows, 30 numeric features, 2 classes",
    "wine": "scikit-learn's wine table: 178 rows, 13 numeric features, 3 classes",
    "iris": "scikit-learn's iris table: 150 rows, 4 numeric features, 3 classes",
    "diabetes": "scikit-learn's diabetes table: 442 rows, 10 features, regression",
}


@hookimpl
def plugin_info() -> PluginInfo:
    return PluginInfo(name="tabular", description="Classification and regression on tables: MLPs and gradient boosting",
                      default_dataset="breast_cancer", default_space="mlp", default_metric="accuracy")


@hookimpl
def register_datasets(register) -> None:
    for name, (_, task) in _SKLEARN.items():
        register(Dataset(name=name, task=task, load=LOADERS[name], description=_DESCRIPTIONS[name],
                         predict_new=predict_table))
    register(Dataset(name="csv", task="classification", load=load_csv, options=CSV_OPTIONS, needs_path=True,
                     predict_new=predict_table,
                     description="your CSV, TSV or JSONL table: --data PATH --option target=COLUMN "
                                 "(task inferred, or --option task=regression)"))


@hookimpl
def register_spaces(register) -> None:
    register(SearchSpace(name="mlp", tasks=TASKS, define=define_mlp, build=build_mlp, train=train_space,
                         description="MLP with categorical embeddings, batch or layer norm, dropout"))
    register(SearchSpace(name="resmlp", tasks=TASKS, define=define_resmlp, build=build_resmlp,
                         train=train_space, description="residual MLP (pre-norm blocks)"))
    register(SearchSpace(name="gbm", tasks=TASKS, define=define_gbm, build=build_gbm, train=train_gbm,
                         starts=STARTS, description="scikit-learn HistGradientBoosting, searched "
                                                    "(learning rate, rounds, leaves, regularisation)"))


@hookimpl
def register_metrics(register) -> None:
    for metric in (metrics.ACCURACY, metrics.MACRO_F1, metrics.AUROC, metrics.LOG_LOSS,
                   metrics.RMSE, metrics.MAE, metrics.R2):
        register(metric)


@hookimpl
def register_baselines(register) -> None:
    register(Baseline(name="gradient_boosting", tasks=TASKS, fit=fit_gradient_boosting,
                      description="scikit-learn HistGradientBoosting, default settings"))
    register(Baseline(name="linear", tasks=TASKS, fit=fit_linear,
                      description="logistic regression (classification) or ridge (regression)"))
