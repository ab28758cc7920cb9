"""Models out of a study or an export folder: what ``automl predict``, ``automl export`` and the
report share.

- :class:`Artifact`: one trained model - a torch module or an :class:`automl.ArrayModel` - with
  everything needed to rebuild it with its plugin and feed it new data (config, data
  description, fitted preprocessing, dataset options).
- :class:`EnsembleArtifact`: the members of a study's ensemble (artifacts) and their weights.

:func:`load` picks what a source holds: an export folder (of one model or of an ensemble), or a
study - its final model (the ensemble where it has one, else its best trial), or ``--trial N``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.errors import UserError
from automl.types import DataInfo, Dataset, SearchSpace

FORMAT, ENSEMBLE_FORMAT = "automl-export/1", "automl-ensemble/1"
WEIGHTS, ARRAY_DIR = "model.safetensors", "model"
#: The portable formats of an export folder, in the order :func:`load_portable` tries them.
PORTABLE = ("model.pt2", "model.torchscript.pt")


def _portable_model(module: Any, names: list[str]) -> Any:
    """A portable model (positional tensors, in the export's ``inputs`` order) as the module a
    plugin's predict expects: called with a tensor, positional tensors or named inputs
    (``model(**inputs)``); ``eval()`` and ``train()`` leave it as exported (an exported
    program has no modes and refuses them)."""
    from torch import nn

    class PortableModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def train(self, mode: bool = True) -> PortableModel:
            self.training = mode
            return self

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.inner(*args, *[kwargs[n] for n in names if n in kwargs])

    return PortableModel()


def load_portable(folder: str | Path) -> Any:
    """The model of an export folder from its portable file alone, without its plugin:
    ``model.pt2`` (``torch.export.load(...).module()``), else ``model.torchscript.pt``
    (``torch.jit.load``, whose deprecation warning torch prints is silenced here). A
    :class:`UserError` when the folder has neither."""
    import warnings

    import torch

    folder = Path(folder)
    if (folder / PORTABLE[0]).is_file():
        return torch.export.load(str(folder / PORTABLE[0])).module()
    if (folder / PORTABLE[1]).is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 deprecates TorchScript
            return torch.jit.load(str(folder / PORTABLE[1]), map_location="cpu").eval()
    raise UserError(f"{folder} has no portable model ({' or '.join(PORTABLE)}); export it again")


@dataclass
class Artifact:
    """A trained model with everything needed to rebuild it and feed it new data.
    ``model_path``: the stored model (a state_dict file, safetensors in an export, or an
    :class:`automl.ArrayModel` folder)."""

    source: str
    plugin_name: str
    dataset: Dataset
    space: SearchSpace
    spec: dict[str, Any]
    number: int
    value: float | None
    test_value: float | None
    config: dict[str, Any]
    info: DataInfo
    state: dict[str, Any]
    options: dict[str, Any]
    model_path: Path
    params: dict[str, Any]

    def model(self) -> Any:
        """The model, built with the plugin's builder and loaded from ``model_path``; an
        export folder without its weights gives its portable model (:func:`load_portable`)."""
        from torch import nn

        from automl.training import build_model, load_model

        if not self.model_path.exists() and any((self.model_path.parent / f).is_file() for f in PORTABLE):
            # an export folder with its portable model only (the weights left behind)
            names = [i["name"] for i in read_json(self.model_path.parent / "config.json").get("inputs") or []]
            module = load_portable(self.model_path.parent)
            return _portable_model(module, names)
        model = build_model(self.space, self.config["model"], self.info)
        if not self.model_path.exists():
            raise UserError(f"{self.model_path} is missing")
        try:
            if isinstance(model, nn.Module) and self.model_path.suffix == ".safetensors":
                from safetensors.torch import load_file

                model.load_state_dict(load_file(str(self.model_path)))
            else:
                load_model(model, self.model_path)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file, or weights of another build
            raise UserError(f"{self.source}: the stored model does not load into the model the plugin builds now "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        return model.eval() if isinstance(model, nn.Module) else model


@dataclass
class EnsembleArtifact:
    """A study's ensemble: its members and their weights (summing to 1)."""

    source: str
    members: list[tuple[Artifact, float]]
    record: dict[str, Any]

    @property
    def dataset(self) -> Dataset:
        """The dataset of the members (all share it)."""
        return self.members[0][0].dataset

    @property
    def plugin_name(self) -> str:
        """The plugin of the members."""
        return self.members[0][0].plugin_name


def data_info(data: dict[str, Any]) -> DataInfo:
    """A :class:`DataInfo` from its JSON form."""
    data = dict(data)
    if data.get("input_shape") is not None:
        data["input_shape"] = tuple(data["input_shape"])
    known = DataInfo.__dataclass_fields__
    return DataInfo(**{k: v for k, v in data.items() if k in known})


def plugin_paths_of(spec: dict[str, Any], source: str, given: list[str] | None = None) -> list[str]:
    """The ``--plugin-path`` files a stored model's plugin loads from: ``given`` (the user's
    ``--plugin-path``, for a plugin file that moved), else the ones the spec stored; a
    :class:`UserError` naming a stored path that no longer exists."""
    if given:
        return [str(Path(p).resolve()) for p in given]
    paths = list(spec.get("plugin_paths") or [])
    for path in paths:
        if Path(path).is_absolute() and not Path(path).exists():
            raise UserError(f"{source} was made with --plugin-path {path}, which no longer exists; "
                            "pass --plugin-path with its new location")
    return paths


def resolve_model(spec: dict[str, Any], space_name: str, source: str,
                  plugin_paths: list[str] | None = None) -> tuple[Dataset, SearchSpace, Any]:
    """The dataset, space and plugin a stored model needs, loaded from the spec's plugin only
    (and its ``--plugin-path``, which the spec keeps; ``plugin_paths`` replaces it)."""
    from automl.plugins import load_registry

    paths = plugin_paths_of(spec, source, plugin_paths)
    registry = load_registry(paths, only={spec["plugin"]})
    plugin = registry.plugins.get(spec["plugin"])
    if plugin is None or not plugin.ok:
        raise UserError(f"{source} needs plugin {spec['plugin']!r}, which is not installed or broken "
                        f"(see: automl plugins)")
    if spec["dataset"] not in plugin.datasets:
        raise UserError(f"{source}: plugin {spec['plugin']!r} has no dataset {spec['dataset']!r} any more")
    if space_name not in plugin.spaces:
        raise UserError(f"{source}: plugin {spec['plugin']!r} has no space {space_name!r} any more")
    return plugin.datasets[spec["dataset"]], plugin.spaces[space_name], plugin


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of an export or study folder; a :class:`UserError` when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None


def is_export(folder: Path) -> bool:
    """Whether ``folder`` is an ``automl export`` folder (of one model or of an ensemble)."""
    return folder.is_dir() and ((folder / "config.json").is_file() or (folder / "ensemble.json").is_file()) \
        and not (folder / "study.db").exists()


def load(source: str, trial: int | None = None, single: bool = False,
         plugin_paths: list[str] | None = None) -> Artifact | EnsembleArtifact:
    """What ``source`` holds: an export folder, or study ``source``'s final model - its
    ensemble where it has one (unless ``single``), else its best trial - or trial ``trial``."""
    folder = Path(source)
    if is_export(folder):
        if trial is not None:
            raise UserError("--trial applies to a study, not to an export folder")
        if (folder / "ensemble.json").is_file():
            return _ensemble_from_dir(folder, plugin_paths)
        return _from_dir(folder, plugin_paths)
    if trial is None and not single:
        ensemble = _ensemble_of_study(source, plugin_paths)
        if ensemble is not None:
            return ensemble
    return from_study(source, trial, plugin_paths)


def load_artifact(source: str, trial: int | None = None) -> Artifact:
    """One model: of an export folder of one model, or of a study (its best trial, or trial
    ``trial`` when its model was kept)."""
    found = load(source, trial, single=True)
    if isinstance(found, EnsembleArtifact):
        raise UserError(f"{source} is an ensemble export: give one of its members/ folders")
    return found


def _from_dir(folder: Path, plugin_paths: list[str] | None = None) -> Artifact:
    cfg = read_json(folder / "config.json")
    if cfg.get("format") != FORMAT:
        raise UserError(f"{folder} is not an automl export folder (config.json has no format {FORMAT!r})")
    state = read_json(folder / "preprocessing.json") if (folder / "preprocessing.json").exists() else {}
    spec = cfg["spec"]
    dataset, space, _ = resolve_model(spec, cfg["config"]["space"], str(folder), plugin_paths)
    path = folder / ARRAY_DIR if (folder / ARRAY_DIR).is_dir() else folder / WEIGHTS
    return Artifact(str(folder), spec["plugin"], dataset, space, spec, cfg["number"], cfg.get("value"),
                    cfg.get("test_value"), cfg["config"], data_info(cfg["info"]), state, cfg.get("options", {}),
                    path, dict(cfg.get("params") or {}))


def _ensemble_from_dir(folder: Path, plugin_paths: list[str] | None = None) -> EnsembleArtifact:
    record = read_json(folder / "ensemble.json")
    if record.get("format") != ENSEMBLE_FORMAT:
        raise UserError(f"{folder} is not an automl ensemble export (ensemble.json has no format {ENSEMBLE_FORMAT!r})")
    members = [(_from_dir(folder / "members" / str(n), plugin_paths), float(w))
               for n, w in record["members"].items()]
    return EnsembleArtifact(str(folder), members, record)


def _ensemble_of_study(name: str, plugin_paths: list[str] | None = None) -> EnsembleArtifact | None:
    from automl.study.store import ENSEMBLE_KEY, open_ref

    study = open_ref(name).load()
    record = study.user_attrs.get(ENSEMBLE_KEY)
    if not record or len(record.get("members") or {}) < 2:
        return None
    refit = set(record.get("refit") or ())  # members the search refit on train + validation
    members = [(from_study(name, int(n), plugin_paths, refit=int(n) in refit), float(w))
               for n, w in record["members"].items()]
    return EnsembleArtifact(f"study {name!r} ensemble", members, record)


def from_study(name: str, trial: int | None, plugin_paths: list[str] | None = None, refit: bool = False) -> Artifact:
    """A study's best trial (its model as handed back: refit on train + validation where the
    search refit it), or trial ``trial`` when its model was kept (as its trial trained it; with
    ``refit``, its refit model, for an ensemble's members)."""
    from optuna.trial import TrialState

    from automl.study.artifacts import fetch_study, refit_model, saved_model
    from automl.study.store import TEST_KEY, open_ref, spec_of

    ref = open_ref(name)
    study = ref.load()
    spec = spec_of(study)
    fetch_study(study, ref.dir, [trial] if trial is not None else [])  # from its --artifacts store, if missing here
    best_file = ref.dir / "best" / "config.json"
    best = read_json(best_file) if best_file.exists() else None
    number = trial if trial is not None else (best or {}).get("number")
    if number is None:
        raise UserError(f"study {name!r} has no best model yet (no trial completed); run or resume it first")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise UserError(f"study {name!r} has no trial {number}; it has trials 0 to {max(trials, default=-1)}")
    t = trials[number]
    if t.state != TrialState.COMPLETE:
        raise UserError(f"trial {number} of study {name!r} is {t.state.name}, not COMPLETE: it has no model")
    source = f"study {name!r} trial {number}"
    is_best = best is not None and best.get("number") == number
    # best/ holds the handed-back model: the refit one where the search refit it, which
    # ``--trial N`` (the trial's own model) does not mean.
    stored = saved_model(ref.dir / "best") if is_best and (trial is None or not best.get("refit")) else None
    test_value = study.user_attrs.get(TEST_KEY, {}).get(str(number))
    if stored is None and refit:
        stored = refit_model(ref.dir, number)
    elif is_best and best.get("refit") and stored is None:
        test_value = best["refit"].get("trial_test_value")
    if stored is not None and is_best:
        config, info, state = best["config"], data_info(best["info"]), best.get("data_state", {})
    elif stored is not None:
        config, info, state = t.user_attrs["config"], None, None
    else:
        stored = saved_model(ref.trial_dir(number))
        if stored is None:
            kept = sorted(n for n in trials if saved_model(ref.trial_dir(n)) is not None)
            raise UserError(f"the model of trial {number} of study {name!r} was not kept (only the best few "
                            f"trials keep theirs); trials with a model: {', '.join(map(str, kept)) or 'none'}")
        config = t.user_attrs["config"]
        info, state = None, None
    dataset, space, _ = resolve_model(spec, config["space"], source, plugin_paths)
    if info is None:
        data = prepared_data(spec, dataset, space, config)
        info, state = data.info, data.state
    value = t.values[0] if t.values else None  # a multi-objective trial: its primary objective
    return Artifact(source, spec["plugin"], dataset, space, spec, number, value, test_value,
                    config, info, state, dict(spec.get("options") or {}), stored, dict(t.params))


def raw_data(spec: dict[str, Any], dataset: Dataset) -> Any:
    """The study's data, loaded as the search loaded it."""
    from automl.study.datasets import load_data

    return load_data(spec["plugin"], dataset, spec.get("data_path"), spec.get("options") or {}, spec["seed"])


def prepared_data(spec: dict[str, Any], dataset: Dataset, space: SearchSpace, config: dict[str, Any]) -> Any:
    """The study's data, loaded as the search loaded it and prepared for ``config``."""
    data = raw_data(spec, dataset)
    return space.prepare(data, config) if space.prepare else data
