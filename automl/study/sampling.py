"""How a trial's configuration is sampled: the one rule every process, the search's checks
and the conformance kit follow, so that what is checked is what is searched.

- With several spaces the trial first suggests ``space`` (a categorical over their names).
- The space's ``train`` (default :func:`automl.training.suggest_training`) suggests the
  training parameters under their own names: the spaces of a study share them.
- The space's ``define`` suggests the model parameters through a :class:`SpaceTrial`, which
  stores them as ``<space>.<name>``: two spaces may use one name with different choices.
"""

from __future__ import annotations

import json
from typing import Any

from automl.training import fixed_epochs, suggest_training
from automl.types import DataInfo, SearchSpace


class _Named:
    """A trial whose suggest errors name the parameter: Optuna's "CategoricalDistribution does
    not support dynamic value space" does not say which one changed its choices."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    def _suggest(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._trial, kind)(name, *args, **kwargs)
        except ValueError as exc:
            raise ValueError(f"parameter {name!r}: {exc}") from exc

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._suggest("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._suggest("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._suggest("suggest_categorical", name, *args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._trial, attr)


class SpaceTrial:
    """The trial a space's ``define`` sees: each model parameter it suggests is stored in the
    study as ``<space>.<name>`` (``cnn.width``), so that any set of spaces can share one study
    even when two of them use one name with different choices. The space still reads its
    config under its own names. Training parameters (the space's ``train``) stay unprefixed:
    spaces share them (``lr``, ``batch_size``...), so they must agree on their choices."""

    def __init__(self, trial: Any, space: str) -> None:
        self._trial, self._prefix = trial, f"{space}."

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._trial.suggest_float(self._prefix + name, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._trial.suggest_int(self._prefix + name, *args, **kwargs)

    def suggest_categorical(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._trial.suggest_categorical(self._prefix + name, *args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # number, user attrs, report... as the trial has them
        return getattr(self._trial, attr)


def sample_config(spaces: dict[str, SearchSpace], trial: Any, info: DataInfo,
                  epochs: int | None = None) -> dict[str, Any]:
    """Suggest every parameter of ``trial`` and return its config ``{"space", "model",
    "train"}`` in its JSON form (what is stored and what models are built from). ``epochs``:
    the search fixes every trial's epochs (``--max-epochs``, a time budget): not searched."""
    trial = _Named(trial)
    space = next(iter(spaces.values())) if len(spaces) == 1 else \
        spaces[trial.suggest_categorical("space", list(spaces))]
    with fixed_epochs(epochs):
        train_cfg = (space.train or suggest_training)(trial, info)
    if epochs:  # a space that searches epochs itself is still capped
        train_cfg["epochs"] = min(int(train_cfg.get("epochs", 1)), epochs)
    config = {"space": space.name, "model": space.define(SpaceTrial(trial, space.name), info), "train": train_cfg}
    return json.loads(json.dumps(config))


def start_params(spaces: dict[str, SearchSpace], info: DataInfo) -> list[dict[str, Any]]:
    """The trials a search enqueues before it samples, as Optuna parameters: every space's
    ``starts`` (model parameters moved under the space's prefix), and, when several spaces
    share the study, one trial of each space that has none, so every space is tried. Taken
    round-robin over the spaces (each space's first start, then each one's second...): a
    search of few trials tries every space before a second start of any."""
    import optuna

    per_space: list[list[dict[str, Any]]] = []
    for name, space in spaces.items():
        if not space.starts:
            if len(spaces) > 1:
                per_space.append([{"space": name}])
            continue
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        if len(spaces) > 1:
            study.enqueue_trial({"space": name})
        trial = study.ask()
        sample_config(spaces, trial, info)
        prefixed = {p for p in trial.params if p.startswith(f"{name}.")}
        per_space.append([{**{(f"{name}.{k}" if f"{name}.{k}" in prefixed else k): v for k, v in start.items()},
                           **({"space": name} if len(spaces) > 1 else {})} for start in space.starts])
    longest = max((len(x) for x in per_space), default=0)
    return [starts[i] for i in range(longest) for starts in per_space if i < len(starts)]
