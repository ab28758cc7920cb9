"""The ``svc`` baseline row: an RBF support vector machine on the flattened pixels.

What a practitioner runs before any network on small images: scikit-learn's ``SVC`` on the
pixels scaled to 0..1, its ``C`` and ``gamma`` tuned by 5-fold cross-validation on the train
split only (``GridSearchCV``), then scored on the validation and test splits with the search's
metric. Class scores are the SVM's one-vs-rest decision values through a softmax: their argmax
is the SVM's prediction, and metrics that read probabilities (top-5) get a ranking.

An SVM's cost grows with the square of the rows: the grid is searched on at most
:data:`CV_ROWS` train images and the chosen model refitted on at most :data:`FIT_ROWS`
(a random subset of the train split), so the row takes seconds on the digits (about 4 s on
one core) and stays bounded on MNIST or CIFAR-10. Under ``--timeout`` core stops baselines
that overrun their share of the budget (:mod:`automl.search.baselines`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from automl import DataBundle, Metric, Split, UserError

#: ``C`` values searched (a decade apart), and ``gamma`` as multiples of scikit-learn's
#: ``"scale"`` heuristic (1 / (pixels x pixel variance)), an octave apart around it: on the
#: digits the cross-validated optimum is inside this grid (2x "scale"), not on its edge.
C_GRID = (1.0, 10.0, 100.0, 1000.0)
GAMMA_FACTORS = (0.5, 1.0, 2.0, 4.0)
CV_FOLDS = 5
CV_ROWS = 3000
FIT_ROWS = 5000


def pixels(split: Any) -> np.ndarray:
    """A split's images ``(N, C, H, W)`` as float rows ``(N, C*H*W)`` on the 0..1 scale."""
    if not isinstance(split, Split) or not isinstance(split.inputs, torch.Tensor):
        raise UserError("the svc baseline needs images held in memory (not streamed from disk)")
    x = split.inputs.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.reshape(len(x), -1).numpy()


def _scores(model: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Softmax of the one-vs-rest decision values, on all ``n_classes`` columns."""
    d = model.decision_function(x)
    if d.ndim == 1:  # two classes: one decision value, positive for classes_[1]
        d = np.stack([-d, d], axis=1)
    d = d - d.max(axis=1, keepdims=True)
    p = np.exp(d)
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros((len(x), n_classes))
    out[:, np.asarray(model.classes_, dtype=int)] = p
    return out


def fit_svc(data: DataBundle, metric: Metric, *, c_grid: tuple[float, ...] = C_GRID,
            gamma_factors: tuple[float, ...] = GAMMA_FACTORS, folds: int = CV_FOLDS) -> dict[str, Any]:
    """Tune ``SVC(kernel="rbf")`` by ``folds``-fold stratified cross-validation on the train
    split over ``c_grid`` x ``gamma_factors`` (multiples of the ``"scale"`` gamma), refit the
    best on the train split, and score it on val and test with ``metric``. Returns ``val``,
    ``test``, the chosen ``C`` and ``gamma``, and the class scores ``val_pred`` / ``test_pred``
    (stored with the study like a trial's predictions). The keywords let a caller (a test)
    search a smaller grid; the registered row uses the defaults.

    The cross-validation is scikit-learn's ``GridSearchCV`` over ``C`` on a kernel matrix
    computed once per ``gamma`` (``kernel="precomputed"``): the same folds and the same choice
    as one grid search over both, in about half the time (the RBF kernel is then not
    recomputed for every ``C`` and fold)."""
    from sklearn.metrics.pairwise import rbf_kernel
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    x, y = pixels(data.train), data.train.targets.detach().cpu().numpy().astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))  # the caps take a random subset
    x, y = x[order], y[order]
    scale = 1.0 / (x.shape[1] * max(float(x[:FIT_ROWS].var()), 1e-12))
    gammas = [scale * f for f in gamma_factors]
    xc, yc = x[:CV_ROWS], y[:CV_ROWS]
    folds = min(folds, int(np.unique(yc, return_counts=True)[1].min()))  # every class in every fold
    best = {"C": c_grid[len(c_grid) // 2], "gamma": gammas[len(gammas) // 2]}  # when it cannot cross-validate
    if len(c_grid) * len(gammas) > 1 and folds >= 2:
        cv, best_score = StratifiedKFold(folds, shuffle=True, random_state=0), -np.inf
        for gamma in gammas:  # ties keep the first: the smaller gamma, then the smaller C
            search = GridSearchCV(SVC(kernel="precomputed"), {"C": list(c_grid)}, cv=cv, n_jobs=1)
            search.fit(rbf_kernel(xc, xc, gamma=gamma), yc)
            if search.best_score_ > best_score:
                best_score, best = search.best_score_, {"C": search.best_params_["C"], "gamma": gamma}
    model = SVC(kernel="rbf", C=best["C"], gamma=best["gamma"]).fit(x[:FIT_ROWS], y[:FIT_ROWS])
    n_classes = int(data.info.num_classes or int(y.max()) + 1)
    out: dict[str, Any] = {"C": float(best["C"]), "gamma": float(best["gamma"])}
    for name in ("val", "test"):
        split = data.split(name)
        pred = _scores(model, pixels(split), n_classes)
        out[name] = float(metric.fn(split.targets.detach().cpu().numpy(), pred))
        out[f"{name}_pred"] = pred
    return out
