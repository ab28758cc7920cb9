"""A plugin that registers an invalid metric: core must reject it and name the plugin."""

from automl import Metric, hookimpl


@hookimpl
def register_metrics(register):
    register(Metric("sideways", "upwards", ("classification",), lambda y, p: 0.0))
