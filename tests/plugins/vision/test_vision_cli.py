"""The vision plugin through the CLI and the shared trainer, on generated files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from automl import metrics
from automl.training import fit

sys.path.insert(0, str(Path(__file__).parent))
import vision_gen as gen

from automl_plugins.vision import _nets as nets
from automl_plugins.vision._augment import vision_step
from automl_plugins.vision._formats import load_cifar10


def test_imagefolder_search_counts_skipped_file_and_shows_class_names(cli, tmp_path):
    data = gen.make_shapes(tmp_path / "shapes", per_class=10)
    r = cli("search", "--plugin", "vision", "--dataset", "imagefolder", "--data", data, "--option", "size=16",
            "--space", "cnn", "--trials", "1", "--max-epochs", "2", "--study", "shapes")
    assert r.code == 0, r.err
    assert "skipped files: 1" in r.out
    r = cli("leaderboard", "shapes", "--best")
    assert r.code == 0, r.err
    assert "confusion matrix" in r.out and "triangle" in r.out


def test_mnist_search_on_generated_idx_files(cli, tmp_path):
    gen.make_mnist(tmp_path / "mnist", n_train=200, n_test=50)
    r = cli("search", "--plugin", "vision", "--dataset", "mnist", "--data", tmp_path / "mnist", "--space", "mlp",
            "--metric", "top5_accuracy", "--trials", "1", "--max-epochs", "2", "--study", "m")
    assert r.code == 0, r.err
    assert "test images: 50" in r.out
    rows = cli("leaderboard", "m", "--format", "json").json()
    assert rows[0]["state"] == "COMPLETE" and 0.0 <= rows[0]["value"] <= 1.0


def test_cifar10_resnet_trains_with_augmentation_step(tmp_path):
    gen.make_cifar10(tmp_path, per_batch=40, n_test=20, batches=2)
    data = load_cifar10(str(tmp_path), {"val": 0.25}, 0)
    model = nets.build_resnet({"depth": 18, "width": 8, "resolution": 16, "dropout": 0.0}, data.info)
    cfg = {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "epochs": 2, "augment": "light", "hflip": True}
    result = fit(model, data, cfg, metrics.ACCURACY, torch.device("cpu"), step=vision_step, seed=0)
    assert result.epochs_run == 2 and 0.0 <= result.best_value <= 1.0
    assert result.samples == 2 * len(data.train) - 2 * (len(data.train) % 32 == 1)


@pytest.mark.parametrize("args, message", [
    (("--dataset", "imagefolder", "--data", "{tmp}/missing"), "does not exist"),
    (("--dataset", "imagefolder", "--data", "{tmp}/flat"), "no class sub-folders"),
    (("--dataset", "imagefolder", "--data", "{tmp}/onecls"), "at least 2"),
    (("--dataset", "mnist", "--data", "{tmp}/flat"), "missing train-images-idx3-ubyte"),
    (("--dataset", "cifar10", "--data", "{tmp}/nowhere"), "does not exist"),
    (("--dataset", "mnist"), "needs --data"),
    (("--dataset", "imagefolder", "--data", "{tmp}/ok", "--metric", "top5_accuracy"), "top5_accuracy"),
    (("--dataset", "imagefolder", "--data", "{tmp}/ok", "--space", "resnet_pretrained"), "resnet18-f37072fd.pth"),
    (("--dataset", "mnist", "--data", "{tmp}/mn", "--option", "val=0.9"), "option val"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: no pretrained weights
    (tmp_path / "flat").mkdir()
    (tmp_path / "onecls" / "a").mkdir(parents=True)
    gen.draw_shape(np.random.default_rng(0), "circle", "RGB").save(tmp_path / "onecls" / "a" / "x.png")
    gen.make_shapes(tmp_path / "ok", per_class=4, corrupt=0)
    gen.make_mnist(tmp_path / "mn", n_train=20, n_test=10)
    r = cli("search", "--plugin", "vision", *[a.format(tmp=tmp_path) for a in args], "--trials", "1")
    assert r.code == 2, r.out + r.err
    assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_datasets_download_command(cli, tmp_path):
    r = cli("datasets", "--help")
    assert r.code == 0 and "download" in r.out
    r = cli("datasets", "list")
    assert r.code == 0 and "cifar-10-binary.tar.gz" in r.out and "fashion-mnist" in r.out
    r = cli("datasets", "download", "imagenet", "--data", tmp_path)
    assert r.code == 2 and "unknown dataset 'imagenet'" in r.err and "mnist" in r.err
    (tmp_path / "file").write_text("x")
    r = cli("datasets", "download", "mnist", "--data", tmp_path / "file")
    assert r.code == 2 and "is a file" in r.err and len(r.err.strip().splitlines()) == 1
