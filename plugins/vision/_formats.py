"""MNIST, Fashion-MNIST (IDX files) and CIFAR-10 (the binary version) read with numpy.

Pickle is never used: CIFAR-10's "python version" is a pickle, so only the binary version
(``data_batch_1.bin`` ... ``test_batch.bin``) is accepted. The files come from
``automl datasets download NAME --data PATH`` (see :mod:`._download`) or from the user.
The official test set stays the test split; a stratified 10% of the train set (option
``val``) is the validation split.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from automl import DataBundle, UserError
from automl_plugins.vision._data import bundle_from_arrays, split_fixed_test

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_RECORD = 1 + 3 * 32 * 32


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not): magic ``0 0 type ndim``, big-endian int32 dims, data."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: not a valid gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(f"{path}: IDX data is {len(raw) - header} bytes, the header says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(root: Path, stem: str, folders: list[str], name: str) -> Path:
    names = [stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
    for folder in folders:
        for name in names:
            if (root / folder / name).is_file():
                return root / folder / name
    raise UserError(f"{root}: missing {stem}[.gz] (expected the standard IDX file names; "
                    f"get them with: automl datasets download {name} --data {root})")


def _root(path: Any, name: str) -> Path:
    if not path:
        raise UserError(f"dataset {name!r} needs --data DIR (get the files with: automl datasets download {name} "
                        f"--data DIR)")
    root = Path(path)
    if not root.exists():
        raise UserError(f"dataset {name!r}: {root} does not exist; get the files with: "
                        f"automl datasets download {name} --data {root}")
    if not root.is_dir():
        raise UserError(f"dataset {name!r}: {root} is not a directory")
    return root


def _load_idx_dataset(path: Any, options: dict[str, Any], seed: int, name: str, torch_folder: str,
                      classes: list[str], hflip: bool) -> DataBundle:
    root = _root(path, name)
    folders = [".", "raw", f"{torch_folder}/raw", torch_folder]
    arrays = {k: read_idx(_find(root, stem, folders, name)) for k, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise UserError(f"dataset {name!r}: {split} images must be a uint8 IDX array (N, H, W), "
                            f"not {images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise UserError(f"dataset {name!r}: {len(images)} {split} images but {labels.shape} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise UserError(f"dataset {name!r}: {split} labels must be 0..{len(classes) - 1}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise UserError(f"dataset {name!r}: train and test images differ in size")
    return _bundle(arrays["train_images"][:, None], arrays["train_labels"], arrays["test_images"][:, None],
                   arrays["test_labels"], options, seed, classes, hflip)


def _bundle(train_x, train_y, test_x, test_y, options, seed, classes, hflip) -> DataBundle:
    if len(train_y) < 4 or len(test_y) < 1:
        raise UserError(f"too few images: {len(train_y)} train, {len(test_y)} test")
    val = float(options.get("val", 0.1))
    if not 0.0 < val <= 0.5:
        raise UserError(f"option val must be a fraction in (0, 0.5], not {val}")
    train_y, test_y = train_y.astype(np.int64), test_y.astype(np.int64)
    splits = split_fixed_test(train_y, len(test_y), seed, val)
    images = np.concatenate([train_x, test_x])
    labels = np.concatenate([train_y, test_y])
    summary = {"train images": len(train_y), "test images": len(test_y),
               "size": f"{images.shape[2]}x{images.shape[3]}"}
    return bundle_from_arrays(images, labels, seed, classes, summary=summary, splits=splits, hflip=hflip)


def load_mnist(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """MNIST from its four IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``--data DIR``
    (or ``DIR/raw``, ``DIR/MNIST/raw`` as torchvision lays them out). Not flip-invariant."""
    return _load_idx_dataset(path, options, seed, "mnist", "MNIST", MNIST_CLASSES, hflip=False)


def load_fashion_mnist(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """Fashion-MNIST from its four IDX files in ``--data DIR`` (same names as MNIST; also
    ``DIR/FashionMNIST/raw``). Clothes are flip-invariant, so flips are searched."""
    return _load_idx_dataset(path, options, seed, "fashion-mnist", "FashionMNIST", FASHION_CLASSES, hflip=True)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte + 3,072 pixel bytes (R, G, B planes
    of 32x32). Returns uint8 images ``(N, 3, 32, 32)`` and labels."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise UserError(f"{path}: not a CIFAR-10 binary batch (size {raw.size} is not a multiple of {CIFAR_RECORD})")
    records = raw.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise UserError(f"{path}: label {labels.max()} out of range 0..9; is this CIFAR-10 binary?")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """CIFAR-10, binary version: ``data_batch_1.bin`` ... ``data_batch_5.bin`` and
    ``test_batch.bin`` in ``--data DIR`` or ``DIR/cifar-10-batches-bin``. Class names are read
    from ``batches.meta.txt`` when present. The pickled python version is refused."""
    root = _root(path, "cifar10")
    base = root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").is_dir() else root
    train_files = sorted(base.glob("data_batch_*.bin"))
    test_file = base / "test_batch.bin"
    if not train_files or not test_file.is_file():
        pickled = (base / "data_batch_1").exists() or (root / "cifar-10-batches-py").exists()
        hint = (" (this looks like the pickled python version, which is unsafe to load; use the binary version "
                "cifar-10-binary.tar.gz)" if pickled else "")
        raise UserError(f"dataset 'cifar10': {base} needs data_batch_N.bin and test_batch.bin{hint}; "
                        f"get them with: automl datasets download cifar10 --data {root}")
    parts = [read_cifar_batch(f) for f in train_files]
    train_x, train_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    test_x, test_y = read_cifar_batch(test_file)
    classes = CIFAR_CLASSES
    meta = base / "batches.meta.txt"
    if meta.is_file():
        names = [line.strip() for line in meta.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == 10:
            classes = names
    return _bundle(train_x, train_y, test_x, test_y, options, seed, classes, hflip=True)
