"""k-mer counts with logistic regression: the ``kmer`` space (an :class:`automl.ArrayModel`,
scikit-learn, saved with ``skops``, never pickle) and the ``kmer_logreg`` baseline row.

A sequence becomes its string of residues; for DNA / RNA the reverse complement's string is
appended as a second word, so that a motif counts the same on either strand. scikit-learn's
``CountVectorizer(analyzer="char_wb")`` counts the k-mers of each word separately (no k-mer
spans the two strands; each word's two ends add one space-padded k-mer each, which mark the
sequence ends). The space reads the loaded, uncropped sequences: it has no ``prepare``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl import DataBundle, DataInfo, Metric, Split
from automl.training import load_skops as load_trusted_skops
from automl_plugins.bio._data import ALPHABETS, COMPLEMENT

MODEL_FILE = "model.skops"
#: The only types a saved ``kmer`` model may hold beyond those skops trusts by default.
ALLOWED_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.set", "builtins.frozenset", "builtins.str",
    "builtins.int", "builtins.float", "builtins.bool", "builtins.NoneType", "builtins.type",
    "numpy.dtype", "numpy.ndarray", "numpy.float64", "numpy.int64", "numpy.int32",
    "sklearn.pipeline.Pipeline", "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer", "sklearn.preprocessing._data.Normalizer",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.dummy.DummyClassifier",
})
NORMS = ("counts", "l2", "tfidf")


def sequences(tokens: torch.Tensor, alphabet: str, rc: bool = False) -> list[str]:
    """Right-padded tokens ``(N, L)`` (1-based in the alphabet, 0 = padding) as residue
    strings; with ``rc`` (DNA / RNA) each string is followed by a space and its reverse
    complement."""
    letters = ALPHABETS[alphabet]
    lut = np.frombuffer((" " + letters).encode("ascii"), dtype=np.uint8)
    arr = tokens.detach().cpu().numpy()
    chars, lengths = lut[arr], (arr > 0).sum(axis=1)
    out = [chars[i, :n].tobytes().decode("ascii") for i, n in enumerate(lengths)]
    if rc:
        comp = "".join(letters[c - 1] for c in COMPLEMENT[alphabet][1:])
        table = str.maketrans(letters, comp)
        out = [f"{s} {s.translate(table)[::-1]}" for s in out]
    return out


def vectorizer(k: int, norm: str = "counts", min_df: int = 1):
    """The k-mer features: counts of ``k``-mers, optionally L2-normalised per sequence or
    TF-IDF weighted (sublinear)."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
    from sklearn.preprocessing import Normalizer

    steps: list[tuple[str, Any]] = [("kmers", CountVectorizer(analyzer="char_wb", ngram_range=(k, k),
                                                               lowercase=False, min_df=min_df, dtype=np.float32))]
    if norm == "l2":
        steps.append(("norm", Normalizer()))
    elif norm == "tfidf":
        steps.append(("norm", TfidfTransformer(sublinear_tf=True)))
    elif norm != "counts":
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    return steps


def define_kmer(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: ``k`` (3-8 for nucleotides, 1-3 for protein), reverse-complement k-mers
    (DNA / RNA), count normalisation, ``C`` and balanced class weights."""
    nucleotide = info.extra.get("alphabet") in COMPLEMENT
    cfg: dict[str, Any] = {"k": trial.suggest_int("k", 3, 8) if nucleotide else trial.suggest_int("k", 1, 3)}
    if nucleotide:
        cfg["rc"] = trial.suggest_categorical("rc", [True, False])
    cfg.update(norm=trial.suggest_categorical("norm", list(NORMS)),
               C=trial.suggest_float("C", 1e-3, 1e2, log=True),
               balanced=trial.suggest_categorical("balanced", [False, True]))
    return cfg


def train_none(trial, info: DataInfo) -> dict[str, Any]:
    """``SearchSpace.train`` of the ``kmer`` space: no gradient training, nothing to suggest."""
    return {}


#: What a practitioner tries first: 6-mers of both strands, raw counts, a firm penalty.
STARTS = ({"k": 6, "rc": True, "norm": "counts", "C": 0.01, "balanced": False},)


def _classifier(cfg: dict[str, Any], y: np.ndarray):
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="prior")
    return LogisticRegression(C=float(cfg.get("C", 1.0)), class_weight="balanced" if cfg.get("balanced") else None,
                              max_iter=3000)


def expand(proba: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities over the classes a model saw, as ``(N, num_classes)`` columns."""
    out = np.zeros((len(proba), num_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


class KmerModel:
    """An :class:`automl.ArrayModel`: k-mer features and logistic regression (a scikit-learn
    ``Pipeline``) fitted on the train split's sequences."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        self.cfg, self.num_classes = dict(cfg), int(info.num_classes or 2)
        self.alphabet = str(info.extra["alphabet"])
        self.rc = bool(cfg.get("rc")) and self.alphabet in COMPLEMENT
        self.pipeline: Any = None

    def _texts(self, inputs: Any) -> list[str]:
        return sequences(inputs, self.alphabet, self.rc)

    def fit(self, train: Split, val: Split, info: DataInfo) -> None:
        """Fit the pipeline on the train split's sequences (``val`` is not used)."""
        from sklearn.pipeline import Pipeline

        y = train.targets.cpu().numpy().astype(np.int64)
        self.pipeline = Pipeline([*vectorizer(int(self.cfg["k"]), self.cfg.get("norm", "counts")),
                                  ("model", _classifier(self.cfg, y))])
        self.pipeline.fit(self._texts(train.inputs), y)

    def predict(self, inputs: Any) -> np.ndarray:
        """``(N, C)`` class probabilities (columns of classes absent from train are 0)."""
        if self.pipeline is None:
            raise RuntimeError("the model is not fitted")
        return expand(self.pipeline.predict_proba(self._texts(inputs)), self.pipeline.classes_, self.num_classes)

    def save(self, folder: Path) -> None:
        """Write the fitted pipeline into ``folder`` with skops (no pickle)."""
        import skops.io

        skops.io.dump(self.pipeline, Path(folder) / MODEL_FILE)

    def load(self, folder: Path) -> None:
        """Read what :meth:`save` wrote (see :func:`load_skops`)."""
        self.pipeline = load_skops(Path(folder) / MODEL_FILE)


def load_skops(path: Path) -> Any:
    """Load a skops file, trusting only :data:`ALLOWED_TYPES` (:func:`automl.training.load_skops`)."""
    return load_trusted_skops(path, ALLOWED_TYPES, "a kmer model")


def build_kmer(cfg: dict[str, Any], info: DataInfo) -> KmerModel:
    """Build the (unfitted) :class:`KmerModel` of a config."""
    return KmerModel(cfg, info)


def fit_kmer_logreg(data: DataBundle, metric: Metric) -> dict[str, Any]:
    """Baseline: counts of k-mers of the sequence and (DNA / RNA) of its reverse complement,
    logistic regression; ``k`` in 3..6 (1..3 for protein) and ``C`` chosen by 5-fold
    cross-validation on the train split only (``GridSearchCV`` over ``C`` for each ``k``;
    AUROC for binary tasks, log-loss otherwise), refitted on all of train; scored with the
    study's metric. For speed the k-mer vocabulary of each ``k`` is collected once on the
    whole train split (it uses no label); the folds refit only the classifier. Returns the
    validation and test predictions too, so the row joins the study's ensembles."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    alphabet = str(data.info.extra["alphabet"])
    rc = alphabet in COMPLEMENT
    texts = {name: sequences(data.split(name).inputs, alphabet, rc) for name in ("train", "val", "test")}
    y = data.train.targets.cpu().numpy().astype(np.int64)
    counts = np.bincount(y)[np.bincount(y) > 0]
    if len(counts) < 2:
        raise ValueError("the train split has a single class")
    folds = int(min(5, counts.min()))
    best: tuple[float, Any, Any] | None = None
    for k in ((3, 4, 5, 6) if rc else (1, 2, 3)):
        (_, vec), = vectorizer(k)
        X = vec.fit_transform(texts["train"])
        # liblinear: several times faster than lbfgs on unscaled counts (binary tasks)
        model: Any = LogisticRegression(max_iter=3000, solver="liblinear" if len(counts) == 2 else "lbfgs")
        if folds >= 2:
            model = GridSearchCV(model, {"C": [0.01, 0.1, 1.0]}, n_jobs=1,
                                 cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                                 scoring="roc_auc" if len(counts) == 2 else "neg_log_loss")
        model.fit(X, y)
        cv = float(getattr(model, "best_score_", 0.0))
        if best is None or cv > best[0]:
            best = (cv, vec, model)
    _, vec, model = best
    scores: dict[str, Any] = {}
    for name in ("val", "test"):
        proba = expand(model.predict_proba(vec.transform(texts[name])), model.classes_, int(data.info.num_classes))
        scores[name] = float(metric.fn(data.split(name).targets.cpu().numpy(), proba))
        scores[f"{name}_pred"] = proba
    return scores
