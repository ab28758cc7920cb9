"""vision: image classification.

Datasets: ``digits`` (scikit-learn's 8x8 handwritten digits, the default).
Spaces: ``mlp`` and ``cnn``. Metrics: accuracy (default), macro-F1.
"""

from __future__ import annotations

from automl import Dataset, PluginInfo, SearchSpace, hookimpl, metrics

from automl_plugins.vision._data import load_digits_bundle
from automl_plugins.vision._spaces import build_cnn, build_mlp, define_cnn, define_mlp, train_space

CLS = ("classification",)


@hookimpl
def plugin_info() -> PluginInfo:
    return PluginInfo(name="vision", description="Image classification with MLPs and CNNs",
                      default_dataset="digits", default_space="cnn", default_metric="accuracy")


@hookimpl
def register_datasets(register) -> None:
    register(Dataset(name="digits", task="classification", load=load_digits_bundle,
                     description="scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes"))


@hookimpl
def register_spaces(register) -> None:
    register(SearchSpace(name="mlp", tasks=CLS, define=define_mlp, build=build_mlp, train=train_space,
                         description="multi-layer perceptron on the flattened image"))
    register(SearchSpace(name="cnn", tasks=CLS, define=define_cnn, build=build_cnn, train=train_space,
                         description="convolutional blocks with batch norm, pooling and a dense head"))


@hookimpl
def register_metrics(register) -> None:
    register(metrics.ACCURACY)
    register(metrics.MACRO_F1)
