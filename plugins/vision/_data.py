"""Vision datasets. Images are held as uint8 tensors ``(N, C, H, W)`` and batched by index;
models start with :class:`Normalize`, so the normalisation fitted on the train split travels
with the saved weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits

from automl import DataBundle, DataInfo, Split, three_way_split


def bundle_from_arrays(images: np.ndarray, labels: np.ndarray, seed: int, class_names: list[str],
                       summary: dict[str, Any] | None = None,
                       splits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> DataBundle:
    """uint8 images ``(N, C, H, W)`` and integer labels -> a stratified three-way bundle.

    The per-channel mean and std are computed on the train split only and recorded in
    ``info.extra`` (for the model's :class:`Normalize`) and in ``state`` (for export).
    """
    if images.dtype != np.uint8:
        raise TypeError("images must be uint8")
    train_idx, val_idx, test_idx = splits or three_way_split(len(labels), seed, stratify=labels)
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.from_numpy(labels.astype(np.int64))
    train = x[torch.from_numpy(train_idx)].float() / 255.0
    mean = train.mean(dim=(0, 2, 3)).tolist()
    std = train.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist()
    c, h, w = images.shape[1:]
    info = DataInfo(task="classification", num_classes=len(class_names), input_shape=(c, h, w),
                    class_names=class_names, extra={"mean": mean, "std": std})

    def take(idx: np.ndarray) -> Split:
        t = torch.from_numpy(idx)
        return Split(x[t], y[t])

    return DataBundle(take(train_idx), take(val_idx), take(test_idx), info,
                      state={"mean": mean, "std": std, "input_shape": [c, h, w], "class_names": class_names},
                      summary=summary or {})


def load_digits_bundle(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), no download.
    Pixel values 0..16 are rescaled to 0..255."""
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    return bundle_from_arrays(images, digits.target, seed, [str(i) for i in range(10)],
                              summary={"images": len(images)})
