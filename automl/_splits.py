"""Helpers every dataset loader needs, so that plugins do not each write their own."""

from __future__ import annotations

import numpy as np


def three_way_split(n: int, seed: int, *, val: float = 0.2, test: float = 0.2,
                    stratify: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a train / validation / test split of ``n`` rows (scikit-learn's
    ``train_test_split`` twice), stratified by ``stratify`` when given and possible."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)

    def cut(rows: np.ndarray, frac: float, strat: np.ndarray | None, salt: int):
        labels = strat[rows] if strat is not None else None
        if labels is not None and np.min(np.unique(labels, return_counts=True)[1]) < 2:
            labels = None  # a class with one row cannot be stratified
        return train_test_split(rows, test_size=frac, random_state=seed + salt, stratify=labels)

    rest, test_idx = cut(idx, test, stratify, 0)
    train_idx, val_idx = cut(rest, val / (1.0 - test), stratify, 1)
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)
