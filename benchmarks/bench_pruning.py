"""Pruning pay-off: the compute ``--pruner asha`` and ``--pruner none`` spend to reach the same
best validation accuracy.

Two studies of the vision plugin (digits, ``mlp`` space, random sampler, seed 0, one worker,
at most 15 epochs, 20 trials) differ only in the pruner. With one worker the seeded random
sampler draws the same configs in the same order on both sides (two workers interleave their
trials by timing, and an earlier run's figure depended on which good config happened to come
first), so ASHA's saving is the epochs it cuts from poor ones. Trials are taken in order
of completion; the target is the lower of the two studies' best validation accuracies (the
best that both reach), and for each study we count the epochs run (every trial's reported
epochs, pruned trials included) and the trial-seconds spent until a trial first reaches it.
The figure is ``none / asha``: above 1 means pruning paid.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._common import load_avg, ratio, studies_dir


def _search(pruner: str, trials: int, max_epochs: int) -> dict[str, Any]:
    from optuna.trial import TrialState

    from automl import _engine

    req = _engine.SearchRequest(plugin="vision", spaces=["mlp"], sampler="random", pruner=pruner, seed=0,
                                trials=trials, workers=1, study=f"prune-{pruner}", max_epochs=max_epochs, gpus="none")
    session = _engine.plan_search(req)
    _engine.create_study(session)
    start = time.perf_counter()
    _engine.run(session)
    wall = time.perf_counter() - start
    rows = []
    for t in session.ref.load().get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        values = t.intermediate_values
        best = max(values.values()) if values else float("-inf")
        rows.append((t.datetime_complete, len(values), (t.datetime_complete - t.datetime_start).total_seconds(),
                     best, t.state == TrialState.PRUNED))
    rows.sort(key=lambda r: r[0])
    return {"wall_s": wall, "rows": rows}


def _cost_to(rows: list[tuple], target: float) -> tuple[int, float]:
    epochs, seconds = 0, 0.0
    for _, n_epochs, secs, best, _ in rows:
        epochs, seconds = epochs + n_epochs, seconds + secs
        if best >= target - 1e-12:
            return epochs, seconds
    return epochs, seconds


def run(quick: bool = False) -> dict[str, Any]:
    """Both studies; epochs and trial-seconds to the common best, and their ratios."""
    trials, max_epochs = (4, 3) if quick else (20, 15)
    with studies_dir("automl-bench-prune-"):
        sides = {p: _search(p, trials, max_epochs) for p in ("none", "asha")}
    target = min(max(r[3] for r in s["rows"]) for s in sides.values())
    out: dict[str, Any] = {"name": "pruning pay-off", "trials": trials, "max_epochs": max_epochs,
                           "target_val_acc": round(target, 4)}
    for p, s in sides.items():
        epochs, seconds = _cost_to(s["rows"], target)
        out[p] = {"epochs_to_target": epochs, "trial_s_to_target": round(seconds, 1),
                  "epochs_total": sum(r[1] for r in s["rows"]), "pruned": sum(r[4] for r in s["rows"]),
                  "best_val_acc": round(max(r[3] for r in s["rows"]), 4), "wall_s": round(s["wall_s"], 1)}
    out["epochs_saving"] = ratio(out["none"]["epochs_to_target"], out["asha"]["epochs_to_target"])
    out["trial_s_saving"] = ratio(out["none"]["trial_s_to_target"], out["asha"]["trial_s_to_target"])
    out["load_avg_1m"] = load_avg()
    return out
