"""How a Ray trial's end becomes its Optuna state (no Ray is started here): the last result the
trainable reports, and the searcher's reading of it. A trial the objective prunes itself (too
slow for a time budget, or rejected before training under a constraint) must be PRUNED on the
Ray backend as on the local one, not a failure that counts against ``--max-failures``."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

pytest.importorskip("ray", reason="the ray extra is not installed")
from automl.backends.ray_trial import classify, outcome


def _raises(exc):
    def run():
        raise exc
    return run


@pytest.mark.parametrize("run, state, value", [
    (lambda: 0.75, TrialState.COMPLETE, 0.75),
    (lambda: [0.9, 0.03], TrialState.COMPLETE, [0.9, 0.03]),
    (_raises(optuna.TrialPruned("rejected before training: params 65 misses params<=40")), TrialState.PRUNED, None),
    (_raises(optuna.TrialPruned("too slow for the time budget: ...")), TrialState.PRUNED, None),
    (_raises(RuntimeError("boom")), TrialState.FAIL, None),
])
def test_a_trainables_outcome_becomes_the_trials_state(run, state, value):
    result = outcome(run)
    got_state, got_value, error = classify(result, error=False, stopping=False)
    assert (got_state, got_value) == (state, value)
    if state == TrialState.FAIL:
        assert error == "RuntimeError: boom"
    if state == TrialState.PRUNED:
        assert result["automl_pruned"].startswith(("rejected", "too slow"))
