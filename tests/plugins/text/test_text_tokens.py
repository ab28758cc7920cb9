"""Text tokenisation, the generated dataset, file loading and train-only vocabularies."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from automl import UserError, metrics
from automl.data import three_way_split
from automl_plugins.text._data import fit_unigram_logreg, load_synthetic, load_table
from automl_plugins.text._synth import clause, generate
from automl_plugins.text._tokens import (
    UNK,
    Tokenizer,
    decode_texts,
    features,
    prepare,
    tokenize_bundle,
)

OPTS = {"text_column": "text", "label_column": "label"}


def write_reviews(path, n=120, *, fmt="csv", text_col="text", label_col="label", blanks=0):
    """Generated reviews as CSV, TSV or JSONL; the first ``blanks`` rows lack a label."""
    texts, labels = generate(n, seed=7)
    rows = [{text_col: t, label_col: "" if i < blanks else ("pos" if y else "neg")}
            for i, (t, y) in enumerate(zip(texts, labels))]
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps({k: (v or None) for k, v in r.items()}) for r in rows) + "\n")
    else:
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=[text_col, label_col], delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    return path


def test_features_words_ngrams_and_chars():
    assert features("Not GOOD, really.") == ["not", "good", ",", "really", "."]
    assert features("a b c", word_ngrams=2) == ["a", "b", "c", "a b", "b c"]
    assert features("ab", char_ngrams=3) == ["ab", "#<ab", "#ab>"]


def test_tokenizer_vocab_encode_and_truncate():
    tok = Tokenizer.fit(["the plot was good", "the plot was bad", "the end"], vocab_size=5, max_len=3)
    assert tok.vocab == ["<pad>", "<unk>", "the", "plot", "was"]  # most frequent, ties alphabetical
    tokens, lengths = tok.encode(["the plot was good indeed", "", "zebra"])
    assert tokens.shape == (3, 3) and lengths.tolist() == [3, 1, 1]
    assert tokens[0].tolist() == [2, 3, 4] and tokens[1, 0] == UNK and tokens[2].tolist() == [UNK, 0, 0]
    state = tok.to_state()
    assert json.loads(json.dumps(state)) == state and state["vocab"] == tok.vocab


def test_raw_texts_round_trip_and_tokenisation_cache(tmp_path):
    path = write_reviews(tmp_path / "r.csv", n=40)
    path.write_text(path.read_text().replace("the plot", "the plöt ✓", 1))
    bundle = load_table(path, OPTS, 0)
    texts = decode_texts(bundle.train) + decode_texts(bundle.val) + decode_texts(bundle.test)
    assert any("plöt ✓" in t for t in texts)
    first = tokenize_bundle(bundle, 100, 16)
    assert tokenize_bundle(bundle, 100, 16) is first  # cached per (vocab, max_len, n-grams)
    cfg = {"model": {"vocab_size": 100, "max_len": 8, "word_ngrams": 2, "char_ngrams": 3}}
    other = prepare(bundle, cfg)
    assert other is not first and other.train.inputs["tokens"].shape[1] == 8
    assert other.info.extra["vocab_size"] == len(other.state["tokenizer"]["vocab"]) == 100


def test_vocabulary_is_fitted_on_train_only(tmp_path):
    """Leakage check: rewrite every test-split text; the fitted vocabulary must not change,
    and words that occur only in the test split are unknown."""
    path = write_reviews(tmp_path / "r.csv", n=150)
    before = tokenize_bundle(load_table(path, OPTS, 5), 5000, 32)
    rows = list(csv.DictReader(open(path)))
    labels = np.array([r["label"] == "pos" for r in rows], dtype=int)
    _, _, test_idx = three_way_split(len(rows), 5, stratify=labels)
    for i in test_idx:
        rows[i]["text"] = "zyzzyva quux " + rows[i]["text"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    after = tokenize_bundle(load_table(path, OPTS, 5), 5000, 32)
    assert after.state["tokenizer"]["vocab"] == before.state["tokenizer"]["vocab"]
    assert "zyzzyva" not in after.state["tokenizer"]["vocab"]
    assert (after.test.inputs["tokens"][:, :2] == UNK).all()


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_load_formats_skip_missing_rows(tmp_path, fmt):
    path = write_reviews(tmp_path / f"r.{fmt}", n=60, fmt=fmt, text_col="body", label_col="y", blanks=4)
    bundle = load_table(path, {"text_column": "body", "label_column": "y"}, 0)
    assert bundle.summary["skipped rows (missing text or label)"] == 4
    assert bundle.info.class_names == ["neg", "pos"] and bundle.info.num_classes == 2
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 56


def test_many_string_classes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"ticket {i} about {c},{c}\n"
                                             for i in range(30) for c in ("billing", "login", "crash")))
    bundle = load_table(path, OPTS, 0)
    assert bundle.info.class_names == ["billing", "crash", "login"]


def test_missing_columns_name_what_the_file_has(tmp_path):
    path = write_reviews(tmp_path / "r.csv", text_col="review", label_col="stars")
    with pytest.raises(UserError, match=r"no column 'text', 'label'; the file has columns: review, stars"):
        load_table(path, OPTS, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\nnot json\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        load_table(bad, OPTS, 0)


def test_synthetic_reviews_need_word_order():
    texts, labels = generate(400)
    assert (texts, labels) == generate(400) and sum(labels) == 200
    import random

    rng = random.Random(0)
    for positive in (True, False):
        for _ in range(50):
            words = clause(rng, positive).split()
            negated = any(n in words for n in ("not", "never", "hardly"))
            adjective_positive = words[-1] in ("good", "great", "excellent", "wonderful", "enjoyable",
                                               "brilliant", "fun", "solid")
            assert positive == (adjective_positive != negated)
    # a bag of single words cannot tell the classes apart; the generated rules are in the order
    bundle = load_synthetic(None, {"size": 2400}, 0)
    assert fit_unigram_logreg(bundle, metrics.ACCURACY)["test"] < 0.65
