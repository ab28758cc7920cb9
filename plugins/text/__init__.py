"""text: classification of short texts.

Datasets: ``synthetic_reviews`` (the default: generated reviews whose labels need word
order and negation) and ``csv`` (``--data PATH`` to a CSV, TSV or JSONL file, with
``--option text_column=...`` and ``--option label_column=...``).
Tokenisation: words, word n-grams and character n-grams, vocabulary fitted on the train
split per trial (vocabulary size and maximum length are searched).
Spaces: ``bag`` (fastText-style EmbeddingBag), ``cnn``, ``rnn`` (bi-GRU / bi-LSTM) and
``transformer``, and ``tfidf`` (TF-IDF of word and / or character n-grams with a linear
model: scikit-learn, no gradient training; an :class:`automl.ArrayModel` saved with skops).
The default space stays ``cnn``: on ``synthetic_reviews`` the labels need word order, which
TF-IDF n-grams only partly see; add ``--space tfidf`` (alone or beside others) for topical
texts, where it is the usual small-data winner.
Metrics: accuracy (default), macro-F1, AUROC (binary tasks).
Baselines: ``tfidf_logreg`` (word + character TF-IDF, logistic regression with ``C`` chosen
by 5-fold cross-validation on train) and ``unigram_logreg`` (single words: ignores word order).
"""

from __future__ import annotations

import dataclasses

from automl import Baseline, DataInfo, Dataset, PluginInfo, SearchSpace, hookimpl, metrics
from automl_plugins.text._data import CSV_OPTIONS, SYNTH_OPTIONS, fit_unigram_logreg, load_synthetic, load_table
from automl_plugins.text._predict import predict_texts
from automl_plugins.text._spaces import (
    build_bag,
    build_cnn,
    build_rnn,
    build_transformer,
    define_bag,
    define_cnn,
    define_rnn,
    define_transformer,
    train_space,
)
from automl_plugins.text._tfidf import STARTS, build_tfidf, define_tfidf, fit_tfidf_logreg, train_none
from automl_plugins.text._tokens import prepare

CLS = ("classification",)
_SPACES = {
    "bag": (define_bag, build_bag, "fastText-style EmbeddingBag over words and word / character n-grams"),
    "cnn": (define_cnn, build_cnn, "1-D convolutions of several widths over word embeddings, max-pooled"),
    "rnn": (define_rnn, build_rnn, "bidirectional GRU or LSTM over packed sequences"),
    "transformer": (define_transformer, build_transformer, "small Transformer encoder with a padding mask"),
}

#: What a practitioner tries first (Kim-style CNN: kernels 3 and 5, dropout, AdamW at a high
#: learning rate with cosine decay): under a short time budget it is often the model kept.
#: On synthetic_reviews it passes 0.98 validation accuracy in about 8 epochs.
_STARTS = {
    "cnn": ({"vocab_size": 2000, "max_len": 64, "dim": 128, "filters": 64, "kernels": "3,5", "dropout": 0.15,
             "optimizer": "adamw", "lr": 0.008, "weight_decay": 1e-5, "batch_size": 64, "scheduler": "cosine"},),
}


def _binary(info: DataInfo) -> bool:
    return info.num_classes == 2


@hookimpl
def plugin_info() -> PluginInfo:
    return PluginInfo(name="text", description="Short-text classification: bag, CNN, RNN, Transformer and TF-IDF",
                      default_dataset="synthetic_reviews", default_space="cnn", default_metric="accuracy")


@hookimpl
def register_datasets(register) -> None:
    register(Dataset(name="synthetic_reviews", task="classification", load=load_synthetic, options=SYNTH_OPTIONS,
                     predict_new=predict_texts,
                     description="generated reviews (2 classes) whose labels depend on negation and on "
                                 "the clause after 'but'/'although': word order matters"))
    register(Dataset(name="csv", task="classification", load=load_table, options=CSV_OPTIONS, needs_path=True,
                     predict_new=predict_texts,
                     description="your labelled texts: --data PATH to a CSV, TSV or JSONL file"))


@hookimpl
def register_spaces(register) -> None:
    for name, (define, build, description) in _SPACES.items():
        register(SearchSpace(name=name, tasks=CLS, define=define, build=build, train=train_space,
                             prepare=prepare, description=description, starts=_STARTS.get(name, ())))
    register(SearchSpace(name="tfidf", tasks=CLS, define=define_tfidf, build=build_tfidf, train=train_none,
                         starts=STARTS, description="TF-IDF of word and / or character n-grams with logistic "
                                                    "regression or a calibrated linear SVM (scikit-learn)"))


@hookimpl
def register_metrics(register) -> None:
    register(metrics.ACCURACY)
    register(metrics.MACRO_F1)
    register(dataclasses.replace(metrics.AUROC, applies=_binary, description="area under the ROC curve "
                                 "(binary tasks)"))


@hookimpl
def register_baselines(register) -> None:
    register(Baseline(name="tfidf_logreg", tasks=CLS, fit=fit_tfidf_logreg,
                      description="word 1-2-gram + character 2-5-gram TF-IDF, logistic regression "
                                  "(C by 5-fold CV on train)"))
    register(Baseline(name="unigram_logreg", tasks=CLS, fit=fit_unigram_logreg,
                      description="TF-IDF of single words + logistic regression (ignores word order)"))
