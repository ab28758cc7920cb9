"""The conformance kit: the checks every automl plugin should pass.

Plugin authors run it from their tests, and ``automl plugins check NAME`` runs it from the
command line::

    from automl.testing import assert_conforms, check_plugin

    def test_conformance():
        assert_conforms("acme")            # AssertionError naming every failed check

    results = check_plugin("acme")         # list[CheckResult], pass / fail / skip each

What is checked (each result names the object it is about):

- ``load``, ``names``, ``defaults``: the plugin loads; every registered name is well-formed
  and unique; ``--plugin NAME`` alone resolves to its default dataset, space and metric.
- ``dataset``, ``splits``, ``overlap``: every dataset loads; its splits are consistent
  (rows, input structure, shapes and dtypes, label range, ``DataInfo`` JSON-able); no row
  (inputs and target) of the validation or test split is also in the train split beyond
  what the data's own duplicate rate explains. A dataset that needs ``--data`` is checked
  only with ``sample_data={"dataset": path}``.
- ``define``, ``model``: for every space and every dataset it fits, ``define`` (with a trial
  of an in-memory Optuna study) gives a JSON-able config; the model is built from the JSON
  form (after ``prepare``), runs forward and backward on a real batch (or the space's
  ``step``), evaluates the validation split, and its ``state_dict`` saves and loads with
  ``weights_only=True``. A model that is not a torch module (an :class:`automl.ArrayModel`:
  gradient boosting...) is fitted on the first train rows instead; its ``predict`` gives
  finite floats of the task's shape (``(N, C)`` probabilities summing to 1, or ``(N,)``
  values), ``save`` writes into an empty folder and no pickle (:func:`find_pickles`), and a
  model freshly built from the same config and ``load``-ed from it predicts identically.
- ``predict``: a dataset's ``predict_new`` (what ``automl predict`` runs) with a model of
  every space, on ``new_data={dataset: PATH}`` (else the dataset's sample data, skipped when
  its reader refuses that format): :class:`automl.Predictions` rows, ``id`` first, a class
  name and probabilities summing to 1, or a finite value; skipped without new data.
- ``study``: all the spaces that fit a dataset sample into one study, as a search of several
  spaces does (model parameters are per space; training parameters are shared and must agree).
- ``metric``, ``order``: every metric declares a direction, and scores perfect predictions
  better than poor ones built from a dataset's own targets (or a toy example); where a
  dataset has its own ``evaluate``, the metric is run on an untrained model's output and the
  order check is skipped with the reason.
- ``pickle``: every registered object and every ``DataInfo`` pickles by reference, as Ray
  sends them to its workers.
- ``hook``: lifecycle hooks (``on_trial_start`` ...) run on sample events in a temporary
  study folder; ``register_commands`` adds its commands to a fresh Typer app.

pytest fixtures ``automl_check``, ``automl_cli`` and ``automl_studies`` are registered through
the ``pytest11`` entry point (:mod:`automl.pytest_plugin`): no conftest is needed.
"""

from automl.testing._array_checks import find_pickles
from automl.testing._kit import CheckResult, assert_conforms, check_plugin

__all__ = ["CheckResult", "assert_conforms", "check_plugin", "find_pickles"]
