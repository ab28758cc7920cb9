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
    # Every trial is cut, whatever the machine's load: an epoch (4 batches of 0.75 s sleep) is
    # ~3 s, one trial's share of the budget is (20 - 3 reserve) * 2 workers / 8 = 4.25 s, and a
    # trial runs at least 2 epochs, so each is cut inside its second epoch and keeps the first.
    # (With 1 s epochs the search fitted whole trials into the budget when the machine was
    # loaded, and nothing was left running to cut: a timing assumption, not a product bug.)
    monkeypatch.setenv("TINYPLUG_DELAY", "0.75")
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--workers", "2",
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
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--timeout", "20", "--study", "bshare")
    assert r.code == 0, r.err
    rows = optuna.load_study(study_name="bshare", storage=f"sqlite:///{studies / 'bshare' / 'study.db'}") \
        .user_attrs["automl:baselines"]
    assert rows["mean"]["predictions"] and "val" in rows["mean"]
    assert "over its share of the time budget (2 s of --timeout 20)" in rows["sleepy"]["error"]
    assert (studies / "bshare" / "baselines" / "mean" / "predictions.npz").exists()
    assert "sleepy: failed: not fitted" in r.out  # shown in the leaderboard, and the command ended
    monkeypatch.setenv("TINYPLUG_BASELINE_SLEEP", "0")
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "bfull")
    rows = optuna.load_study(study_name="bfull", storage=f"sqlite:///{studies / 'bfull' / 'study.db'}") \
        .user_attrs["automl:baselines"]
    assert r.code == 0 and set(rows) == {"mean", "sleepy"} and all("error" not in v for v in rows.values())
