"""The text plugin's ``tfidf`` space (an ArrayModel: fit / predict, skops save and load without
pickle) and its ``tfidf_logreg`` baseline, on generated topical texts whose label is the topic
of their words (learnable from words or character n-grams alone)."""

from __future__ import annotations

import csv
import pickle
import random
import zipfile

import numpy as np
import optuna
import pytest

import automl_plugins.text as text
from automl import UserError, metrics
from automl.training import build_model, load_model, save_model
from automl_plugins.text._data import bundle_from_texts
from automl_plugins.text._tfidf import MODEL_FILE, fit_tfidf_logreg, load_skops

TOPICS = {
    "sport": ("goal", "striker", "match", "league", "coach", "penalty", "stadium", "season"),
    "money": ("market", "stocks", "bank", "interest", "inflation", "shares", "profit", "budget"),
    "food": ("recipe", "garlic", "oven", "flavour", "dessert", "spices", "kitchen", "sauce"),
}
FILLER = ("the", "a", "was", "and", "this", "of", "today", "really", "with", "new")


def topical(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` texts: six words, three of them from the label's topic, three filler words."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    texts, labels = [], []
    for i in range(n):
        label = i % len(names)
        words = rng.sample(TOPICS[names[label]], 3) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def bundle():
    texts, labels = topical(150)
    return bundle_from_texts(texts, labels, sorted(TOPICS), seed=0)


SPACE = {s.name: s for s in (lambda out: (text.register_spaces(out.append), out)[1])([])}["tfidf"]
CONFIGS = [
    {"analyzer": "word", "word_ngrams": 2, "char_ngrams": "2,4", "min_df": 1, "sublinear_tf": True,
     "max_features": 0, "classifier": "logreg", "C": 10.0, "balanced": False},
    {"analyzer": "char_wb", "word_ngrams": 1, "char_ngrams": "2,5", "min_df": 2, "sublinear_tf": False,
     "max_features": 20000, "classifier": "svm", "C": 1.0, "balanced": True},
    {"analyzer": "both", "word_ngrams": 3, "char_ngrams": "3,6", "min_df": 1, "sublinear_tf": True,
     "max_features": 0, "classifier": "logreg", "C": 3.0, "balanced": True},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c['analyzer']}-{c['classifier']}")
def test_fit_predict_save_load_without_pickle(bundle, cfg, tmp_path, monkeypatch):
    model = build_model(SPACE, cfg, bundle.info)
    model.fit(bundle.train, bundle.val, bundle.info)
    proba = model.predict(bundle.val.inputs)
    assert proba.shape == (len(bundle.val), 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert metrics.ACCURACY.fn(bundle.val.targets.numpy(), proba) >= 0.9

    path = tmp_path / "model"
    save_model(model, path)
    assert [p.name for p in path.iterdir()] == [MODEL_FILE]
    names = zipfile.ZipFile(path / MODEL_FILE).namelist()  # skops: a zip of a JSON schema and arrays
    assert "schema.json" in names and not any(n.endswith((".pkl", ".pickle")) for n in names)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used to load a tfidf model")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    again = load_model(build_model(SPACE, cfg, bundle.info), path)
    assert np.array_equal(again.predict(bundle.val.inputs), proba)
    assert np.array_equal(again.predict(bundle.test.inputs), model.predict(bundle.test.inputs))


def test_sampled_configs_fit_on_tiny_data(bundle):
    """Whatever the sampler draws - min_df 3 included - fits on 40 texts and predicts."""
    from automl import Split

    small = Split(*bundle.train.take(__import__("torch").arange(40)))
    for seed in range(4):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        cfg = SPACE.define(trial, bundle.info)
        assert SPACE.train(trial, bundle.info) == {}
        model = build_model(SPACE, cfg, bundle.info)
        model.fit(small, bundle.val, bundle.info)
        assert model.predict(bundle.val.inputs).shape == (len(bundle.val), 3)


def test_a_file_with_other_types_is_refused(tmp_path):
    import skops.io

    path = tmp_path / MODEL_FILE
    skops.io.dump({"a": np.mean}, path)  # a function: code a loaded file would run
    with pytest.raises(UserError, match="refusing to load types numpy.mean"):
        load_skops(path)


def test_tfidf_logreg_baseline(bundle):
    scores = fit_tfidf_logreg(bundle, metrics.ACCURACY)
    assert scores["val"] >= 0.9 and scores["test"] >= 0.9
    assert scores["test_pred"].shape == (len(bundle.test), 3)
    assert scores["test"] == metrics.ACCURACY.fn(bundle.test.targets.numpy(), scores["test_pred"])


def test_search_and_predict_through_the_cli(cli, studies, tmp_path):
    texts, labels = topical(120, seed=1)
    path = tmp_path / "topics.csv"
    names = sorted(TOPICS)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([t, names[y]] for t, y in zip(texts, labels))
    r = cli("search", "--plugin", "text", "--dataset", "csv", "--data", path, "--space", "tfidf",
            "--trials", "2", "--study", "topics")
    assert r.code == 0, r.err
    assert "tfidf_logreg" in r.out
    rows = cli("leaderboard", "topics", "--format", "json").json()
    done = [row for row in rows if row.get("state") == "COMPLETE"]
    assert len(done) == 2, rows
    new, want = topical(9, seed=2)
    (tmp_path / "new.txt").write_text("\n".join(new) + "\n")
    r = cli("predict", "topics", "--data", tmp_path / "new.txt")
    assert r.code == 0, r.err
    predicted = list(csv.DictReader(r.out.splitlines()))
    assert [p["prediction"] for p in predicted] == [names[y] for y in want]
