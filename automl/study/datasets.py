"""Loading a study's dataset: the per-process cache, the consistency checks every search runs,
and the data fingerprint."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch

from automl.errors import UserError
from automl.types import TASKS, DataBundle, Dataset, Split, StreamSplit, map_inputs

_CACHE: dict[str, DataBundle] = {}
SPLITS = ("train", "val", "test")
STREAM_ROWS = 200  # items read per streamed split by the checks


def _key(plugin: str, dataset: Dataset, path: str | None, options: dict[str, Any], seed: int) -> str:
    return json.dumps([plugin, dataset.name, path, options, seed], sort_keys=True, default=str)


def load_data(plugin: str, dataset: Dataset, path: str | None, options: dict[str, Any],
              seed: int, check: bool = True) -> DataBundle:
    """Load a dataset once per process; later trials in the same worker reuse it.

    With ``check`` (a search), splits that disagree (rows, shapes, dtypes, labels; see
    :func:`check_bundle`) are a :class:`UserError` naming the plugin, the dataset and the split,
    raised before anything is written."""
    key = _key(plugin, dataset, path, options, seed)
    if key in _CACHE:
        return _CACHE[key]
    if dataset.needs_path and not path:
        raise UserError(f"dataset {dataset.name!r} needs --data PATH")
    try:
        bundle = dataset.load(path, dict(options), seed)
    except UserError:
        raise
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise UserError(f"dataset {dataset.name!r}: {exc.strerror or exc}: {exc.filename or path}") from None
    if not isinstance(bundle, DataBundle):
        raise TypeError(f"dataset {dataset.name!r} load() returned {type(bundle).__name__}, not DataBundle")
    for name in ("train", "val", "test"):
        split = bundle.split(name)
        if not isinstance(split, (Split, StreamSplit)) or len(split) == 0:
            raise UserError(f"dataset {dataset.name!r}: the {name} split is empty")
    if bundle.info.task == "regression" and bundle.info.target_std is None and isinstance(bundle.train, Split):
        y = bundle.train.targets.double()
        std = float(y.std()) if len(y) > 1 else 1.0
        bundle.info = bundle.info.replace(target_mean=float(y.mean()),
                                          target_std=std if math.isfinite(std) and std > 0 else 1.0)
    if check:
        try:
            problems, _ = check_bundle(bundle)
        except ValueError as exc:
            problems = [str(exc)]
        if problems:
            raise UserError(f"plugin {plugin!r}, dataset {dataset.name!r}: {problems[0]}"
                            + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else "")
                            + f"; fix the dataset's loader (automl plugins check {plugin} lists every check)")
    _CACHE[key] = bundle
    return bundle


def fingerprint(bundle: DataBundle) -> str:
    """A hash of the loaded splits' contents; resume warns when the data changed."""
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        split = bundle.split(name)
        h.update(name.encode())
        if isinstance(split, Split):
            for t in _tensor_list(split.inputs) + [split.targets]:
                h.update(str(tuple(t.shape)).encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(str(len(split)).encode())
    h.update(json.dumps(bundle.state, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _tensor_list(inputs: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    map_inputs(inputs, lambda t: out.append(t) or t)
    return out


def input_tensors(inputs: Any) -> dict[str, torch.Tensor]:
    """The input tensors of a split by name (``x`` for a single tensor)."""
    if isinstance(inputs, torch.Tensor):
        return {"x": inputs}
    out: dict[str, torch.Tensor] = {}
    keys = list(inputs.keys()) if isinstance(inputs, Mapping) else list(range(len(inputs)))
    for key in keys:
        value = inputs[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"input {key!r} is a {type(value).__name__}, not a tensor")
        out[str(key)] = value
    return out


def stream_sample(split: StreamSplit, n: int = STREAM_ROWS) -> tuple[list[Any], list[torch.Tensor]]:
    xs, ys = [], []
    for i in range(min(n, len(split))):
        item = split.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"item {i} of a streamed split is not an (inputs, target) pair")
        xs.append(item[0])
        ys.append(torch.as_tensor(item[1]))
    return xs, ys


def check_bundle(bundle: DataBundle) -> tuple[list[str], str]:
    """Rows, structure, shapes, dtypes and labels of the three splits: the problems found (each
    naming its split) and a description of the inputs. A search refuses a dataset with a
    problem before anything is written; the conformance kit reports them."""
    info = bundle.info
    problems: list[str] = []
    try:
        json.dumps(asdict(info))
    except (TypeError, ValueError) as exc:
        problems.append(f"DataInfo is not JSON-able: {exc}")
    try:
        json.dumps(bundle.state)
    except (TypeError, ValueError) as exc:
        problems.append(f"DataBundle.state is not JSON-able: {exc}")
    if info.task not in TASKS:
        problems.append(f"DataInfo.task {info.task!r} is not one of {', '.join(TASKS)}")
    if info.task == "classification":
        if not isinstance(info.num_classes, int) or info.num_classes < 2:
            problems.append(f"classification needs DataInfo.num_classes >= 2, not {info.num_classes!r}")
        elif info.class_names is not None and len(info.class_names) != info.num_classes:
            problems.append(f"{len(info.class_names)} class_names for {info.num_classes} classes")
    layout: dict[str, tuple] = {}
    for name in SPLITS:
        split = getattr(bundle, name)
        if isinstance(split, Split):
            tensors = input_tensors(split.inputs)
            targets = split.targets
            for key, t in tensors.items():
                if t.shape[0] != len(targets):
                    problems.append(f"{name}: input {key!r} has {t.shape[0]} rows for {len(targets)} targets")
            if isinstance(split.inputs, torch.Tensor) and info.input_shape is not None \
                    and tuple(split.inputs.shape[1:]) != tuple(info.input_shape):
                problems.append(f"{name}: examples have shape {tuple(split.inputs.shape[1:])}, "
                                f"DataInfo.input_shape says {tuple(info.input_shape)}")
            layout[name] = tuple((k, t.dim(), t.dtype) for k, t in tensors.items()) + (
                ("target", targets.dim(), targets.dtype),)
        else:
            xs, ys = stream_sample(split, 8)
            targets = torch.stack(ys) if ys else torch.zeros(0)
            first = input_tensors(xs[0])
            layout[name] = tuple((k, t.dim() + 1, t.dtype) for k, t in first.items()) + (
                ("target", targets.dim(), targets.dtype),)
        problems += _target_problems(name, info, targets)
    if len(set(layout.values())) > 1:
        problems.append("splits differ in inputs (names, dimensions or dtypes): " +
                        "; ".join(f"{n}: {_fmt_layout(v)}" for n, v in layout.items()))
    return problems, f"inputs {_fmt_layout(layout.get('train', ()))}"


def _fmt_layout(layout: tuple) -> str:
    return ", ".join(f"{key}:{str(dtype).replace('torch.', '')}[{ndim}d]" for key, ndim, dtype in layout)


def _target_problems(name: str, info: Any, y: torch.Tensor) -> list[str]:
    if info.task == "classification":
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            return [f"{name}: classification targets are {y.dtype}, not integer class indices"]
        if y.dim() != 1:
            return [f"{name}: classification targets have shape {tuple(y.shape)}, not (N,)"]
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or (isinstance(info.num_classes, int) and hi >= info.num_classes):
            return [f"{name}: labels span {lo}..{hi}, outside 0..{(info.num_classes or 0) - 1} "
                    f"(num_classes={info.num_classes})"]
    elif info.task == "regression":
        if not y.is_floating_point():
            return [f"{name}: regression targets are {y.dtype}, not floating point"]
        if not bool(torch.isfinite(y).all()):
            return [f"{name}: regression targets contain NaN or infinity"]
    return []
