"""``tfidf``: TF-IDF of word and / or character n-grams with a linear classifier, the usual
small-data winner on topical text, as an :class:`automl.ArrayModel` (scikit-learn, fitted in
seconds, saved with ``skops``, never pickle); and the ``tfidf_logreg`` baseline row.

The space reads the raw texts the loaded bundle holds (``{"utf8", "nbytes"}``, see
:mod:`._tokens`): it has no ``prepare``, so no per-trial vocabulary of the neural spaces is
built for it, and ``automl predict`` hands it the raw texts too (see :mod:`._predict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automl import DataBundle, DataInfo, Metric, Split
from automl.training import load_skops as load_trusted_skops
from automl_plugins.text._tokens import split_texts, texts_of

#: Word tokens of one or more word characters (keeps "i", "a": the default sklearn pattern
#: drops one-letter words).
WORD_PATTERN = r"(?u)\b\w+\b"
CHAR_RANGES = ("1,4", "2,4", "2,5", "3,6")
MODEL_FILE = "model.skops"
#: The only types a saved ``tfidf`` model may hold beyond those skops trusts by default: a
#: file asking for anything else is refused, not loaded.
ALLOWED_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.set", "builtins.frozenset", "builtins.str",
    "builtins.int", "builtins.float", "builtins.bool", "builtins.NoneType", "builtins.slice", "builtins.type",
    "numpy.dtype", "numpy.ndarray", "numpy.float64", "numpy.int64", "numpy.int32", "numpy.str_",
    "scipy.sparse._csr.csr_matrix", "scipy.sparse._csr.csr_array",
    "sklearn.pipeline.Pipeline", "sklearn.pipeline.FeatureUnion",
    "sklearn.feature_extraction.text.TfidfVectorizer", "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.svm._classes.LinearSVC",
    "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration", "sklearn.dummy.DummyClassifier",
    "sklearn.frozen._frozen.FrozenEstimator",
})


def define_tfidf(trial, info: DataInfo) -> dict[str, Any]:
    """Searched: the analyzer (``word``, ``char_wb`` or ``both`` in a ``FeatureUnion``), the
    word n-gram range (1 to 1-3) and character n-gram range, ``min_df``, ``sublinear_tf``,
    ``max_features`` (0: no limit), the classifier (logistic regression, or a linear SVM with
    sigmoid-calibrated probabilities) and its ``C``; ``class_weight`` balanced or not.

    Every parameter is suggested in every trial (the n-gram range an analyzer does not use is
    ignored): a start configuration names them all, and conditional parameters would be left
    out of it."""
    cfg: dict[str, Any] = {"analyzer": trial.suggest_categorical("analyzer", ["word", "char_wb", "both"]),
                           "word_ngrams": trial.suggest_int("word_ngrams", 1, 3),
                           "char_ngrams": trial.suggest_categorical("char_ngrams", list(CHAR_RANGES))}
    cfg.update(min_df=trial.suggest_int("min_df", 1, 3),
               sublinear_tf=trial.suggest_categorical("sublinear_tf", [True, False]),
               max_features=trial.suggest_categorical("max_features", [0, 20000, 100000]),
               classifier=trial.suggest_categorical("classifier", ["logreg", "svm"]),
               C=trial.suggest_float("C", 1e-2, 1e3, log=True),
               balanced=trial.suggest_categorical("balanced", [False, True]))
    return cfg


def train_none(trial, info: DataInfo) -> dict[str, Any]:
    """``SearchSpace.train`` of the scikit-learn spaces: no gradient training, nothing to
    suggest (training parameters are shared by a study's spaces; this one adds none)."""
    return {}


#: What a practitioner tries first: word 1-2-grams and character 2-5-grams, sublinear TF,
#: logistic regression with a weak penalty.
STARTS = ({"analyzer": "both", "word_ngrams": 2, "char_ngrams": "2,5", "min_df": 1, "sublinear_tf": True,
           "max_features": 0, "classifier": "logreg", "C": 10.0, "balanced": False},)


def vectorizer(cfg: dict[str, Any], rows: int | None = None):
    """The TF-IDF features of a config: one ``TfidfVectorizer`` or a ``FeatureUnion`` of the
    word and character ones. ``rows`` (the number of training texts) lowers ``min_df`` to 1 on
    tiny data, where a higher one could leave no term at all."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    min_df = int(cfg.get("min_df", 1)) if rows is None or rows >= 50 * int(cfg.get("min_df", 1)) else 1
    common = dict(lowercase=True, min_df=min_df, sublinear_tf=bool(cfg.get("sublinear_tf", True)),
                  max_features=int(cfg.get("max_features") or 0) or None, dtype=np.float32)
    parts = []
    if cfg["analyzer"] in ("word", "both"):
        parts.append(("word", TfidfVectorizer(analyzer="word", token_pattern=WORD_PATTERN,
                                              ngram_range=(1, int(cfg["word_ngrams"])), **common)))
    if cfg["analyzer"] in ("char_wb", "both"):
        lo, hi = (int(v) for v in str(cfg["char_ngrams"]).split(","))
        parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(lo, hi), **common)))
    if not parts:
        raise ValueError(f"unknown analyzer {cfg['analyzer']!r}; valid: word, char_wb, both")
    return parts[0][1] if len(parts) == 1 else FeatureUnion(parts)


def classifier(cfg: dict[str, Any], y: np.ndarray):
    """The linear model of a config, for the train labels ``y``: ``LogisticRegression``, or
    ``LinearSVC`` with sigmoid-calibrated probabilities (3-fold; logistic regression where a
    class has fewer than 3 texts). One class only: the class prior (``DummyClassifier``)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    counts = np.bincount(y)
    counts = counts[counts > 0]
    if len(counts) < 2:
        return DummyClassifier(strategy="prior")
    weight = "balanced" if cfg.get("balanced") else None
    C = float(cfg.get("C", 1.0))
    if cfg.get("classifier") == "svm" and counts.min() >= 3:
        return CalibratedClassifierCV(LinearSVC(C=C, class_weight=weight), cv=3, method="sigmoid")
    return LogisticRegression(C=C, class_weight=weight, max_iter=2000)


class TfidfModel:
    """An :class:`automl.ArrayModel`: a scikit-learn ``Pipeline`` of TF-IDF features and a
    linear classifier, fitted on the raw texts of the train split."""

    def __init__(self, cfg: dict[str, Any], info: DataInfo) -> None:
        self.cfg, self.num_classes = dict(cfg), int(info.num_classes or 2)
        self.pipeline: Any = None

    def fit(self, train: Split, val: Split, info: DataInfo) -> None:
        """Fit the pipeline on the train split's texts (``val`` is not used)."""
        from sklearn.pipeline import Pipeline

        texts, y = texts_of(train.inputs), train.targets.cpu().numpy().astype(np.int64)
        self.pipeline = Pipeline([("features", vectorizer(self.cfg, len(texts))), ("model", classifier(self.cfg, y))])
        self.pipeline.fit(texts, y)

    def predict(self, inputs: Any) -> np.ndarray:
        """``(N, C)`` class probabilities (columns of classes absent from train are 0)."""
        if self.pipeline is None:
            raise RuntimeError("the model is not fitted")
        return expand(self.pipeline.predict_proba(texts_of(inputs)), self.pipeline.classes_, self.num_classes)

    def save(self, folder: Path) -> None:
        """Write the fitted pipeline into ``folder`` with skops (no pickle)."""
        import skops.io

        skops.io.dump(self.pipeline, Path(folder) / MODEL_FILE)

    def load(self, folder: Path) -> None:
        """Read what :meth:`save` wrote (see :func:`load_skops`)."""
        self.pipeline = load_skops(Path(folder) / MODEL_FILE)


def expand(proba: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities over the classes a model saw, as ``(N, num_classes)`` columns."""
    out = np.zeros((len(proba), num_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def load_skops(path: Path) -> Any:
    """Load a skops file, trusting only :data:`ALLOWED_TYPES` (:func:`automl.training.load_skops`)."""
    return load_trusted_skops(path, ALLOWED_TYPES, "a tfidf model")


def build_tfidf(cfg: dict[str, Any], info: DataInfo) -> TfidfModel:
    """Build the (unfitted) :class:`TfidfModel` of a config."""
    return TfidfModel(cfg, info)


def fit_tfidf_logreg(data: DataBundle, metric: Metric) -> dict[str, Any]:
    """Baseline: word 1-2-gram and character 2-5-gram TF-IDF (sublinear TF) and logistic
    regression whose ``C`` is chosen by 5-fold cross-validation on the train split only
    (``GridSearchCV``), refitted on all of train; scored on validation and test. For speed the
    TF-IDF vocabulary and weights are fitted once on the whole train split (they use no
    label); the folds refit only the classifier. Returns the validation and test
    predictions too, so the row joins the study's ensembles."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    texts = split_texts(data)
    y = data.train.targets.cpu().numpy().astype(np.int64)
    vec = vectorizer(dict(STARTS[0]), len(y))
    X = vec.fit_transform(texts["train"])
    counts = np.bincount(y)[np.bincount(y) > 0]
    # liblinear: several times faster than lbfgs at the weak penalties TF-IDF wants (binary tasks)
    model: Any = LogisticRegression(max_iter=2000, solver="liblinear" if len(counts) == 2 else "lbfgs")
    folds = int(min(5, counts.min()))
    if folds >= 2:
        model = GridSearchCV(model, {"C": [1.0, 3.0, 10.0, 30.0, 100.0]},
                             cv=StratifiedKFold(folds, shuffle=True, random_state=0), n_jobs=1)
    model.fit(X, y)
    scores: dict[str, Any] = {}
    for name in ("val", "test"):
        proba = expand(model.predict_proba(vec.transform(texts[name])), model.classes_, int(data.info.num_classes))
        scores[name] = float(metric.fn(data.split(name).targets.cpu().numpy(), proba))
        scores[f"{name}_pred"] = proba
    return scores
