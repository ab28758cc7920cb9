"""The vision loaders on real files written by the tests: image folders, IDX, CIFAR binary."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automl import Split, StreamSplit, UserError

sys.path.insert(0, str(Path(__file__).parent))
import vision_gen as gen

from automl_plugins.vision._data import load_digits_bundle
from automl_plugins.vision._folder import load_imagefolder
from automl_plugins.vision._formats import load_cifar10, load_fashion_mnist, load_mnist, read_idx

FOLDER_OPTS = {"size": 16, "stream_above": 20000, "workers": 0, "flip": True}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return gen.make_shapes(tmp_path_factory.mktemp("shapes"), per_class=12)


def test_digits_unchanged_and_not_flipped():
    b = load_digits_bundle(None, {}, 0)
    assert b.info.input_shape == (1, 8, 8) and b.info.num_classes == 10
    assert b.train.inputs.dtype == torch.uint8
    assert b.info.extra["hflip"] is False and b.info.extra["color"] is False


def test_imagefolder_mixed_modes_sizes_and_corrupt(shapes):
    b = load_imagefolder(str(shapes), FOLDER_OPTS, 0)
    assert b.summary["skipped files"] == 1
    assert b.summary["images"] == 36
    assert b.info.class_names == ["circle", "square", "triangle"]
    assert b.info.input_shape == (3, 16, 16) and b.info.extra["color"]
    assert isinstance(b.train, Split) and b.train.inputs.dtype == torch.uint8
    assert b.train.inputs.shape[1:] == (3, 16, 16)
    assert len(b.train) + len(b.val) + len(b.test) == 36
    assert set(b.test.targets.tolist()) == {0, 1, 2}  # stratified


def test_imagefolder_grayscale_only_gives_one_channel(tmp_path):
    root = gen.make_shapes(tmp_path / "g", per_class=6, corrupt=0, modes=("L",))
    b = load_imagefolder(str(root), FOLDER_OPTS, 0)
    assert b.info.input_shape == (1, 16, 16) and not b.info.extra["color"]
    assert b.summary["skipped files"] == 0


def test_imagefolder_explicit_split_layout(tmp_path):
    root = gen.make_shapes(tmp_path / "s", per_class=10, split_layout=True)
    b = load_imagefolder(str(root), FOLDER_OPTS, 0)
    assert (len(b.train), len(b.val), len(b.test)) == (18, 6, 6)
    assert b.summary["skipped files"] == 1


def test_imagefolder_layout_without_val_carves_it_from_train(tmp_path):
    root = gen.make_shapes(tmp_path / "s", per_class=10, split_layout=True, corrupt=0)
    for f in (root / "val").rglob("*.*"):
        f.unlink()
    for d in sorted((root / "val").rglob("*"), reverse=True):
        d.rmdir()
    (root / "val").rmdir()
    b = load_imagefolder(str(root), FOLDER_OPTS, 0)
    assert len(b.test) == 6 and len(b.train) + len(b.val) == 18 and len(b.val) > 0


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "not a directory"),
    (lambda p: (p / "a").mkdir() or (p / "b").mkdir() or p, "has no PNG or JPEG"),
    (lambda p: p, "no class sub-folders"),
    (lambda p: gen.make_shapes(p / "x", 3, corrupt=0) and (p / "x" / "extra.png").write_bytes(b"1") and p / "x",
     "outside class sub-folders"),
    (lambda p: gen.make_shapes(p / "y", 3, corrupt=0, split_layout=True) and (p / "y" / "cats").mkdir()
     or p / "y", "mixes split folders"),
    (lambda p: (p / "only" / "one").mkdir(parents=True) or Image.new("L", (9, 9)).save(p / "only" / "one" / "a.png")
     or p / "only", "at least 2"),
])
def test_imagefolder_bad_layouts(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UserError, match=message):
        load_imagefolder(str(path), FOLDER_OPTS, 0)


def test_imagefolder_streams_above_threshold(shapes):
    b = load_imagefolder(str(shapes), dict(FOLDER_OPTS, stream_above=10), 0)
    assert isinstance(b.train, StreamSplit) and b.train.num_workers == 0
    assert b.summary["skipped files"] == 1 and b.summary["images"] == 36
    x, y = next(iter(torch.utils.data.DataLoader(b.train.dataset, batch_size=5)))
    assert x.dtype == torch.uint8 and x.shape == (5, 3, 16, 16) and y.dtype == torch.int64
    assert len(b.info.extra["mean"]) == 3


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path, gz):
    gen.make_mnist(tmp_path, n_train=100, n_test=30, gz=gz)
    b = load_mnist(str(tmp_path), {"val": 0.1}, 0)
    assert (len(b.train), len(b.val), len(b.test)) == (90, 10, 30)
    assert b.info.input_shape == (1, 28, 28) and b.info.extra["hflip"] is False
    raw = read_idx(next(tmp_path.glob("t10k-labels*")))
    assert torch.equal(b.test.targets, torch.from_numpy(raw.astype(np.int64)))  # the official test set


def test_fashion_mnist_torchvision_layout(tmp_path):
    gen.make_mnist(tmp_path / "FashionMNIST" / "raw", n_train=60, n_test=20)
    b = load_fashion_mnist(str(tmp_path), {"val": 0.2}, 0)
    assert b.info.class_names[0] == "T-shirt/top" and b.info.extra["hflip"] is True
    assert len(b.test) == 20


def test_idx_errors(tmp_path):
    gen.make_mnist(tmp_path, n_train=40, n_test=10)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    with pytest.raises(UserError, match="header says"):
        load_mnist(str(tmp_path), {"val": 0.1}, 0)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage!")
    with pytest.raises(UserError, match="bad magic"):
        load_mnist(str(tmp_path), {"val": 0.1}, 0)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(UserError, match="missing t10k-images-idx3-ubyte"):
        load_mnist(str(tmp_path), {"val": 0.1}, 0)
    with pytest.raises(UserError, match="does not exist"):
        load_mnist(str(tmp_path / "nope"), {"val": 0.1}, 0)


@pytest.mark.parametrize("inner", [True, False])
def test_cifar10_binary(tmp_path, inner):
    gen.make_cifar10(tmp_path, per_batch=40, n_test=20, batches=2, inner=inner)
    b = load_cifar10(str(tmp_path), {"val": 0.25}, 0)
    assert (len(b.train), len(b.val), len(b.test)) == (60, 20, 20)
    assert b.info.input_shape == (3, 32, 32) and b.info.class_names[9] == "truck"
    assert b.train.inputs.dtype == torch.uint8 and b.info.extra["color"]


def test_cifar10_refuses_pickled_version_and_bad_files(tmp_path):
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(b"\x80\x04pickle")
    with pytest.raises(UserError, match="pickled python version"):
        load_cifar10(str(tmp_path), {"val": 0.1}, 0)
    gen.make_cifar10(tmp_path / "b", per_batch=10, n_test=10, batches=1, inner=False)
    (tmp_path / "b" / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not a CIFAR-10 binary batch"):
        load_cifar10(str(tmp_path / "b"), {"val": 0.1}, 0)
