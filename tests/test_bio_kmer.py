"""The bio plugin's ``kmer`` space (an ArrayModel: fit / predict, skops save and load without
pickle), its ``kmer_logreg`` baseline, and reverse-complement averaging in the torch spaces."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import optuna
import pytest
import torch

from automl import UserError, metrics
from automl.training import build_model, load_model, save_model
from automl_plugins.bio import _data, _kmer, _spaces, register_spaces

SPACES = {}
register_spaces(lambda s: SPACES.__setitem__(s.name, s))
TORCH = {
    "cnn": {"filters": 8, "kernel": 7, "blocks": 2, "hidden": 8, "dropout": 0.1},
    "cnn_rnn": {"filters": 8, "kernel": 7, "pool": 4, "hidden": 8, "dropout": 0.1},
    "transformer": {"k": 3, "dim": 16, "heads": 2, "layers": 1, "dropout": 0.1},
}


@pytest.fixture(scope="module")
def bundle():
    return _data.bundle_from_records(_data.promoter_records(n=400, length=60, seed=3), "dna", 0, "test")


def test_sequences_and_their_reverse_complement_by_hand():
    tokens, _ = _data.encode(["a", "b"], ["AACGN", "GT"], "dna", "x")
    assert _kmer.sequences(tokens, "dna") == ["AACGN", "GT"]
    assert _kmer.sequences(tokens, "dna", rc=True) == ["AACGN NCGTT", "GT AC"]
    rna, _ = _data.encode(["a"], ["AUGC"], "rna", "x")
    assert _kmer.sequences(rna, "rna", rc=True) == ["AUGC GCAU"]


@pytest.mark.parametrize("cfg", [{"k": 5, "rc": True, "norm": "counts", "C": 0.05, "balanced": False},
                                 {"k": 4, "rc": False, "norm": "tfidf", "C": 1.0, "balanced": True},
                                 {"k": 3, "rc": True, "norm": "l2", "C": 10.0, "balanced": False}],
                         ids=lambda c: f"k{c['k']}-{c['norm']}")
def test_kmer_fit_predict_save_load_without_pickle(bundle, cfg, tmp_path, monkeypatch):
    model = build_model(SPACES["kmer"], cfg, bundle.info)
    model.fit(bundle.train, bundle.val, bundle.info)
    proba = model.predict(bundle.val.inputs)
    assert proba.shape == (len(bundle.val), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert metrics.AUROC.fn(bundle.val.targets.numpy(), proba) > 0.65  # the planted motifs are found

    path = tmp_path / "model"
    save_model(model, path)
    assert [p.name for p in path.iterdir()] == [_kmer.MODEL_FILE]

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used to load a kmer model")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    again = load_model(build_model(SPACES["kmer"], cfg, bundle.info), path)
    assert np.array_equal(again.predict(bundle.test.inputs), model.predict(bundle.test.inputs))


def test_a_file_with_other_types_is_refused(tmp_path):
    import skops.io

    path = tmp_path / _kmer.MODEL_FILE
    skops.io.dump({"f": len}, path)
    with pytest.raises(UserError, match="refusing to load types builtins.len"):
        _kmer.load_skops(path)


def test_kmer_space_choices_follow_the_alphabet(bundle):
    protein = _data.bundle_from_records([(f"p{i}", str(i % 2), "MKV" * (5 + i % 3)) for i in range(12)],
                                        "protein", 0, "p")
    for info, ks, has_rc in ((bundle.info, range(3, 9), True), (protein.info, range(1, 4), False)):
        for seed in range(6):
            trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
            cfg = SPACES["kmer"].define(trial, info)
            assert cfg["k"] in ks and ("rc" in cfg) == has_rc
            for name in TORCH:
                trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
                model_cfg = SPACES[name].define(trial, info)
                assert (model_cfg.get("rc_average") in _spaces.RC_AVERAGE) == has_rc


def test_kmer_logreg_baseline(bundle):
    scores = _kmer.fit_kmer_logreg(bundle, metrics.AUROC)
    assert 0.65 < scores["test"] <= 1.0 and 0.65 < scores["val"] <= 1.0
    assert scores["val_pred"].shape == (len(bundle.val), 2)
    assert scores["val"] == metrics.AUROC.fn(bundle.val.targets.numpy(), scores["val_pred"])


def test_reverse_complement_twice_is_the_identity_on_one_hot_input(bundle):
    tokens = bundle.train.inputs[:32]
    onehot = _spaces.OneHot(bundle.info.extra["vocab"])
    twice = _spaces.reverse_complement(_spaces.reverse_complement(tokens, "dna"), "dna")
    assert torch.equal(onehot(twice), onehot(tokens))
    once = onehot(_spaces.reverse_complement(tokens, "dna"))
    # one strand's A (channel 0) at position i is the other's T (channel 3) at length - 1 - i
    n = int((tokens[0] > 0).sum())
    assert torch.equal(once[0, 0, :n], onehot(tokens)[0, 3, :n].flip(0))


@pytest.mark.parametrize("name", sorted(TORCH))
@pytest.mark.parametrize("mode", ["predict", "always"])
def test_rc_average_forward_backward_and_strand_invariance(bundle, name, mode):
    space = SPACES[name]
    config = {"space": name, "model": {**TORCH[name], "max_len": 48, "crop": "start", "rc_average": mode},
              "train": {}}
    data = space.prepare(bundle, config)
    torch.manual_seed(0)
    model = build_model(space, config["model"], data.info)
    assert isinstance(model, _spaces.RCAverage)
    x, y = data.train.take(torch.arange(16))
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and len(grads) >= 4 and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        out, flipped = model(x), model(_spaces.reverse_complement(x, "dna"))
        plain = model.inner(x)
    assert out.shape == (16, 2)
    assert torch.allclose(out, flipped, atol=1e-5)  # both strands give one prediction
    assert not torch.allclose(out, plain, atol=1e-6)  # it is not the one-strand output
    assert set(model.state_dict()) == {f"inner.{k}" for k in model.inner.state_dict()}


def test_rc_average_off_builds_the_plain_model(bundle):
    cfg = {**TORCH["cnn"], "max_len": 48, "crop": "start", "rc_average": "off"}
    assert isinstance(build_model(SPACES["cnn"], cfg, bundle.info), _spaces.MotifCNN)


def test_kmer_search_and_predict_through_the_cli(cli, tmp_path):
    path = tmp_path / "seqs.fa"
    records = _data.promoter_records(n=300, length=60, seed=5)
    path.write_text("".join(f">{rid}|{label}\n{seq}\n" for rid, label, seq in records))
    r = cli("search", "--plugin", "bio", "--dataset", "fasta", "--data", path, "--space", "kmer",
            "--trials", "2", "--study", "km")
    assert r.code == 0, r.err
    assert "kmer_logreg" in r.out
    rows = cli("leaderboard", "km", "--format", "json").json()
    assert len([row for row in rows if row.get("state") == "COMPLETE"]) == 2, rows
    new = tmp_path / "new.fa"
    new.write_text("".join(f">n{i}\n{seq}\n" for i, (_, _, seq) in enumerate(records[:7])))
    r = cli("predict", "km", "--data", new)
    assert r.code == 0, r.err
    predicted = list(csv.DictReader(r.out.splitlines()))
    assert [p["id"] for p in predicted] == [f"n{i}" for i in range(7)]
    assert all(p["prediction"] in ("background", "promoter") for p in predicted)


def test_torch_search_with_rc_average_through_the_cli(cli, tmp_path):
    path = tmp_path / "seqs.fa"
    path.write_text("".join(f">{rid}|{label}\n{seq}\n" for rid, label, seq in _data.promoter_records(n=120, length=60)))
    r = cli("search", "--plugin", "bio", "--dataset", "fasta", "--data", path, "--space", "cnn", "--trials", "2",
            "--max-epochs", "1", "--study", "rcavg")
    assert r.code == 0, r.err
    rows = cli("leaderboard", "rcavg", "--format", "json").json()
    done = [row for row in rows if row.get("state") == "COMPLETE"]
    assert done and all(row["params"]["cnn.rc_average"] in _spaces.RC_AVERAGE for row in done), rows
