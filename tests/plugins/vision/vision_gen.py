"""Generators of small real image files for the vision plugin's tests (and manual checks).

Run as a script to write a folder::

    python tests/plugins/vision/vision_gen.py shapes DIR [--per-class 60]
    python tests/plugins/vision/vision_gen.py mnist DIR [--train 600 --test 200]
    python tests/plugins/vision/vision_gen.py cifar10 DIR [--per-batch 200]

Learnable signals:

- shapes: each image is one filled circle, square or triangle (the class) drawn with
  PIL.ImageDraw at a random position, size and colour on a random background; sizes
  (24..64 px) and modes (L, RGB, RGBA, P) are mixed, and one file is corrupt.
- mnist (IDX): class k is the digit k in PIL's bitmap font, scaled to 14x18, at a random
  place and brightness over faint noise, in the real file format (``train-images-idx3-ubyte.gz`` ...).
- cifar10 (binary): class k has a colour ``k`` of a 10-colour palette in a 12x12 patch at a
  random place on a noisy background, in the real record format (label byte + R, G, B planes).
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
MODES = ("RGB", "L", "RGBA", "P")


def draw_shape(rng: np.random.Generator, shape: str, mode: str) -> Image.Image:
    """One image of ``shape`` at a random size, position and colour, in ``mode``."""
    side = int(rng.integers(24, 65))
    bg = tuple(int(v) for v in rng.integers(0, 80, 3))
    fg = tuple(int(v) for v in rng.integers(150, 256, 3))
    im = Image.new("RGB", (side, side), bg)
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.25, 0.42) * side
    cx, cy = rng.uniform(r, side - r, 2)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "square":
        d.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=fg)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fg)
    if mode == "P":
        return im.convert("P", palette=Image.ADAPTIVE, colors=16)
    return im.convert(mode)


def make_shapes(root: Path, per_class: int = 60, seed: int = 0, corrupt: int = 1,
                modes: tuple[str, ...] = MODES, split_layout: bool = False) -> Path:
    """Write ``root/<shape>/*.png|jpg`` (or ``root/train|val|test/<shape>/...``)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c, shape in enumerate(SHAPES):
        for i in range(per_class):
            part = ("train", "train", "train", "val", "test")[i % 5] if split_layout else ""
            folder = root / part / shape / ("nested" if i % 7 == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            mode = modes[(i + c) % len(modes)]
            im = draw_shape(rng, shape, mode)
            if mode in ("RGB", "L") and i % 3 == 0:
                im.save(folder / f"{shape}_{i}.jpg", quality=90)
            else:
                im.save(folder / f"{shape}_{i}.png")
    for k in range(corrupt):
        target = root / ("train" if split_layout else "") / SHAPES[k % 3]
        (target / f"broken_{k}.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    return root


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write a uint8 array as an IDX file (magic 0 0 8 ndim, big-endian dims, data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
    return path


def _glyphs() -> np.ndarray:
    """The digits 0..9 in PIL's built-in bitmap font, scaled to 18x18 (uint8 0..255)."""
    from PIL import ImageFont

    font = ImageFont.load_default()
    out = []
    for k in range(10):
        im = Image.new("L", (12, 14), 0)
        ImageDraw.Draw(im).text((3, 1), str(k), fill=255, font=font)
        box = im.getbbox() or (0, 0, 12, 14)
        out.append(np.asarray(im.crop(box).resize((14, 18), Image.BILINEAR)))
    return np.stack(out)


def mnist_like(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 images: class k is the digit k (PIL's bitmap font, 14x18) drawn at a
    random offset and brightness over faint noise."""
    glyphs = _glyphs()
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = rng.integers(0, 40, (n, 28, 28)).astype(np.int32)
    for i, k in enumerate(y):
        r, c = rng.integers(0, 11), rng.integers(0, 15)
        x[i, r:r + 18, c:c + 14] += (glyphs[k] * rng.uniform(0.7, 1.0)).astype(np.int32)
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.uint8)


def make_mnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0, gz: bool = True) -> Path:
    """Write the four MNIST IDX files (gzipped or not) into ``root``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = mnist_like(rng, n)
        write_idx(root / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", y, gz)
    return root


PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255],
                    [255, 128, 0], [128, 0, 255], [255, 255, 255], [0, 128, 64]], dtype=np.uint8)


def cifar_records(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` CIFAR-10 binary records: class colour in a 12x12 patch on a noisy background."""
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = rng.integers(0, 90, (n, 3, 32, 32)).astype(np.uint8)
    for i, k in enumerate(y):
        r, c = rng.integers(0, 21, 2)
        x[i, :, r:r + 12, c:c + 12] = PALETTE[k][:, None, None]
    return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(n, -1)], axis=1)


def make_cifar10(root: Path, per_batch: int = 200, n_test: int = 200, seed: int = 0, batches: int = 5,
                 inner: bool = True) -> Path:
    """Write ``data_batch_1..N.bin``, ``test_batch.bin`` and ``batches.meta.txt`` (inside
    ``cifar-10-batches-bin/`` like the real archive when ``inner``)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10-batches-bin" if inner else Path(root)
    base.mkdir(parents=True, exist_ok=True)
    for b in range(1, batches + 1):
        cifar_records(rng, per_batch).tofile(base / f"data_batch_{b}.bin")
    cifar_records(rng, n_test).tofile(base / "test_batch.bin")
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    (base / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return Path(root)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["shapes", "mnist", "cifar10"])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--per-batch", type=int, default=200)
    args = ap.parse_args()
    if args.kind == "shapes":
        make_shapes(args.dir, args.per_class)
    elif args.kind == "mnist":
        make_mnist(args.dir, args.train, args.test)
    else:
        make_cifar10(args.dir, args.per_batch, args.test)
    print(args.dir)
