"""The ``imagefolder`` dataset: the user's own images, one sub-folder per class.

Two layouts are accepted::

    DIR/<class>/**/*.png|jpg          a random stratified train / val / test split (seed)
    DIR/train/<class>/**/*.png|jpg    an explicit split; val/ and test/ are optional, and a
    DIR/val/<class>/...               missing one is carved (stratified) from train/
    DIR/test/<class>/...

Class folders are searched recursively. Every image is resized to ``size`` x ``size``
(option, default 32) and converted to grayscale when all images are grayscale, else RGB
(RGBA is composed on black, palette images are expanded). A file that cannot be decoded is
skipped and counted in the summary. Up to ``stream_above`` images are decoded once and held
as uint8 tensors; a larger folder streams from disk through a DataLoader with ``workers``
processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from automl import DataBundle, StreamSplit, UserError
from automl.data import three_way_split
from automl_plugins.vision._data import bundle_from_arrays, channel_stats, image_info

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"}
SPLITS = ("train", "val", "test")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not p.name.startswith("."))


def _class_dirs(root: Path, where: str) -> dict[str, list[Path]]:
    """``{class name: image files}`` of a folder laid out as one sub-folder per class."""
    if not root.is_dir():
        raise UserError(f"dataset 'imagefolder': {root} is not a directory")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS]
    if not dirs:
        raise UserError(f"dataset 'imagefolder': {where} has no class sub-folders; expected DIR/<class>/*.png "
                        f"(or DIR/train/<class>/...)")
    if loose:
        raise UserError(f"dataset 'imagefolder': {where} holds {len(loose)} image(s) outside class sub-folders "
                        f"(e.g. {loose[0].name}); put each image in its class's folder")
    classes = {d.name: _images_under(d) for d in dirs}
    empty = [c for c, files in classes.items() if not files]
    if empty:
        raise UserError(f"dataset 'imagefolder': class folder {where}/{empty[0]} has no PNG or JPEG images")
    return classes


def scan(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]] | list[tuple[Path, int]]]:
    """Find the layout: ``(class names, {split: [(file, label)]})`` for an explicit split, or
    ``(class names, [(file, label)])`` for a folder of classes."""
    if not root.exists():
        raise UserError(f"dataset 'imagefolder': {root} does not exist")
    if not root.is_dir():
        raise UserError(f"dataset 'imagefolder': {root} is not a directory")
    subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    split_dirs = subdirs & set(SPLITS)
    if split_dirs:
        if "train" not in split_dirs:
            raise UserError(f"dataset 'imagefolder': {root} has {', '.join(sorted(split_dirs))}/ but no train/ folder")
        others = sorted(subdirs - set(SPLITS))
        if others:
            raise UserError(f"dataset 'imagefolder': {root} mixes split folders (train/ val/ test/) with "
                            f"other folders ({', '.join(others)}); use one layout")
        per_split = {s: _class_dirs(root / s, f"{root.name}/{s}") for s in SPLITS if s in split_dirs}
        names = sorted(per_split["train"])
        for s, classes in per_split.items():
            extra = sorted(set(classes) - set(names))
            if extra:
                raise UserError(f"dataset 'imagefolder': {s}/ has class {extra[0]!r}, which train/ lacks")
        _at_least_two(names, root)
        return names, {s: [(f, names.index(c)) for c, files in classes.items() for f in files]
                       for s, classes in per_split.items()}
    classes = _class_dirs(root, str(root))
    names = sorted(classes)
    _at_least_two(names, root)
    return names, [(f, names.index(c)) for c in names for f in classes[c]]


def _at_least_two(names: list[str], root: Path) -> None:
    if len(names) < 2:
        raise UserError(f"dataset 'imagefolder': {root} has {len(names)} class folder(s); classification needs at "
                        f"least 2")


def decode(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """One image -> ``(uint8 array (3, size, size), was grayscale)``; raises on a bad file."""
    with Image.open(path) as im:
        im.load()
        gray = im.mode in GRAY_MODES
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            background = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(background, im.convert("RGBA"))
        rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)
    # np.array copies: the array is writable (torch.from_numpy warns on a read-only one).
    return np.array(rgb, dtype=np.uint8).transpose(2, 0, 1), gray


def _header_mode(path: Path) -> str | None:
    """The image's mode from its header, or ``None`` when the file is not a readable image."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            im.verify()
        return mode
    except DECODE_ERRORS:
        return None


class FolderImages(torch.utils.data.Dataset):
    """Files decoded on access (in DataLoader workers): ``(uint8 (C, size, size), label)``.
    A file that fails to decode here gives a black image rather than killing the epoch."""

    def __init__(self, items: list[tuple[Path, int]], size: int, channels: int) -> None:
        self.paths = [str(p) for p, _ in items]
        self.labels = torch.tensor([label for _, label in items], dtype=torch.int64)
        self.size, self.channels = size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            arr, _ = decode(Path(self.paths[i]), self.size)
        except DECODE_ERRORS:
            arr = np.zeros((3, self.size, self.size), np.uint8)
        x = torch.from_numpy(np.ascontiguousarray(arr[:1] if self.channels == 1 else arr))
        return x, self.labels[i]


def load_imagefolder(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """Load ``--data DIR`` (layouts in the module docstring). Options: ``size`` (side in
    pixels), ``stream_above`` (image count above which files stream from disk), ``workers``
    (DataLoader processes when streaming), ``flip`` (whether a horizontal flip keeps the
    label, so that flips are searched)."""
    if not path:
        raise UserError("dataset 'imagefolder' needs --data DIR (one sub-folder per class of PNG/JPEG files)")
    size, stream_above = int(options.get("size", 32)), int(options.get("stream_above", 20000))
    if not 4 <= size <= 512:
        raise UserError(f"option size must be between 4 and 512 pixels, not {size}")
    root = Path(path)
    names, layout = scan(root)
    flat = [it for items in layout.values() for it in items] if isinstance(layout, dict) else layout
    hflip = bool(options.get("flip", True))
    if len(flat) > stream_above:
        return _streamed(names, layout, size, hflip, seed, int(options.get("workers", 2)))
    images, labels, gray_all, ok = [], [], True, {}
    for p, label in flat:
        try:
            arr, gray = decode(p, size)
        except DECODE_ERRORS:
            continue
        ok[p] = len(images)
        images.append(arr)
        labels.append(label)
        gray_all &= gray
    skipped = len(flat) - len(images)
    if len(images) < 4:
        raise UserError(f"dataset 'imagefolder': only {len(images)} readable image(s) under {root}")
    x = np.stack(images)
    x = x[:, :1] if gray_all else x
    y = np.asarray(labels, dtype=np.int64)
    summary = {"images": len(images), "classes": len(names), "size": f"{size}x{size}",
               "channels": x.shape[1], "skipped files": skipped}
    if isinstance(layout, dict):
        splits = _explicit_indices(layout, ok, y, seed)
        missing = [c for c in range(len(names)) if not (y[splits[0]] == c).any()]
        if missing:
            raise UserError(f"dataset 'imagefolder': class {names[missing[0]]!r} has no readable image in train/")
        summary["layout"] = "train/ " + " ".join(f"{s}/" for s in ("val", "test") if s in layout)
    else:
        _check_readable_classes(y, names)
        splits = three_way_split(len(y), seed, stratify=y)
    return bundle_from_arrays(x, y, seed, names, summary=summary, splits=splits, hflip=hflip)


def _check_readable_classes(y: np.ndarray, names: list[str]) -> None:
    counts = np.bincount(y, minlength=len(names))
    if counts.min() == 0:
        raise UserError(f"dataset 'imagefolder': class {names[int(counts.argmin())]!r} has no readable image")


def _carve(rows: np.ndarray, labels: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (kept, carved): a stratified fraction ``frac`` carved out."""
    from sklearn.model_selection import train_test_split

    strat = labels[rows]
    counts = np.unique(strat, return_counts=True)[1]
    ok = counts.min() >= 2 and len(counts) <= frac * len(rows)
    kept, carved = train_test_split(rows, test_size=frac, random_state=seed, stratify=strat if ok else None)
    return np.sort(kept), np.sort(carved)


def _explicit_indices(layout: dict, ok: dict, y: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    rows = {s: np.asarray([ok[p] for p, _ in items if p in ok], dtype=np.int64) for s, items in layout.items()}
    train = rows["train"]
    if "test" not in rows:
        train, rows["test"] = _carve(train, y, 0.2, seed)
    if "val" not in rows:
        train, rows["val"] = _carve(train, y, 0.2, seed + 1)
    for s in SPLITS:
        if len(rows[s]) == 0:
            raise UserError(f"dataset 'imagefolder': the {s} split has no readable image")
    return train, rows["val"], rows["test"]


def _streamed(names, layout, size: int, hflip: bool, seed: int, workers: int) -> DataBundle:
    """A large folder: headers are checked now (unreadable files skipped), pixels decoded by
    DataLoader workers; mean and std come from up to 512 train images."""
    if isinstance(layout, dict):
        items = dict(layout)
    else:
        y = np.asarray([label for _, label in layout])
        tr, va, te = three_way_split(len(y), seed, stratify=y)
        items = {"train": [layout[i] for i in tr], "val": [layout[i] for i in va], "test": [layout[i] for i in te]}
    modes, skipped = {}, 0
    for s in list(items):
        kept = []
        for p, label in items[s]:
            mode = _header_mode(p)
            if mode is None:
                skipped += 1
                continue
            modes[mode] = True
            kept.append((p, label))
        items[s] = kept
    if isinstance(layout, dict) and len(items) < 3:
        train = [items["train"][i] for i in np.random.default_rng(seed).permutation(len(items["train"]))]
        for s in ("test", "val"):
            if s not in items:
                cut = max(1, len(train) // 5)
                items[s], train = train[:cut], train[cut:]
        items["train"] = train
    channels = 1 if set(modes) <= GRAY_MODES else 3
    sets = {s: FolderImages(items[s], size, channels) for s in SPLITS}
    sample = torch.stack([sets["train"][i][0] for i in range(min(512, len(sets["train"])))])
    mean, std = channel_stats(sample)
    info = image_info(names, (channels, size, size), mean, std, hflip)
    n = sum(len(v) for v in sets.values())
    summary = {"images": n, "classes": len(names), "size": f"{size}x{size}", "channels": channels,
               "skipped files": skipped, "streamed": f"from disk with {workers} DataLoader worker(s)"}
    splits = [StreamSplit(sets[s], num_workers=workers) for s in SPLITS]
    return DataBundle(*splits, info, state={"mean": mean, "std": std, "input_shape": [channels, size, size],
                                            "class_names": names}, summary=summary)

