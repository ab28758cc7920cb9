"""The objects a plugin registers, and the data objects that flow between core and plugins.

Every registered object is a plain dataclass, validated by core when it is registered
(see :mod:`automl.plugins`). They hold callables, never state that depends on a trial, so
they can be pickled by reference and sent to worker processes and Ray workers.

This module does not import torch at import time (the command line reads these types
without training anything); the functions that handle tensors import it when called.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pathlib import Path

    import numpy as np
    import optuna
    import torch
    from torch import nn

#: The task kinds core knows how to train and score. A dataset declares one; spaces and
#: metrics declare the tasks they fit.
TASKS = ("classification", "regression", "ranking")
"""The task kinds core knows how to train and score: a :class:`Dataset` declares one, a
:class:`SearchSpace` and a :class:`Metric` the tasks they fit."""
DIRECTIONS = ("maximize", "minimize")
NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")

Inputs = "torch.Tensor | Mapping[str, torch.Tensor]"


@dataclass(frozen=True)
class Option:
    """A ``--option key=value`` a dataset accepts.

    ``type`` is one of ``str``, ``int``, ``float``, ``bool``; values from the command line are
    converted to it, and ``choices`` (when given) restricts them.
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin says about itself: with the defaults, ``--plugin NAME`` alone runs.

    Which plugins hear a search's lifecycle hooks (``on_trial_start``, ``on_epoch_end``,
    ``on_trial_end``, ``on_study_end``), in every process of the search and on every backend:

    - the search's own plugin;
    - loggers named with ``--log NAME``;
    - always-on plugins: those whose distribution also lists them in the ``automl.listeners``
      entry-point group (a search imports only these plugins, so it must know them without
      importing every installed one).

    ``opt_in=True`` (loggers such as CSV, TensorBoard): the plugin's lifecycle hooks fire only
    in searches that name it with ``--log NAME``, even when it is imported for another reason.

    ``default_spaces``: the spaces a search without ``--space`` searches together (one study,
    parameters namespaced by space), keeping those that fit the dataset's task; when none
    fits, or the tuple is empty, ``default_space`` alone. Example: a recommender plugin
    searches ``("mf", "ease", "itemknn")`` on implicit feedback, and ``mf`` on ratings, which
    the closed-form spaces do not fit::

        PluginInfo(name="recsys", default_dataset="synthetic", default_space="mf",
                   default_spaces=("mf", "ease", "itemknn"), default_metric="ndcg")

    ``deployment_spaces``: the spaces searched instead, without ``--space``, when a deployment
    figure (``latency_ms``, ``size_mb``, ``params``...) is among the objectives
    (``--objective``) or constraints (``--constraint``): model families that together span
    the accuracy/latency trade-off (one family's smallest model is rarely much faster than
    its most accurate one). Empty: the default spaces. Example:
    ``deployment_spaces=("cnn", "mlp", "linear")`` for images.
    """

    name: str
    description: str = ""
    default_dataset: str | None = None
    default_space: str | None = None
    default_metric: str | None = None
    opt_in: bool = False
    default_spaces: tuple[str, ...] = ()
    deployment_spaces: tuple[str, ...] = ()


@dataclass
class DataInfo:
    """What a model builder and a search space need to know about the data.

    ``input_shape`` is the shape of one example (without the batch dimension) where that is
    fixed; ``extra`` carries anything else a plugin's spaces need (vocabulary size, number of
    users and items, channel count...). Everything here must be JSON-able.
    ``target_mean`` / ``target_std`` are filled by core for regression, from the train split.
    """

    task: str
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    class_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    target_mean: float | None = None
    target_std: float | None = None

    def replace(self, **changes: Any) -> DataInfo:
        """A copy with ``changes`` applied: ``info.replace(num_classes=3)``."""
        return replace(self, **changes)


@dataclass
class Split:
    """One split held in memory: inputs and targets, batched by index.

    ``inputs`` is a tensor (the model is called as ``model(x)``) or a mapping of named tensors
    (called as ``model(**inputs)``), all with the same first dimension as ``targets``.
    Variable-length sequences are a padded tensor plus a ``lengths`` tensor in the mapping.
    """

    inputs: Any
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def take(self, idx: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The inputs and targets of the rows ``idx`` (one batch)."""
        return map_inputs(self.inputs, lambda t: t[idx]), self.targets[idx]

    def to(self, device: torch.device | str) -> Split:
        """The split with every tensor moved to ``device``."""
        return Split(map_inputs(self.inputs, lambda t: t.to(device)), self.targets.to(device))


@dataclass
class StreamSplit:
    """A split too large for memory: a map-style ``torch.utils.data.Dataset`` of
    ``(inputs, target)`` pairs, read through a ``DataLoader`` with ``num_workers`` processes."""

    dataset: Any
    num_workers: int = 2

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass
class TrainContext:
    """What a custom training ``step`` receives besides the batch: the trial's training
    config, the data description, the train split (and the validation split, for a step that
    needs it), both on the training device, the default loss of the task, and the trial's
    seeded generator. The test split is never given to training code."""

    config: dict[str, Any]
    info: DataInfo
    train: Split | StreamSplit
    val: Split | StreamSplit | None
    device: torch.device
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: torch.Generator | None = None


@dataclass
class DataBundle:
    """A loaded dataset: three splits, their description, and what was fitted on train.

    - ``state``: JSON-able preprocessing fitted on the train split only (normalisation,
      vocabulary...), kept with the study so that exported models get the same input pipeline.
    - ``summary``: counts worth showing the user (``{"skipped files": 1}``).
    - ``evaluate``: optional ``evaluate(model, split_name, device) -> (y_true, y_pred)`` for
      tasks whose evaluation is not one prediction per row (ranking over a catalogue). The
      metric's function receives exactly what it returns.
    """

    train: Split | StreamSplit
    val: Split | StreamSplit
    test: Split | StreamSplit
    info: DataInfo
    state: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    evaluate: Callable[[nn.Module, str, torch.device], tuple[Any, Any]] | None = None

    def split(self, name: str) -> Split | StreamSplit:
        """The split called ``name``: ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise KeyError(name)
        return getattr(self, name)


@dataclass(frozen=True)
class Dataset:
    """A dataset a plugin contributes.

    ``load(path, options, seed)`` returns a :class:`DataBundle`. ``path`` is the user's
    ``--data PATH`` (``None`` when not given), ``options`` the validated ``--option`` values
    (defaults filled in), and ``seed`` the study seed, to be used for any random split.
    Raise :class:`automl.UserError` for bad paths or contents: the user sees its message.

    ``predict_new(model, path, ctx) -> Predictions`` (optional; what ``automl predict`` runs):
    reads NEW, unlabelled data from ``path`` with the dataset's own reader, applies the fitted
    preprocessing in ``ctx.state`` (a :class:`PredictContext`), runs the model and returns one
    row per example; :func:`automl.data.predict_rows` does the batched forward pass, class
    names and probabilities.
    """

    name: str
    task: str
    load: Callable[[Any, dict[str, Any], int], DataBundle]
    description: str = ""
    options: tuple[Option, ...] = ()
    needs_path: bool = False
    predict_new: Callable[[nn.Module, str, PredictContext], Predictions] | None = None


@dataclass
class PredictContext:
    """What a dataset's ``predict`` receives besides the model and the path of new data.

    ``state`` is the fitted preprocessing saved with the model (the prepared bundle's
    ``DataBundle.state``: vocabulary, normalisation, category ids...), ``options`` the study's
    dataset options (with the user's ``--option`` overrides), ``info`` the data description the
    model was built for and ``config`` the trial's config (``space``, ``model``, ``train``).
    """

    state: dict[str, Any]
    options: dict[str, Any]
    info: DataInfo
    config: dict[str, Any]
    device: torch.device
    batch_size: int = 1024


@dataclass
class Predictions:
    """Predictions on new data: one dict per example, ``id`` first (written as CSV rows), and
    counts worth showing the user (``{"skipped files": 2}``)."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ArrayModel(Protocol):
    """A model that is not a torch module - gradient boosting, a linear model on sparse
    features - as a space's ``build`` may return one. Core trains it by calling its ``fit``
    (no epochs, no gradient steps), scores ``predict`` with the study's metric, and stores it
    with ``save`` in the library's own format (never pickle), so resume, export, ``automl
    predict``, the report and ensembles work with it as with any model.

    - ``fit(train, val, info)``: train on the train split; the validation split is there for
      the model's own early stopping (never for the test).
    - ``predict(inputs) -> numpy array``: what a metric receives, for the inputs of a split:
      ``(N, C)`` class probabilities for classification, ``(N,)`` values for regression.
    - ``save(folder)`` / ``load(folder)``: write the fitted model into an empty folder with the
      library's own format (LightGBM's model text, XGBoost's JSON, skops for scikit-learn);
      ``load`` is called on a model freshly built from the same config.

    A torch module may also define ``fit(train, val, info)`` (a closed-form model: EASE, a
    linear model solved exactly): core then calls it instead of the gradient loop, and stores
    the module's ``state_dict`` as for any module. Such a module also works where a dataset
    evaluates models its own way (ranking over a catalogue); an ``ArrayModel`` does not.
    """

    def fit(self, train: Split, val: Split, info: DataInfo) -> None:
        """Train on ``train``; ``val`` is for the model's own early stopping only."""
        ...

    def predict(self, inputs: Any) -> np.ndarray:
        """``(N, C)`` class probabilities or ``(N,)`` values for the inputs of a split."""
        ...

    def save(self, folder: Path) -> None:
        """Write the fitted model into the empty ``folder``, in its library's own format."""
        ...

    def load(self, folder: Path) -> None:
        """Read what :meth:`save` wrote into this freshly built model."""
        ...


@dataclass(frozen=True)
class SearchSpace:
    """A model family and the hyperparameters searched for it.

    - ``define(trial, info) -> dict``: suggests the model's hyperparameters with the Optuna
      ``trial`` and returns them as a JSON-able config.
    - ``build(config, info) -> nn.Module | ArrayModel``: builds the model from that config: a
      torch module trained by the shared trainer (or by its own ``fit``), or an
      :class:`ArrayModel` (gradient boosting...) trained by its ``fit``.
    - ``train(trial, info) -> dict``: suggests the training hyperparameters; the default is
      :func:`automl.training.suggest_training`.
    - ``prepare(data, config) -> DataBundle`` (optional): turns the loaded data into the
      model's inputs where that depends on the config (vocabulary size, resolution...). It
      must fit anything it learns on ``data.train`` only.
    - ``step(model, inputs, targets, ctx) -> loss`` (optional): a custom training step, for
      losses that are not a function of one prediction per row (BPR with sampled negatives).
    - ``check(info)`` (optional): called before anything is written; raises
      :class:`automl.UserError` when the space cannot run here (weights or an optional
      dependency missing, a dataset it cannot handle).
    - ``starts`` (optional): configurations a search tries first, before it samples: each a
      dict of parameters under the names ``define`` and ``train`` suggest them, e.g.
      ``{"width": 128, "lr": 3e-3}``; parameters left out are sampled. Give the configuration
      a practitioner would try first: under a short time budget it is often the one kept.
    """

    name: str
    tasks: tuple[str, ...]
    define: Callable[[optuna.Trial, DataInfo], dict[str, Any]]
    build: Callable[[dict[str, Any], DataInfo], nn.Module]
    train: Callable[[optuna.Trial, DataInfo], dict[str, Any]] | None = None
    description: str = ""
    prepare: Callable[[DataBundle, dict[str, Any]], DataBundle] | None = None
    step: Callable[..., torch.Tensor] | None = None
    check: Callable[[DataInfo], None] | None = None
    starts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Metric:
    """A score of predictions against targets, computed on whole-split outputs.

    ``fn(y_true, y_pred) -> float``. For classification ``y_pred`` is an ``(N, C)`` array of
    class probabilities, for regression an ``(N,)`` array; where a dataset has its own
    ``evaluate`` it is whatever that returns. ``applies(info)`` (optional) says whether the
    metric makes sense for a dataset (top-5 accuracy needs at least 10 classes).
    """

    name: str
    direction: str
    tasks: tuple[str, ...]
    fn: Callable[[Any, Any], float]
    description: str = ""
    applies: Callable[[DataInfo], bool] | None = None


@dataclass(frozen=True)
class Baseline:
    """A reference model the leaderboard shows beside the search (gradient boosting, ridge,
    most-popular...). ``fit(data, metric) -> {"val": float, "test": float}``."""

    name: str
    tasks: tuple[str, ...]
    fit: Callable[[DataBundle, Metric], dict[str, float]]
    description: str = ""


@dataclass
class TrialEvent:
    """Sent to ``on_trial_start`` and ``on_trial_end``."""

    study_name: str
    study_dir: str
    number: int
    params: dict[str, Any]
    config: dict[str, Any] | None = None
    state: str = "RUNNING"
    value: float | None = None
    duration_s: float | None = None
    error: str | None = None


@dataclass
class EpochEvent:
    """Sent to ``on_epoch_end`` after each validated epoch of a trial."""

    study_name: str
    study_dir: str
    number: int
    epoch: int
    train_loss: float
    value: float
    metric: str


@dataclass
class StudyEvent:
    """Sent to ``on_study_end`` when a search or resume finishes."""

    study_name: str
    study_dir: str
    n_complete: int
    best_value: float | None
    best_params: dict[str, Any] | None
    reason: str = "finished"


def map_inputs(inputs: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to a tensor, or to every tensor of a mapping or tuple of inputs.

    Public as :func:`automl.data.map_inputs`. Example: ``map_inputs(x, lambda t: t[:8])``
    takes the first 8 rows of a tensor or of every tensor in a mapping.
    """
    import torch

    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {k: fn(v) for k, v in inputs.items()}
    if isinstance(inputs, Sequence):
        return type(inputs)(fn(v) for v in inputs)
    raise TypeError(f"unsupported inputs type {type(inputs).__name__}")


def call_model(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Call ``model`` the way :class:`Split` documents: ``model(x)`` or ``model(**inputs)``
    (``model(*inputs)`` for a tuple). Public as :func:`automl.data.call_model`."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)
