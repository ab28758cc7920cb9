"""Loading a study's dataset: validation, the per-process cache and the data fingerprint."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import torch

from automl.errors import UserError
from automl.types import DataBundle, Dataset, Split, StreamSplit, map_inputs

_CACHE: dict[str, DataBundle] = {}


def _key(plugin: str, dataset: Dataset, path: str | None, options: dict[str, Any], seed: int) -> str:
    return json.dumps([plugin, dataset.name, path, options, seed], sort_keys=True, default=str)


def load_data(plugin: str, dataset: Dataset, path: str | None, options: dict[str, Any],
              seed: int) -> DataBundle:
    """Load a dataset once per process; later trials in the same worker reuse it."""
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
    _CACHE[key] = bundle
    return bundle


def fingerprint(bundle: DataBundle) -> str:
    """A hash of the loaded splits' contents; resume warns when the data changed."""
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        split = bundle.split(name)
        h.update(name.encode())
        if isinstance(split, Split):
            for t in _tensors(split.inputs) + [split.targets]:
                h.update(str(tuple(t.shape)).encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(str(len(split)).encode())
    h.update(json.dumps(bundle.state, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _tensors(inputs: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    map_inputs(inputs, lambda t: out.append(t) or t)
    return out
