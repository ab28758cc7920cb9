"""The report's figures: matplotlib (Agg, no display), each returned as PNG bytes.

Why matplotlib PNGs and not plotly: a plotly report must embed plotly.js (about 4.6 MB) to
open offline, which alone nearly fills the 5 MB budget; PNGs of these plots weigh 20-80 KB
each and need no JavaScript to draw. See docs/results.md.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

DPI = 96
COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "best": "#2ca02c"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return buf.getvalue()


def _better(maximize: bool):
    return max if maximize else min


def history(trials: list[FrozenTrial], maximize: bool, metric: str) -> bytes:
    """Objective of every finished trial and the best so far, over trial number and over wall time."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    ax1.scatter([t.number for t in done], [t.value for t in done], s=18, color=COLORS["COMPLETE"], label="complete")
    if pruned:
        ax1.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                    s=18, marker="x", color=COLORS["PRUNED"], label="pruned (last value)")
    start = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    best, xs, ys, ts, tys = None, [], [], [], []
    for t in sorted(done, key=lambda t: t.number):
        best = t.value if best is None else _better(maximize)(best, t.value)
        xs.append(t.number)
        ys.append(best)
    for t in sorted(done, key=lambda t: t.datetime_complete or t.datetime_start):
        when = t.datetime_complete or t.datetime_start
        if start is None or when is None:
            continue
        value = t.value if not tys else _better(maximize)(tys[-1], t.value)
        ts.append((when - start).total_seconds())
        tys.append(value)
    if xs:
        ax1.step(xs, ys, where="post", color=COLORS["best"], label="best so far")
    ax1.set(xlabel="trial", ylabel=metric, title="by trial")
    ax1.legend(fontsize=8)
    if ts:
        ax2.step(ts, tys, where="post", color=COLORS["best"], marker="o", markersize=3)
    ax2.set(xlabel="wall time since the first trial started (s)", ylabel=f"best {metric}", title="by wall time")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return _png(fig)


def importances(values: dict[str, float]) -> bytes:
    """Horizontal bars of the parameters' importances."""
    plt = _plt()
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color=COLORS["COMPLETE"])
    ax.set(xlabel="importance (share of the objective's variance)", xlim=(0, max(1e-9, max(values.values())) * 1.1))
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _axis(trials: list[FrozenTrial], name: str) -> tuple[list[float], list[str] | None, bool]:
    """A parameter's values scaled to 0..1, the tick labels of a categorical one, log scale."""
    dist = next(t.distributions[name] for t in trials if name in t.distributions)
    raw = [t.params.get(name) for t in trials]
    if isinstance(dist, CategoricalDistribution):
        choices = [str(c) for c in dist.choices]
        span = max(1, len(choices) - 1)
        return [choices.index(str(v)) / span if v is not None else math.nan for v in raw], choices, False
    log = isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log
    low, high = float(dist.low), float(dist.high)
    f = (lambda x: math.log(x)) if log and low > 0 else float
    lo, hi = f(low), f(high)
    return [(f(v) - lo) / (hi - lo) if v is not None and hi > lo else (0.5 if v is not None else math.nan)
            for v in raw], None, log


def parallel(trials: list[FrozenTrial], params: list[str], metric: str, maximize: bool) -> bytes:
    """Parallel coordinates: one line per complete trial through its parameters and objective,
    coloured by the objective (the best trials drawn last, on top)."""
    plt = _plt()
    import matplotlib as mpl

    done = sorted([t for t in trials if t.state == TrialState.COMPLETE and t.value is not None],
                  key=lambda t: t.value, reverse=not maximize)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * (len(params) + 1)), 3.8))
    values = [t.value for t in done]
    vmin, vmax = min(values), max(values)
    norm = mpl.colors.Normalize(vmin, vmax if vmax > vmin else vmin + 1e-9)
    cmap = mpl.colormaps["viridis" if maximize else "viridis_r"]
    columns = [_axis(done, p) for p in params]
    obj = [(v - vmin) / (vmax - vmin) if vmax > vmin else 0.5 for v in values]
    xs = list(range(len(params) + 1))
    for i, t in enumerate(done):
        ys = [col[0][i] for col in columns] + [obj[i]]
        ax.plot(xs, ys, color=cmap(norm(t.value)), alpha=0.8, linewidth=1.2)
    for x, (_, labels, _log) in enumerate(columns):
        ax.axvline(x, color="#888", linewidth=0.8)
        if labels:
            for j, label in enumerate(labels):
                ax.text(x + 0.03, j / max(1, len(labels) - 1), label, fontsize=7, va="center")
    ax.axvline(len(params), color="#888", linewidth=0.8)
    ax.set_xticks(xs, [p + (" (log)" if c[2] else "") for p, c in zip(params, columns)] + [metric],
                  rotation=20, fontsize=8)
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set_xlim(-0.2, len(params) + 0.4)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    return _png(fig)


def curves(trials: list[FrozenTrial], metric: str, best_number: int | None) -> bytes:
    """Validation metric per epoch of every trial; pruned trials dashed, ending in a cross."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labelled: set[str] = set()
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        vals = [t.intermediate_values[s] for s in steps]
        state = t.state.name
        if t.number == best_number:
            kind, style = "best", dict(color=COLORS["best"], linewidth=2.4, zorder=3)
        elif state == "PRUNED":
            kind, style = "pruned", dict(color=COLORS["PRUNED"], linestyle="--", linewidth=1, alpha=0.8)
        else:
            kind, style = state.lower(), dict(color=COLORS["COMPLETE"], linewidth=1, alpha=0.6)
        ax.plot(steps, vals, label=None if kind in labelled else kind, **style)
        labelled.add(kind)
        if state == "PRUNED":
            ax.scatter([steps[-1]], [vals[-1]], marker="x", color=COLORS["PRUNED"], s=30)
    ax.set(xlabel="epoch", ylabel=f"validation {metric}")
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=8)
    return _png(fig)


def confusion(matrix: list[list[int]], names: list[str]) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted), counts written in the cells."""
    plt = _plt()
    n = len(names)
    size = min(10, max(3.5, 0.45 * n + 2))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(matrix, cmap="Blues")
    top = max((max(r) for r in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if n <= 30:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7 if n > 12 else 9,
                        color="white" if v > top / 2 else "black")
    labels = [str(x)[:12] for x in names]
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    fig.colorbar(im, ax=ax)
    return _png(fig)


def pareto(study: optuna.Study, names: list[str] | None) -> bytes:
    """A multi-objective study's trials in objective space with the Pareto front highlighted:
    Optuna's own ``plot_pareto_front`` (its matplotlib backend, so the report stays PNG)."""
    plt = _plt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        from optuna.visualization.matplotlib import plot_pareto_front

        ax = plot_pareto_front(study, target_names=names)
    fig = ax.figure
    fig.set_size_inches(7, 4.2)
    ax.set_title("Pareto front" + (f" ({' vs '.join(names)})" if names else ""))
    plt.figure(fig.number)
    return _png(fig)


def importance_values(study: optuna.Study) -> tuple[dict[str, float], str | None]:
    """Importances by Optuna's default evaluator (of the primary objective in a
    multi-objective study), or ``({}, reason)`` when they cannot be computed."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return {}, "needs at least 2 complete trials"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
            values = optuna.importance.get_param_importances(study, target=target)
    except Exception as exc:  # noqa: BLE001 - the report shows why instead
        return {}, f"{type(exc).__name__}: {exc}"
    if not values:
        return {}, "no parameter is shared by every complete trial"
    return {k: float(v) for k, v in values.items()}, None


def shared_params(trials: list[FrozenTrial]) -> list[str]:
    """Parameters present in every complete trial, in first-seen order."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        return []
    names = list(dict.fromkeys(k for t in done for k in t.params))
    return [n for n in names if all(n in t.params for t in done)]


def plot_all(study: optuna.Study, metric: str, best_number: int | None,
             best: dict[str, Any] | None) -> tuple[dict[str, bytes], dict[str, str], dict[str, float]]:
    """Every figure of the report: ``(pngs by section, notes by section, importances)``. In a
    multi-objective study the history and parallel coordinates show the study's metric (each
    trial's value read as :func:`automl.study.results.metric_value` gives it), and the
    ``pareto`` section draws the front."""
    import copy

    from automl.study.results import is_multi, metric_value
    from automl.study.store import SPEC_KEY

    trials = study.get_trials(deepcopy=False)
    pngs: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    if is_multi(study):
        spec = study.user_attrs.get(SPEC_KEY) or {}
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        if done:
            pngs["pareto"] = pareto(study, list(spec.get("objectives") or []) or None)
        else:
            notes["pareto"] = "no trial completed yet"
        views = []
        for t in trials:  # one value per trial (the metric's), for the plots drawn for one objective
            view = copy.copy(t)
            if t.values:
                value = metric_value(study, t)
                view._values = [value] if value is not None else None
            views.append(view)
        trials = views
        maximize = spec.get("direction", "maximize") == "maximize"
    else:
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if finished:
        pngs["history"] = history(trials, maximize, metric)
    else:
        notes["history"] = "no trial finished yet"
    imp, why = importance_values(study)
    if imp:
        pngs["importances"] = importances(imp)
    else:
        notes["importances"] = f"not computed: {why}"
    params = shared_params(trials)
    if imp:
        params = [p for p in sorted(imp, key=imp.get, reverse=True) if p in params][:10] or params[:10]
    if params and sum(t.state == TrialState.COMPLETE for t in trials) >= 2:
        pngs["parallel"] = parallel(trials, params[:10], metric, maximize)
    else:
        notes["parallel"] = "needs at least 2 complete trials with shared parameters"
    if any(t.intermediate_values for t in trials):
        pngs["curves"] = curves(trials, metric, best_number)
    else:
        notes["curves"] = "no trial reported an epoch yet"
    if best and best.get("confusion_matrix"):
        pngs["confusion"] = confusion(best["confusion_matrix"], best.get("class_names") or [])
    return pngs, notes, imp
