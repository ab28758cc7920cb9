"""bio spaces (forward and backward), cropping, reverse complement, k-mers, and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automl import TrainContext, metrics
from automl.training import build_model
from automl_plugins.bio import _data, _spaces, register_spaces

SPACES = {}
register_spaces(lambda s: SPACES.__setitem__(s.name, s))
CONFIGS = {
    "cnn": {"filters": 8, "kernel": 7, "blocks": 2, "hidden": 8, "dropout": 0.1},
    "cnn_rnn": {"filters": 8, "kernel": 7, "pool": 4, "hidden": 8, "dropout": 0.1},
    "transformer": {"k": 3, "dim": 16, "heads": 2, "layers": 1, "dropout": 0.1},
}


def test_crop_modes_by_hand():
    tokens = torch.tensor([[1, 2, 3, 4, 1, 2], [3, 3, 0, 0, 0, 0]])
    assert _spaces.crop_tokens(tokens, 4, "start").tolist() == [[1, 2, 3, 4], [3, 3, 0, 0]]
    assert _spaces.crop_tokens(tokens, 4, "center").tolist() == [[2, 3, 4, 1], [3, 3, 0, 0]]
    assert _spaces.crop_tokens(tokens, 4, "end").tolist() == [[3, 4, 1, 2], [3, 3, 0, 0]]
    assert _spaces.crop_tokens(tokens, 8, "center").tolist() == [[1, 2, 3, 4, 1, 2, 0, 0], [3, 3] + [0] * 6]


def test_reverse_complement_by_hand():
    tokens, _ = _data.encode(["a", "b"], ["AACGN", "GT"], "dna", "x")
    rc = _spaces.reverse_complement(tokens, "dna")
    decode = lambda row: "".join("ACGTN"[t - 1] for t in row if t)
    assert [decode(r) for r in rc.tolist()] == ["NCGTT", "AC"]
    assert rc[1, 2:].tolist() == [0, 0, 0]  # still right-padded
    assert torch.equal(_spaces.reverse_complement(rc, "dna"), tokens)


def test_kmer_ids_by_hand():
    model = _spaces.KmerTransformer(vocab=6, classes=2, k=2, max_len=4, dim=8, heads=2, layers=1, dropout=0.0)
    ids = model.kmer_ids(torch.tensor([[1, 2, 5, 0]]))  # AC, CN, N-pad
    assert ids.tolist() == [[0 * 5 + 1 + 1, 1 * 5 + 4 + 1, 0]]


@pytest.fixture(scope="module")
def bundle():
    records = _data.promoter_records(n=60, length=60, seed=1)
    return _data.bundle_from_records(records, "dna", 0, "test")


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("crop", ["start", "end"])
def test_space_forward_backward(bundle, name, crop):
    space = SPACES[name]
    config = {"space": name, "model": {**CONFIGS[name], "max_len": 32, "crop": crop}, "train": {}}
    data = space.prepare(bundle, config)
    assert data.train.inputs.shape[1] == 32 and data.info.input_shape == (32,)
    model = build_model(space, config["model"], data.info)
    x, y = data.train.take(torch.arange(16))
    assert model(x).shape == (16, 2)
    weight = torch.tensor([0.5, 2.0])
    ce = lambda out, t: torch.nn.functional.cross_entropy(out, t, weight=weight)
    ctx = TrainContext({"rc_augment": True}, data.info, data.train, data.val, torch.device("cpu"), ce,
                       torch.Generator().manual_seed(0))
    loss = space.step(model, x, y, ctx)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and len(grads) >= 4 and all(torch.isfinite(g).all() for g in grads)


def test_padding_does_not_change_cnn_output():
    model = build_model(SPACES["cnn"], {**CONFIGS["cnn"], "blocks": 1, "max_len": 12, "crop": "start"},
                        _data.bundle_from_records(_data.promoter_records(n=20, length=60), "dna", 0, "t").info)
    model.eval()
    tokens, _ = _data.encode(["a"], ["ACGTTGCAAC"], "dna", "x")
    padded = torch.nn.functional.pad(tokens, (0, 6))
    assert torch.allclose(model(tokens), model(padded), atol=1e-6)


Y = np.array([0, 0, 1, 1, 1])
P = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.2, 0.8], [0.7, 0.3]])  # p(class 1) = .1 .6 .65 .8 .3


def test_metrics_by_hand():
    # AUROC: pairs (positive, negative) ranked right: (.65>.1, .65>.6, .8>.1, .8>.6, .3>.1) = 5 of 6
    assert metrics.auroc(Y, P) == pytest.approx(5 / 6)
    # AUPRC (average precision): ranking .8+ .65+ .6- .3+ .1- -> precisions at hits 1, 1, 3/4
    assert metrics.auprc(Y, P) == pytest.approx((1 + 1 + 0.75) / 3)
    # labels at 0.5: predicted 0 1 1 1 0 -> TP 2, TN 1, FP 1, FN 1
    assert metrics.balanced_accuracy(Y, P) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics.mcc(Y, P) == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))
