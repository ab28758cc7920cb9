"""``automl predict`` for images: a folder searched recursively, or one image file.

Every file with an image extension is decoded exactly as in training (:func:`._folder.decode`:
RGB, alpha composed on black, resized to the model's input size, first channel only for a
grayscale model); a file that cannot be decoded is skipped and counted. The model starts with
its own :class:`Normalize`, so the uint8 pixels go in as they are. Each row's id is the file's
path relative to the folder. Images are decoded and predicted in chunks, so a large folder
does not have to fit in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from automl import PredictContext, Predictions, UserError
from automl.data import predict_rows
from automl_plugins.vision._folder import DECODE_ERRORS, EXTENSIONS, decode

CHUNK = 1024


def image_files(root: Path) -> list[Path]:
    """The image files under ``root`` (recursively, hidden ones left out), or ``root`` itself."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def predict_images(model: nn.Module, path: str, ctx: PredictContext) -> Predictions:
    """``Dataset.predict`` of the image datasets: classify every image under ``path``."""
    shape = ctx.state.get("input_shape") or list(ctx.info.input_shape or ())
    if len(shape) != 3:
        raise UserError("the model's preprocessing has no input shape (state['input_shape'])")
    channels, size = int(shape[0]), int(shape[1])
    root = Path(path)
    files = image_files(root)
    if not files:
        raise UserError(f"{root}: no PNG, JPEG, BMP, WebP or GIF image found (searched recursively)")
    rows, skipped = [], 0
    for start in range(0, len(files), CHUNK):
        ids, images = [], []
        for p in files[start:start + CHUNK]:
            try:
                arr, _ = decode(p, size)
            except DECODE_ERRORS:
                skipped += 1
                continue
            images.append(arr[:1] if channels == 1 else arr)
            ids.append(p.name if root.is_file() else p.relative_to(root).as_posix())
        if images:
            batch = torch.from_numpy(np.ascontiguousarray(np.stack(images)))
            rows += predict_rows(model, batch, ids, ctx).rows
    return Predictions(rows, {"images": len(rows), "skipped files (unreadable)": skipped})
