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
The figure is ``none / asha``: above 1 means pruning paid. It is summed over three seeds:
with one, the first trial often already reaches the common best on both sides (the same
config and epochs, so 1.0x whatever the pruner saves later). Beside it: the compute of the
whole 20-trial budget on each side, and the best validation accuracy each found.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._common import load_avg, ratio, studies_dir


def _search(pruner: str, trials: int, max_epochs: int, seed: int) -> dict[str, Any]:
    from optuna.trial import TrialState

    from automl.search import session as search_session
    from benchmarks._common import plan

    req = dict(plugin="vision", spaces=["mlp"], sampler="random", pruner=pruner, seed=seed,
                                trials=trials, workers=1, study=f"prune-{pruner}-{seed}", max_epochs=max_epochs,
                                gpus="none")
    session = plan(**req)
    search_session.create_study(session)
    start = time.perf_counter()
    search_session.run(session)
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


def _one_seed(seed: int, trials: int, max_epochs: int) -> dict[str, Any]:
    sides = {p: _search(p, trials, max_epochs, seed) for p in ("none", "asha")}
    target = min(max(r[3] for r in s["rows"]) for s in sides.values())
    out: dict[str, Any] = {"seed": seed, "target_val_acc": round(target, 4)}
    for p, s in sides.items():
        epochs, seconds = _cost_to(s["rows"], target)
        out[p] = {"epochs_to_target": epochs, "trial_s_to_target": round(seconds, 2),
                  "epochs_total": sum(r[1] for r in s["rows"]), "trial_s_total": round(sum(r[2] for r in s["rows"]), 2),
                  "pruned": sum(r[4] for r in s["rows"]), "best_val_acc": round(max(r[3] for r in s["rows"]), 4),
                  "wall_s": round(s["wall_s"], 1)}
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Three seeds of both studies; epochs and trial-seconds to the common best (summed over
    the seeds), and the compute of the whole trial budget with the best each side found."""
    trials, max_epochs, seeds = (4, 3, (0,)) if quick else (20, 15, (0, 1, 2))
    with studies_dir("automl-bench-prune-"):
        runs = [_one_seed(seed, trials, max_epochs) for seed in seeds]

    def total(side: str, key: str) -> float:
        return sum(r[side][key] for r in runs)

    return {"name": "pruning pay-off", "trials": trials, "max_epochs": max_epochs, "seeds": list(seeds), "runs": runs,
            "epochs_saving": ratio(total("none", "epochs_to_target"), total("asha", "epochs_to_target")),
            "trial_s_saving": ratio(total("none", "trial_s_to_target"), total("asha", "trial_s_to_target")),
            "budget_epochs_saving": ratio(total("none", "epochs_total"), total("asha", "epochs_total")),
            "budget_trial_s_saving": ratio(total("none", "trial_s_total"), total("asha", "trial_s_total")),
            "best_val_acc": {side: [r[side]["best_val_acc"] for r in runs] for side in ("none", "asha")},
            "load_avg_1m": load_avg()}
