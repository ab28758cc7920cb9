"""Dataset checks: loading, split consistency and overlap between splits."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from automl.study.datasets import load_data
from automl.types import TASKS, DataBundle, Dataset, Split, StreamSplit

SPLITS = ("train", "val", "test")
MAX_ROWS = 20_000  # rows hashed per in-memory split
STREAM_ROWS = 200  # items read per streamed split
SLACK = 2  # shared rows always tolerated: small real datasets have a few exact duplicates


class CheckFailed(Exception):
    """The check found a problem; the message is the reason shown to the author."""


class Skip(Exception):
    """The check cannot run here; the message says why."""


def load(plugin: str, ds: Dataset, path: str | None, options: dict[str, Any], seed: int) -> tuple[str, DataBundle]:
    """Load the dataset as a search would; datasets that need ``--data`` need sample data."""
    if ds.needs_path and path is None:
        raise Skip("needs --data PATH: give sample data (automl plugins check --data "
                   f"{ds.name}=PATH, or check_plugin(sample_data={{{ds.name!r}: PATH}}))")
    if ds.task not in TASKS:
        raise CheckFailed(f"task {ds.task!r} is not one of {', '.join(TASKS)}")
    # As a search loads it: type checks, empty splits, regression target statistics.
    bundle = load_data(plugin, ds, path, dict(options), seed)
    sizes = []
    for name in SPLITS:
        split = getattr(bundle, name)
        if not isinstance(split, (Split, StreamSplit)):
            raise CheckFailed(f"the {name} split is a {type(split).__name__}, not Split or StreamSplit")
        if len(split) == 0:
            raise CheckFailed(f"the {name} split is empty")
        sizes.append(f"{name} {len(split)}")
    return f"{bundle.info.task}: " + ", ".join(sizes), bundle


def _tensors(inputs: Any) -> dict[str, torch.Tensor]:
    """The input tensors of a split by name (``x`` for a single tensor)."""
    if isinstance(inputs, torch.Tensor):
        return {"x": inputs}
    out: dict[str, torch.Tensor] = {}
    keys = list(inputs.keys()) if isinstance(inputs, Mapping) else list(range(len(inputs)))
    for key in keys:
        value = inputs[key]
        if not isinstance(value, torch.Tensor):
            raise CheckFailed(f"input {key!r} is a {type(value).__name__}, not a tensor")
        out[str(key)] = value
    return out


def _stream_sample(split: StreamSplit, n: int = STREAM_ROWS) -> tuple[list[Any], list[torch.Tensor]]:
    xs, ys = [], []
    for i in range(min(n, len(split))):
        item = split.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise CheckFailed(f"item {i} of a streamed split is not an (inputs, target) pair")
        xs.append(item[0])
        ys.append(torch.as_tensor(item[1]))
    return xs, ys


def check_splits(ds: Dataset, bundle: DataBundle) -> str:
    """Rows, structure, shapes, dtypes and labels agree across the three splits."""
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
            tensors = _tensors(split.inputs)
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
            xs, ys = _stream_sample(split, 8)
            targets = torch.stack(ys) if ys else torch.zeros(0)
            first = _tensors(xs[0])
            layout[name] = tuple((k, t.dim() + 1, t.dtype) for k, t in first.items()) + (
                ("target", targets.dim(), targets.dtype),)
        problems += _target_problems(name, info, targets)
    if len(set(layout.values())) > 1:
        problems.append("splits differ in inputs (names, dimensions or dtypes): " +
                        "; ".join(f"{n}: {_fmt_layout(v)}" for n, v in layout.items()))
    if problems:
        raise CheckFailed("; ".join(problems[:4]) + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""))
    return f"inputs {_fmt_layout(layout['train'])}"


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


def _row_hashes(split: Split | StreamSplit) -> list[bytes]:
    """One digest per row (all inputs and the target); a streamed split is sampled."""
    if isinstance(split, StreamSplit):
        xs, ys = _stream_sample(split)
        rows = []
        for x, y in zip(xs, ys):
            h = hashlib.blake2b(digest_size=16)
            for t in list(_tensors(x).values()) + [y]:
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            rows.append(h.digest())
        return rows
    n = min(len(split), MAX_ROWS)
    arrays = []
    for t in list(_tensors(split.inputs).values()) + [split.targets]:
        t = t[:n].detach().cpu()
        if t.layout != torch.strided:
            t = t.to_dense()
        arrays.append(np.ascontiguousarray(t.reshape(n, -1).numpy()).view(np.uint8).reshape(n, -1))
    matrix = np.ascontiguousarray(np.concatenate(arrays, axis=1))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in matrix]


def check_overlap(bundle: DataBundle) -> str:
    """No validation or test row is also a train row (and no test row a validation row),
    beyond what the data's own rate of duplicate rows explains: more than ``SLACK`` shared
    rows and more than 2% + 1.5 x the train split's duplicate rate fails."""
    if bundle.evaluate is not None:
        raise Skip("the dataset has its own evaluate: its split rows need not be distinct examples")
    hashes = {name: _row_hashes(getattr(bundle, name)) for name in SPLITS}
    counts = Counter(hashes["train"])
    dup = sum(c for c in counts.values() if c > 1) / max(1, len(hashes["train"]))
    if dup > 0.6:
        raise Skip(f"{dup:.0%} of train rows are duplicates of other rows: overlap cannot tell a leak")
    limit = 0.02 + 1.5 * dup
    found = []
    train_set, val_set = set(counts), set(hashes["val"])
    for other, against, ref in (("val", "train", train_set), ("test", "train", train_set), ("test", "val", val_set)):
        rows = hashes[other]
        hits = sum(h in ref for h in rows)
        frac = hits / max(1, len(rows))
        if frac > limit and hits > SLACK:
            raise CheckFailed(f"{hits} of {len(rows)} {other} rows ({frac:.1%}) are also {against} rows "
                              f"(same inputs and target); the train split itself has {dup:.1%} duplicate rows, "
                              "so the splits overlap")
        found.append(f"{other}/{against} {hits}")
    return "shared rows: " + ", ".join(found) + f" (train duplicates {dup:.1%})"
