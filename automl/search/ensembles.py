"""Post-hoc ensembles: greedy ensemble selection with replacement (Caruana et al., 2004, as
auto-sklearn, Auto-PyTorch and AutoGluon do) over the validation predictions of a study's
best trials.

Written by hand because the algorithm is a dozen lines over arrays the study already stores,
and the libraries that ship it (auto-sklearn, AutoGluon) would bring a whole AutoML system.
Members and weights are chosen on the validation split only; the test split scores the
result once, afterwards.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.training import validation_loss
from automl.types import Metric

#: Rounds of greedy selection: a member picked k times weighs k / ROUNDS.
ROUNDS = 50


@dataclass
class Ensemble:
    """The chosen members (trial number -> weight, summing to 1) and the ensemble's
    validation score, and its validation loss where the task has one."""

    weights: dict[int, float]
    val_value: float
    val_loss: float | None


def _key(metric: Metric, task: str, y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """What selection maximises: the metric (in its direction), then the loss (lower is
    better): accuracy alone ties between many candidates on a small validation split."""
    value = float(metric.fn(y, pred))
    loss = validation_loss(task, y, pred)
    sign = 1.0 if metric.direction == "maximize" else -1.0
    return (sign * value if math.isfinite(value) else -math.inf, -loss if loss is not None else 0.0)


def select(candidates: dict[int, np.ndarray], y_val: np.ndarray, metric: Metric, task: str,
           rounds: int = ROUNDS, admits: Callable[[frozenset[int]], bool] | None = None) -> Ensemble:
    """Greedy forward selection with replacement: each round adds the candidate that makes
    the running average of predictions score best on validation; the ensemble kept is the
    best one seen over the rounds (the first round is the single best candidate, so the
    ensemble never scores below it on validation). ``candidates``: trial number ->
    validation predictions, best trials first (ties go to the earlier one). ``admits``: whether
    a set of members may serve together (under ``--constraint``, their summed figures meet the
    limits); a round only adds a candidate the set admits with it, and every candidate must be
    admitted alone."""
    numbers = list(candidates)
    preds = [candidates[n].astype(np.float64) for n in numbers]
    total = np.zeros_like(preds[0])
    chosen: list[int] = []
    best: tuple[tuple[float, float], list[int]] | None = None
    for r in range(max(1, rounds)):
        members = frozenset(numbers[i] for i in chosen)
        allowed = [i for i in range(len(preds)) if i in chosen or admits is None or admits(members | {numbers[i]})]
        keys = {i: _key(metric, task, y_val, (total + preds[i]) / (r + 1)) for i in allowed}
        pick = max(allowed, key=lambda i: (keys[i], -i))
        total += preds[pick]
        chosen.append(pick)
        if best is None or keys[pick] > best[0]:
            best = (keys[pick], list(chosen))
    assert best is not None
    counts = Counter(best[1])
    weights = {numbers[i]: c / len(best[1]) for i, c in sorted(counts.items())}
    blended = combine({n: candidates[n] for n in weights}, weights)
    loss = validation_loss(task, y_val, blended)
    return Ensemble(weights, float(metric.fn(y_val, blended)), loss)


def combine(predictions: dict[int, Any], weights: dict[int, float]) -> np.ndarray:
    """The weighted average of members' predictions (probabilities or values)."""
    out = None
    for number, weight in weights.items():
        part = weight * np.asarray(predictions[number], dtype=np.float64)
        out = part if out is None else out + part
    assert out is not None
    return out
