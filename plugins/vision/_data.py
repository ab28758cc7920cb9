"""Vision datasets held in memory. Images are uint8 tensors ``(N, C, H, W)`` batched by index;
models start with :class:`Normalize`, so the normalisation fitted on the train split travels
with the saved weights.

``DataInfo.extra`` carries what the spaces and the augmentation need: ``mean`` / ``std`` (per
channel, train split only), ``hflip`` (whether a horizontal flip keeps the label: not for
digits) and ``color`` (three channels, so colour jitter applies).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from automl import DataBundle, DataInfo, Split
from automl.data import three_way_split


def image_info(class_names: list[str], shape: tuple[int, int, int], mean: list[float], std: list[float],
               hflip: bool) -> DataInfo:
    """The :class:`DataInfo` of an image classification dataset."""
    c, h, w = shape
    return DataInfo(task="classification", num_classes=len(class_names), input_shape=(c, h, w),
                    class_names=class_names,
                    extra={"mean": mean, "std": std, "hflip": bool(hflip), "color": c == 3})


def bundle_from_arrays(images: np.ndarray, labels: np.ndarray, seed: int, class_names: list[str],
                       summary: dict[str, Any] | None = None,
                       splits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                       hflip: bool = True) -> DataBundle:
    """uint8 images ``(N, C, H, W)`` and integer labels -> a three-way bundle.

    ``splits`` gives the train / val / test row indices; without it the split is stratified
    and random (``seed``). The per-channel mean and std are computed on the train split only
    and recorded in ``info.extra`` (for the model's :class:`Normalize`) and in ``state``.
    """
    if images.dtype != np.uint8:
        raise TypeError("images must be uint8")
    train_idx, val_idx, test_idx = splits or three_way_split(len(labels), seed, stratify=labels)
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    mean, std = channel_stats(x[torch.from_numpy(np.asarray(train_idx))])
    c, h, w = images.shape[1:]
    info = image_info(class_names, (c, h, w), mean, std, hflip)

    def take(idx: np.ndarray) -> Split:
        t = torch.from_numpy(np.asarray(idx))
        return Split(x[t], y[t])

    return DataBundle(take(train_idx), take(val_idx), take(test_idx), info,
                      state={"mean": mean, "std": std, "input_shape": [c, h, w], "class_names": class_names},
                      summary=summary or {})


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)``, on the 0..1 scale."""
    x = images.float() / 255.0
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).nan_to_num(1.0).clamp(min=1e-3).tolist() if len(x) > 1 else [1.0] * x.shape[1]
    return mean, std


def split_fixed_test(train_labels: np.ndarray, n_test: int, seed: int,
                     val: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices for arrays laid out as ``[train..., test...]``: the given test set stays the
    test split, and a stratified fraction ``val`` of the train set becomes validation."""
    n_train = len(train_labels)
    idx = np.arange(n_train)
    counts = np.unique(train_labels, return_counts=True)[1]
    strat = train_labels if counts.min() >= 2 and len(counts) <= val * n_train else None
    tr, va = train_test_split(idx, test_size=val, random_state=seed, stratify=strat)
    return np.sort(tr), np.sort(va), np.arange(n_train, n_train + n_test)


def load_digits_bundle(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), no download.
    Pixel values 0..16 are rescaled to 0..255. Digits are not flip-invariant: no flips."""
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    return bundle_from_arrays(images, digits.target, seed, [str(i) for i in range(10)],
                              summary={"images": len(images)}, hflip=False)
