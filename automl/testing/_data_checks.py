"""Dataset checks: loading, split consistency and overlap between splits."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import numpy as np
import torch

from automl.study.datasets import SPLITS, check_bundle, input_tensors, load_data, stream_sample
from automl.types import TASKS, DataBundle, Dataset, Split, StreamSplit

MAX_ROWS = 20_000  # rows hashed per in-memory split
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
    bundle = load_data(plugin, ds, path, dict(options), seed, check=False)
    sizes = []
    for name in SPLITS:
        split = getattr(bundle, name)
        if not isinstance(split, (Split, StreamSplit)):
            raise CheckFailed(f"the {name} split is a {type(split).__name__}, not Split or StreamSplit")
        if len(split) == 0:
            raise CheckFailed(f"the {name} split is empty")
        sizes.append(f"{name} {len(split)}")
    return f"{bundle.info.task}: " + ", ".join(sizes), bundle


def check_splits(ds: Dataset, bundle: DataBundle) -> str:
    """Rows, structure, shapes, dtypes and labels agree across the three splits (the checks a
    search runs before its first trial: :func:`automl.study.datasets.check_bundle`)."""
    try:
        problems, described = check_bundle(bundle)
    except ValueError as exc:
        raise CheckFailed(str(exc)) from None
    if problems:
        raise CheckFailed("; ".join(problems[:4]) + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""))
    return described


def _row_hashes(split: Split | StreamSplit) -> list[bytes]:
    """One digest per row (all inputs and the target); a streamed split is sampled."""
    if isinstance(split, StreamSplit):
        xs, ys = stream_sample(split)
        rows = []
        for x, y in zip(xs, ys):
            h = hashlib.blake2b(digest_size=16)
            for t in list(input_tensors(x).values()) + [y]:
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            rows.append(h.digest())
        return rows
    n = min(len(split), MAX_ROWS)
    arrays = []
    for t in list(input_tensors(split.inputs).values()) + [split.targets]:
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
