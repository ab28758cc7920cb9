"""``automl export NAME --out DIR``: a study's model as a self-describing folder.

The folder of one model::

    DIR/model.safetensors      a torch module's weights (a state_dict; no pickle), or
    DIR/model/                 an ArrayModel saved in its library's own format (no pickle)
    DIR/model.pt2              torch.export program, loads with plain torch.export.load (no automl
                               needed): the portable format, written by default
    DIR/model.torchscript.pt   TorchScript, only with --torchscript (torch deprecates it)
    DIR/model.onnx             ONNX, only with --onnx and the ``onnx`` extra installed
    DIR/config.json            plugin, dataset, space, trial, value, params, config, DataInfo,
                               the dataset options, a description of the model's inputs and
                               the deployment figures the search measured (``deploy``)
    DIR/preprocessing.json     the fitted preprocessing (vocabulary, normalisation, categories)
    DIR/reproducibility.json   seeds, automl / plugin / torch versions, data fingerprint, command
    DIR/README.md              how to load it, with and without automl

The folder of an ensemble (the study's final model where it has one)::

    DIR/ensemble.json          the members (trial numbers) and their weights, and the scores
    DIR/members/N/             each member as the folder of one model, above
    DIR/README.md

``automl predict DIR --data PATH`` rebuilds each model with the plugin's own builder, so
predictions run through the plugin's loader and preprocessing; an ensemble's predictions are
its members' weighted average.
"""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl._version import __version__
from automl.errors import UserError
from automl.output.artifact import (
    ARRAY_DIR,
    ENSEMBLE_FORMAT,
    FORMAT,
    WEIGHTS,
    Artifact,
    EnsembleArtifact,
    is_export,
    load,
    raw_data,
)
from automl.types import Split, map_inputs

SCRIPTED, ONNX, PROGRAM = "model.torchscript.pt", "model.onnx", "model.pt2"


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
        """The model's output for its named inputs, given in ``names`` order."""
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


def _check_same(model: nn.Module, other: Any, args: tuple[torch.Tensor, ...], what: str) -> None:
    """``other`` gives the model's outputs on ``args`` and on a batch one smaller."""
    for sub in (args, tuple(a[:max(1, len(a) - 1)] for a in args)):
        with torch.inference_mode():
            want, got = model(*sub), other(*sub)
        if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"the {what} model's outputs differ from the model's (data-dependent control flow)")


def _program(model: nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export with ``torch.export`` (the batch dimension dynamic), check the exported program
    against the model on two batch sizes, and save it as ``.pt2``."""
    batch = torch.export.Dim("batch", min=1)
    shapes: tuple[Any, ...] = tuple({0: batch} for _ in args)
    if isinstance(model, Positional):  # forward(*tensors): one parameter holding every tensor
        shapes = (shapes,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, args, dynamic_shapes=shapes)
    _check_same(model, program.module(), args, "exported")
    torch.export.save(program, str(path))


def _script(model: nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> None:
    """Trace to TorchScript and check the traced model against the model on another batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, args, check_trace=False)
        _check_same(model, traced, args, "traced")
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


def stored_figures(name: str, number: int) -> dict[str, Any] | None:
    """The deployment figures the search measured for trial ``number`` of study ``name``
    (latency, size, parameters: see docs/deployment.md), kept in the export's config.json."""
    from automl.study.store import open_ref

    for t in open_ref(name).load().get_trials(deepcopy=False):
        if t.number == number:
            return (t.user_attrs.get("run") or {}).get("deploy")
    return None


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


def export(name: str, out: str, trial: int | None = None, onnx: bool = False,
           single: bool = False, torchscript: bool = False,
           plugin_paths: list[str] | None = None) -> dict[str, Any]:
    """Write study ``name``'s final model (its ensemble where it has one, else its best trial;
    ``single``: the best trial; ``trial``: that trial) to folder ``out``.

    Returns ``{"dir", "files", "notes", "trial"}`` (``trial`` is ``"ensemble"`` for an
    ensemble); a format the model does not allow is skipped with a note. ``model.pt2``
    (``torch.export``) is always tried; ``torchscript`` and ``onnx`` add those formats.
    """
    if is_export(Path(name)):
        raise UserError(f"{name} is an export folder; export takes a study name")
    found = load(name, trial, single, plugin_paths)
    target = Path(out)
    earlier = (target / "config.json").exists() or (target / "ensemble.json").exists()
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not earlier)):
        raise UserError(f"--out {out} exists and is not an empty folder or an earlier export")
    if not target.parent.is_dir():
        raise UserError(f"--out {out}: folder {target.parent} does not exist")
    if earlier:
        shutil.rmtree(target)
    if isinstance(found, EnsembleArtifact):
        return _export_ensemble(name, found, target, onnx, torchscript, plugin_paths)
    target.mkdir()
    files, notes = _export_one(name, found, target, onnx, torchscript, plugin_paths)
    return {"dir": str(target.resolve()), "files": files, "notes": notes, "trial": found.number}


def _export_ensemble(name: str, ens: EnsembleArtifact, target: Path, onnx: bool,
                     torchscript: bool = False, plugin_paths: list[str] | None = None) -> dict[str, Any]:
    target.mkdir()
    notes: list[str] = []
    for art, _weight in ens.members:
        folder = target / "members" / str(art.number)
        folder.mkdir(parents=True)
        _, member_notes = _export_one(name, art, folder, onnx, torchscript, plugin_paths)
        notes += [f"member {art.number}: {n}" for n in member_notes]
    record = {"format": ENSEMBLE_FORMAT, "study": name, "plugin": ens.plugin_name, "dataset": ens.dataset.name,
              "members": {str(a.number): w for a, w in ens.members},
              **{k: ens.record.get(k) for k in ("metric", "direction", "val_value", "test_value", "val_loss",
                                                "deploy")}}
    (target / "ensemble.json").write_text(json.dumps(record, indent=2) + "\n")
    (target / "README.md").write_text(_ensemble_readme(name, record))
    return {"dir": str(target.resolve()), "files": ["ensemble.json", "members/", "README.md"], "notes": notes,
            "trial": "ensemble"}


def _export_one(name: str, art: Artifact, target: Path, onnx: bool,
                torchscript: bool = False, plugin_paths: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Write one model's export folder into ``target`` (which exists); the files and notes."""
    import optuna
    from torch import nn

    from automl.study.datasets import fingerprint
    from automl.study.spec import trial_seed

    model = art.model()
    notes: list[str] = []
    inputs: list[dict[str, Any]] = []
    fingerprint_now = None
    if isinstance(model, nn.Module):
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
                  str(target / WEIGHTS), metadata={"format": FORMAT, "study": name, "trial": str(art.number)})
        files = [WEIGHTS]
    else:
        shutil.copytree(art.model_path, target / ARRAY_DIR)
        files = [ARRAY_DIR + "/"]
        notes.append("no model.pt2/TorchScript/ONNX: the model is not a torch module (it is stored in its library's "
                     "format)")
    try:
        raw = raw_data(art.spec, art.dataset)
        fingerprint_now = fingerprint(raw)
        data = art.space.prepare(raw, art.config) if art.space.prepare else raw
        wrapped, args, names = _as_args(model, example_inputs(data.test)) if isinstance(model, nn.Module) \
            else (None, (), [])
        inputs = _describe(args, names)
    except UserError as exc:
        notes.append(f"no model.pt2/TorchScript/ONNX: the study's data could not be loaded for an example batch "
                     f"({exc})")
        wrapped = None
    for wanted, fname, fn in ((True, PROGRAM, lambda p: _program(wrapped, args, p)),
                              (torchscript, SCRIPTED, lambda p: _script(wrapped, args, p)),
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
              "options": art.options, "inputs": inputs, "spec": spec,
              "deploy": stored_figures(name, art.number)}
    from automl.output.artifact import plugin_paths_of
    from automl.plugins import load_registry

    paths = plugin_paths_of(spec, name, plugin_paths)
    plugin = load_registry(paths, only={art.plugin_name}).plugins.get(art.plugin_name)
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
    (target / "README.md").write_text(_readme(name, art.number, inputs, [f for f in (PROGRAM, SCRIPTED) if f in files],
                                              art.dataset.predict_new is not None))
    files.append("README.md")
    return files, notes


def _ensemble_readme(name: str, record: dict[str, Any]) -> str:
    members = ", ".join(f"trial {n} (weight {w:.3f})" for n, w in record["members"].items())
    return "\n".join([
        f"# Ensemble of study {name}", "",
        f"{len(record['members'])} members, weighted: {members}.",
        f"Validation {record.get('metric')}: {record.get('val_value')}; test: {record.get('test_value')}.", "",
        "Predict with automl (each member runs the plugin's own loader and preprocessing; the",
        "predictions are averaged with the weights):", "",
        "    automl predict THIS_FOLDER --data PATH --out predictions.csv", "",
        "Each member is a complete export of one model in members/N/ (see its README).", ""])


def _readme(name: str, number: int, inputs: list[dict[str, Any]], portable: list[str], predicts: bool) -> str:
    args = ", ".join(i["name"] for i in inputs) or "x"
    lines = [f"# Model of study {name}, trial {number}", ""]
    if predicts:
        lines += ["Predict with automl (runs the plugin's own loader and preprocessing):", "",
                  "    automl predict THIS_FOLDER --data PATH --out predictions.csv", ""]
    else:
        lines += ["Its dataset reads no new data, so `automl predict` does not apply to it: feed the model",
                  "inputs prepared as preprocessing.json describes (below).", ""]
    if PROGRAM in portable:
        lines += ["Without automl (plain PyTorch, torch.export):", "", "    import torch",
                  f"    model = torch.export.load('{PROGRAM}').module()", f"    output = model({args})", ""]
    if SCRIPTED in portable:
        lines += ["TorchScript (deprecated by torch; loads with a FutureWarning):", "", "    import torch",
                  f"    model = torch.jit.load('{SCRIPTED}')", f"    output = model({args})", ""]
    if portable:
        lines += ["Inputs (preprocessed as described in preprocessing.json; the first dimension is the batch):", ""]
        lines += [f"- `{i['name']}`: {i['dtype']} of shape {tuple(i['shape'])}" for i in inputs]
    return "\n".join(lines) + "\n"
