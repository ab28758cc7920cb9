"""Time budgets: --timeout bounds the whole search and cuts the trials still running at its end
after their current batch (they keep their best epoch), --trial-timeout cuts any one trial, and
a cut trial is a finished trial that resume knows about. Real worker processes."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

TINY = str(Path(__file__).parent / "data" / "tinyplug.py")


def _trials(studies: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name / 'study.db'}").trials


def test_the_budget_cuts_running_trials_which_keep_their_best_epoch(cli, studies, monkeypatch):
    # Every trial is cut, whatever the machine's load: an epoch (4 batches of 0.375 s sleep) is
    # ~1.5 s, one trial's share of the budget is (20 - 3 reserve) * 1 worker / 8 = 2.1 s, and a
    # trial runs at least 2 epochs, so each is cut inside its second epoch and keeps the first.
    # (With 1 s epochs and 2 workers the search fitted whole trials into the budget when the
    # machine was loaded, and nothing was left running to cut: a timing assumption, not a
    # product bug. One worker and short epochs also leave the most of the budget for trials
    # when a loaded machine makes start-up slow.)
    monkeypatch.setenv("TINYPLUG_DELAY", "0.375")
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--workers", "1",
            "--timeout", "20", "--study", "budget")
    assert r.code == 0, r.err
    assert "as many trials as the budget allows" in r.out and "budget 20 s" in r.out
    trials = _trials(studies, "budget")
    cut = [t for t in trials if (t.user_attrs.get("run") or {}).get("cut") == "budget"]
    assert cut, [(t.number, t.state, t.user_attrs.get("run")) for t in trials]
    for t in cut:  # kept as finished, with the best of the epochs it validated
        assert t.state == TrialState.COMPLETE and t.intermediate_values
        assert t.value == max(t.intermediate_values.values()) or t.value == min(t.intermediate_values.values())
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not [t for t in trials if t.state == TrialState.FAIL]
    rows = {row["number"]: row for row in cli("leaderboard", "budget", "--format", "json").json()}
    assert all(rows[t.number]["cut"] == "budget" and rows[t.number]["state"] == "COMPLETE" for t in cut)
    table = cli("leaderboard", "budget")
    assert "cut by the time budget" in table.out
    dry = cli("resume", "budget", "--dry-run")
    assert dry.code == 0 and "cut by the time budget" in dry.out
    more = cli("resume", "budget", "--trials", "1", "--timeout", "20")
    assert more.code == 0, more.err
    finished = [t for t in _trials(studies, "budget") if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) + 1


def test_trial_timeout_cuts_one_trial_at_an_epoch_end(cli, studies, monkeypatch):
    monkeypatch.setenv("TINYPLUG_DELAY", "0.1")
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--trials", "2",
            "--trial-timeout", "1", "--study", "per-trial")
    assert r.code == 0, r.err
    for t in _trials(studies, "per-trial"):
        run = t.user_attrs["run"]
        assert t.state == TrialState.COMPLETE and run["cut"] == "trial-timeout"
        assert 1 <= run["epochs_run"] < 6 and len(t.intermediate_values) == run["epochs_run"]


def test_baselines_take_at_most_their_share_of_the_budget(cli, studies, monkeypatch):
    """Under --timeout the baselines fit in a child process stopped at their share (10 %) of
    the budget: the one that sleeps past it is recorded as not fitted, the quick one is kept
    with its stored predictions, and the search goes on. Without a budget both are fitted."""
    monkeypatch.setenv("TINYPLUG_BASELINES", "1")
    monkeypatch.setenv("TINYPLUG_BASELINE_SLEEP", "30")
    # --trials 1: the search ends after one trial instead of filling the rest of the budget
    # with trials (the baselines' share is 10 % of --timeout either way). The share must leave
    # the baseline process time to start, load the data and fit the quick one: with --timeout 20
    # (2 s) that failed about 1 run in 3 with both cores busy (a full suite on two workers).
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--timeout", "60", "--trials", "1",
            "--study", "bshare")
    assert r.code == 0, r.err
    rows = optuna.load_study(study_name="bshare", storage=f"sqlite:///{studies / 'bshare' / 'study.db'}") \
        .user_attrs["automl:baselines"]
    assert rows["mean"]["predictions"] and "val" in rows["mean"]
    assert "over its share of the time budget (6 s of --timeout 60)" in rows["sleepy"]["error"]
    assert (studies / "bshare" / "baselines" / "mean" / "predictions.npz").exists()
    assert "sleepy: failed: not fitted" in r.out  # shown in the leaderboard, and the command ended
    monkeypatch.setenv("TINYPLUG_BASELINE_SLEEP", "0")
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "bfull")
    rows = optuna.load_study(study_name="bfull", storage=f"sqlite:///{studies / 'bfull' / 'study.db'}") \
        .user_attrs["automl:baselines"]
    assert r.code == 0 and set(rows) == {"mean", "sleepy"} and all("error" not in v for v in rows.values())


def test_the_speed_probe_times_batches_after_the_first_one():
    """A slow first batch (start-up on a loaded machine) does not get a fast configuration
    pruned as too slow; a configuration whose every batch is slow is pruned after a few."""
    import time

    import pytest

    from automl.search.objective import _SpeedProbe

    probe = _SpeedProbe(time.time() + 4.0, rows=20 * 32, batch_size=32)  # 20 batches per epoch
    time.sleep(2.5)  # the first batch: one-off costs
    probe.batch_done()
    for _ in range(_SpeedProbe.BATCHES + 2):
        time.sleep(0.01)
        probe.batch_done()  # ~0.2 s per epoch from here: not pruned
    slow = _SpeedProbe(time.time() + 2.0, rows=20 * 32, batch_size=32)
    with pytest.raises(optuna.TrialPruned, match="too slow for the time budget"):
        for _ in range(_SpeedProbe.BATCHES + 1):
            time.sleep(0.2)  # ~4 s per epoch against 2 s left
            slow.batch_done()
