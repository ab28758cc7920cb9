"""Models out of a study: :func:`load_artifact` (what ``predict`` and ``export`` share) and
:func:`export` (``automl export NAME --out DIR``).

An export folder is self-describing::

    DIR/model.safetensors      the weights (a state_dict; no pickle)
    DIR/model.torchscript.pt   TorchScript, loads with plain torch.jit.load (no automl needed)
    DIR/model.onnx             ONNX, only with --onnx and the ``onnx`` extra installed
    DIR/config.json            plugin, dataset, space, trial, value, params, config, DataInfo,
                               the dataset options and a description of the model's inputs
    DIR/preprocessing.json     the fitted preprocessing (vocabulary, normalisation, categories)
    DIR/reproducibility.json   seeds, automl / plugin / torch versions, data fingerprint, command
    DIR/README.md              how to load it, with and without automl

``automl predict DIR --data PATH`` rebuilds the model from ``model.safetensors`` with the
plugin's own builder, so predictions run through the plugin's loader and preprocessing.
"""

from __future__ import annotations

import json
import platform
import shlex
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl._version import __version__
from automl.errors import UserError
from automl.types import DataInfo, Dataset, SearchSpace, Split, map_inputs

FORMAT = "automl-export/1"
WEIGHTS, SCRIPTED, ONNX = "model.safetensors", "model.torchscript.pt", "model.onnx"


@dataclass
class Artifact:
    """A trained model with everything needed to rebuild it and feed it new data."""

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
    weights: dict[str, torch.Tensor]
    params: dict[str, Any]

    def model(self) -> nn.Module:
        """The model, built with the plugin's builder and loaded with the weights."""
        from automl.training import build_model

        model = build_model(self.space, self.config["model"], self.info)
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as exc:
            raise UserError(f"{self.source}: the weights do not fit the model the plugin builds now "
                            f"({str(exc).splitlines()[0]})") from None
        return model.eval()


def _info(data: dict[str, Any]) -> DataInfo:
    data = dict(data)
    if data.get("input_shape") is not None:
        data["input_shape"] = tuple(data["input_shape"])
    known = DataInfo.__dataclass_fields__
    return DataInfo(**{k: v for k, v in data.items() if k in known})


def _resolve(spec: dict[str, Any], space_name: str, source: str) -> tuple[Dataset, SearchSpace, Any]:
    from automl.plugins import load_registry

    registry = load_registry(spec.get("plugin_paths") or [])
    plugin = registry.plugins.get(spec["plugin"])
    if plugin is None or not plugin.ok:
        raise UserError(f"{source} needs plugin {spec['plugin']!r}, which is not installed or broken "
                        f"(see: automl plugins)")
    if spec["dataset"] not in plugin.datasets:
        raise UserError(f"{source}: plugin {spec['plugin']!r} has no dataset {spec['dataset']!r} any more")
    if space_name not in plugin.spaces:
        raise UserError(f"{source}: plugin {spec['plugin']!r} has no space {space_name!r} any more")
    return plugin.datasets[spec["dataset"]], plugin.spaces[space_name], plugin


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise UserError(f"{path} is missing")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is the user's to fix
        raise UserError(f"{path}: not readable weights ({type(exc).__name__}: {exc})") from None


def load_artifact(source: str, trial: int | None = None) -> Artifact:
    """The model of an export folder (``source`` is a folder holding ``config.json``), or of
    study ``source``: its best trial, or trial ``trial`` when its weights were kept."""
    folder = Path(source)
    if folder.is_dir() and (folder / "config.json").is_file() and not (folder / "study.db").exists():
        if trial is not None:
            raise UserError("--trial applies to a study, not to an export folder")
        return _from_dir(folder)
    return _from_study(source, trial)


def _from_dir(folder: Path) -> Artifact:
    cfg = _read_json(folder / "config.json")
    if cfg.get("format") != FORMAT:
        raise UserError(f"{folder} is not an automl export folder (config.json has no format {FORMAT!r})")
    state = _read_json(folder / "preprocessing.json") if (folder / "preprocessing.json").exists() else {}
    spec = cfg["spec"]
    dataset, space, _ = _resolve(spec, cfg["config"]["space"], str(folder))
    return Artifact(str(folder), spec["plugin"], dataset, space, spec, cfg["number"], cfg.get("value"),
                    cfg.get("test_value"), cfg["config"], _info(cfg["info"]), state, cfg.get("options", {}),
                    _load_weights(folder / WEIGHTS), dict(cfg.get("params") or {}))


def _from_study(name: str, trial: int | None) -> Artifact:
    from optuna.trial import TrialState

    from automl.study.store import open_ref, spec_of

    ref = open_ref(name)
    study = ref.load()
    spec = spec_of(study)
    best_file = ref.dir / "best" / "config.json"
    best = _read_json(best_file) if best_file.exists() else None
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
    if best is not None and best.get("number") == number:
        config, info, state = best["config"], _info(best["info"]), best.get("data_state", {})
        weights = ref.dir / "best" / "model.pt"
    else:
        weights = ref.trial_dir(number) / "model.pt"
        if not weights.exists():
            kept = sorted(n for n in trials if (ref.trial_dir(n) / "model.pt").exists())
            raise UserError(f"the weights of trial {number} of study {name!r} were not kept (only the best few "
                            f"trials keep theirs); trials with weights: {', '.join(map(str, kept)) or 'none'}")
        config = t.user_attrs["config"]
        info, state = None, None
    dataset, space, _ = _resolve(spec, config["space"], source)
    if info is None:
        data = prepared_data(spec, dataset, space, config)
        info, state = data.info, data.state
    tests = study.user_attrs.get("automl:test_values", {})
    return Artifact(source, spec["plugin"], dataset, space, spec, number, t.value, tests.get(str(number)),
                    config, info, state, dict(spec.get("options") or {}), _load_weights(weights), dict(t.params))


def raw_data(spec: dict[str, Any], dataset: Dataset):
    """The study's data, loaded as the search loaded it."""
    from automl.study.datasets import load_data

    return load_data(spec["plugin"], dataset, spec.get("data_path"), spec.get("options") or {}, spec["seed"])


def prepared_data(spec: dict[str, Any], dataset: Dataset, space: SearchSpace, config: dict[str, Any]):
    """The study's data, loaded as the search loaded it and prepared for ``config``."""
    data = raw_data(spec, dataset)
    return space.prepare(data, config) if space.prepare else data


def example_inputs(split: Any, n: int = 4) -> Any:
    """The first ``n`` examples' inputs of a split (for tracing)."""
    if isinstance(split, Split):
        return map_inputs(split.inputs, lambda t: t[:n].cpu())
    items = [split.dataset[i][0] for i in range(min(n, len(split)))]
    return torch.utils.data.default_collate(items)


class Positional(nn.Module):
    """Calls a model that takes named inputs (``model(**inputs)``) with positional tensors in
    a fixed order, so TorchScript and ONNX see plain tensor arguments."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors)))


def _as_args(model: nn.Module, example: Any) -> tuple[nn.Module, tuple[torch.Tensor, ...], list[str]]:
    if isinstance(example, torch.Tensor):
        return model, (example,), ["input"]
    if isinstance(example, dict):
        names = list(example)
        return Positional(model, names), tuple(example[k] for k in names), names
    return model, tuple(example), [f"input{i}" for i in range(len(example))]


def _describe(args: tuple[torch.Tensor, ...], names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "dtype": str(t.dtype).replace("torch.", ""), "shape": ["batch", *t.shape[1:]]}
            for n, t in zip(names, args)]


def _script(model: nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> None:
    """Trace to TorchScript and check the traced model against the model on another batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, args, check_trace=False)
        for sub in (args, tuple(a[:max(1, len(a) - 1)] for a in args)):
            with torch.inference_mode():
                want, got = model(*sub), traced(*sub)
            if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
                raise RuntimeError("the traced model's outputs differ from the model's (data-dependent control flow)")
    traced.save(str(path))


def _onnx(model: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise RuntimeError("the onnx package is not installed: pip install 'automl[onnx]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=names, output_names=["output"],
                          dynamic_axes={n: {0: "batch"} for n in names + ["output"]}, dynamo=False)


def equivalent_command(spec: dict[str, Any]) -> str:
    """The ``automl search`` command that makes a study with this spec."""
    parts = ["automl", "search", "--plugin", spec["plugin"], "--dataset", spec["dataset"]]
    for space in spec.get("spaces") or []:
        parts += ["--space", space]
    parts += ["--metric", spec["metric"]]
    if spec.get("data_path"):
        parts += ["--data", spec["data_path"]]
    for key, value in (spec.get("options") or {}).items():
        if value is not None:
            parts += ["--option", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    parts += ["--trials", str(spec["trials"]), "--sampler", spec["sampler"], "--pruner", spec["pruner"],
              "--seed", str(spec["seed"])]
    for flag, key in (("--timeout", "timeout"), ("--max-epochs", "max_epochs")):
        if spec.get(key) is not None:
            parts += [flag, str(spec[key])]
    return shlex.join(parts)


def export(name: str, out: str, trial: int | None = None, onnx: bool = False) -> dict[str, Any]:
    """Write the model of study ``name`` (its best trial, or ``trial``) to folder ``out``.

    Returns ``{"dir", "files", "notes"}``; a format the model does not allow is skipped with a
    note (TorchScript needs the study's data for an example batch).
    """
    import optuna

    from automl.study.datasets import fingerprint
    from automl.study.spec import trial_seed

    if Path(name).is_dir() and (Path(name) / "config.json").exists():
        raise UserError(f"{name} is an export folder; export takes a study name")
    art = _from_study(name, trial)
    target = Path(out)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / "config.json").exists())):
        raise UserError(f"--out {out} exists and is not an empty folder or an earlier export")
    if not target.parent.is_dir():
        raise UserError(f"--out {out}: folder {target.parent} does not exist")
    model = art.model()
    target.mkdir(exist_ok=True)
    notes: list[str] = []
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
              str(target / WEIGHTS), metadata={"format": FORMAT, "study": name, "trial": str(art.number)})
    files = [WEIGHTS]
    inputs: list[dict[str, Any]] = []
    fingerprint_now = None
    try:
        raw = raw_data(art.spec, art.dataset)
        fingerprint_now = fingerprint(raw)
        data = art.space.prepare(raw, art.config) if art.space.prepare else raw
        wrapped, args, names = _as_args(model, example_inputs(data.test))
        inputs = _describe(args, names)
    except UserError as exc:
        notes.append(f"no TorchScript/ONNX: the study's data could not be loaded for an example batch ({exc})")
        wrapped = None
    for wanted, fname, fn in ((True, SCRIPTED, lambda p: _script(wrapped, args, p)),
                              (onnx, ONNX, lambda p: _onnx(wrapped, args, names, p))):
        if not wanted or wrapped is None:
            continue
        try:
            fn(target / fname)
            files.append(fname)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be traced still exports its weights
            (target / fname).unlink(missing_ok=True)
            notes.append(f"no {fname}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    spec = art.spec
    config = {"format": FORMAT, "study": name, "plugin": art.plugin_name, "dataset": art.dataset.name,
              "space": art.config["space"], "number": art.number, "value": art.value,
              "test_value": art.test_value, "metric": spec["metric"], "direction": spec["direction"],
              "params": art.params, "config": art.config, "info": asdict(art.info),
              "options": art.options, "inputs": inputs, "spec": spec}
    from automl.plugins import load_registry

    plugin = load_registry().plugins.get(art.plugin_name)
    record = {
        "study": name, "trial": art.number,
        "seeds": {"study_seed": spec["seed"], "trial_seed": trial_seed(spec["seed"], art.number),
                  "sampler": spec["sampler"], "pruner": spec["pruner"]},
        "versions": {"automl_at_search": spec.get("automl_version"), "automl_at_export": __version__,
                     "plugin": art.plugin_name, "plugin_at_search": spec.get("plugin_version"),
                     "plugin_at_export": plugin.version if plugin else None, "torch": torch.__version__,
                     "optuna": optuna.__version__, "python": platform.python_version()},
        "data": {"dataset": spec["dataset"], "path": spec.get("data_path"), "options": spec.get("options"),
                 "fingerprint": spec.get("data_fingerprint"), "fingerprint_at_export": fingerprint_now},
        "space_hash": spec.get("space_hash"),
        "command": shlex.join(spec.get("command") or []),
        "equivalent_command": equivalent_command(spec),
    }
    if fingerprint_now and fingerprint_now != spec.get("data_fingerprint"):
        notes.append("the study's data changed since the search (fingerprint differs)")
    for fname, content in (("config.json", config), ("preprocessing.json", art.state),
                           ("reproducibility.json", record)):
        (target / fname).write_text(json.dumps(content, indent=2, default=str) + "\n")
        files.append(fname)
    (target / "README.md").write_text(_readme(name, art.number, inputs, SCRIPTED in files))
    files.append("README.md")
    return {"dir": str(target.resolve()), "files": files, "notes": notes, "trial": art.number}


def _readme(name: str, number: int, inputs: list[dict[str, Any]], scripted: bool) -> str:
    args = ", ".join(i["name"] for i in inputs) or "x"
    lines = [f"# Model of study {name}, trial {number}", "",
             "Predict with automl (runs the plugin's own loader and preprocessing):", "",
             "    automl predict THIS_FOLDER --data PATH --out predictions.csv", ""]
    if scripted:
        lines += ["Without automl (plain PyTorch):", "", "    import torch",
                  f"    model = torch.jit.load('{SCRIPTED}')", f"    output = model({args})", "",
                  "Inputs (preprocessed as described in preprocessing.json):", ""]
        lines += [f"- `{i['name']}`: {i['dtype']} of shape {tuple(i['shape'])}" for i in inputs]
    return "\n".join(lines) + "\n"
