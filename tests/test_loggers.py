"""Lifecycle hooks fired by a real search, and the csv and tensorboard logger plugins."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from automl import EpochEvent
from automl.plugins import load_registry

RECORDER = str(Path(__file__).parent / "fixtures" / "recorder_plugin.py")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_search_fires_every_lifecycle_hook_and_loggers_write(cli, studies, tmp_path, monkeypatch):
    events_file = tmp_path / "events.jsonl"
    monkeypatch.setenv("AUTOML_RECORDER_FILE", str(events_file))
    r = cli("search", "--plugin-path", RECORDER, "--plugin", "recorder_plugin", "--trials", "2",
            "--max-epochs", "2", "--study", "rec", "--log", "csv", "--log", "tensorboard")
    assert r.code == 0, r.err
    assert "majority" in r.out  # register_baselines: the baseline is a leaderboard row
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    by_hook: dict[str, list[dict]] = {}
    for e in events:
        by_hook.setdefault(e["hook"], []).append(e)

    starts, ends, epochs = by_hook["on_trial_start"], by_hook["on_trial_end"], by_hook["on_epoch_end"]
    assert sorted(e["number"] for e in starts) == [0, 1]
    assert all(e["config"]["space"] == "linear" and e["study_dir"].endswith("rec") for e in starts)
    assert all(e["state"] == "COMPLETE" and isinstance(e["value"], float) and e["duration_s"] > 0 for e in ends)
    for number in (0, 1):
        mine = [e for e in epochs if e["number"] == number]
        assert [e["epoch"] for e in mine] == list(range(len(mine))) and 1 <= len(mine) <= 2
        assert all(e["metric"] == "accuracy" and 0.0 <= e["value"] <= 1.0 for e in mine)
    (study_end,) = by_hook["on_study_end"]
    assert study_end["n_complete"] == 2 and study_end["reason"] == "finished"
    assert study_end["best_value"] == max(e["value"] for e in ends)
    # Trial hooks run in the worker processes; the study hook in the main process.
    assert study_end["pid"] == os.getpid() and all(e["pid"] != os.getpid() for e in starts + ends)

    logs = studies / "rec" / "logs"
    for number in (0, 1):
        curve = _rows(logs / "csv" / f"trial_{number}.csv")
        assert len(curve) == len([e for e in epochs if e["number"] == number])
        assert {"trial", "epoch", "train_loss", "value", "metric", "time"} == set(curve[0])
        assert float(curve[0]["train_loss"]) > 0 and curve[0]["metric"] == "accuracy"
    trials = _rows(logs / "csv" / "trials.csv")
    assert sorted(int(t["trial"]) for t in trials) == [0, 1]
    assert all(t["state"] == "COMPLETE" and "linear.hidden" in json.loads(t["params"]) for t in trials)
    (summary,) = _rows(logs / "csv" / "study.csv")
    assert summary["reason"] == "finished" and int(summary["n_complete"]) == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logs / "tensorboard" / "trial_0"))
    acc.Reload()
    assert {"train/loss", "val/accuracy", "hparam/accuracy"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("val/accuracy")) == len([e for e in epochs if e["number"] == 0])
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.PluginTagToContent("hparams"))
    assert list((logs / "tensorboard" / "study").glob("events.out.tfevents.*"))


def test_opt_in_loggers_fire_only_when_named(tmp_path):
    registry = load_registry()
    event = EpochEvent("s", str(tmp_path), 3, 0, 0.5, 0.9, "accuracy")
    registry.call("on_epoch_end", [], event=event)
    assert not (tmp_path / "logs").exists()
    registry.call("on_epoch_end", ["csv"], event=event)
    (row,) = _rows(tmp_path / "logs" / "csv" / "trial_3.csv")
    assert row["value"] == "0.9" and row["epoch"] == "0"
    assert not (tmp_path / "logs" / "tensorboard").exists()
    assert set(registry.loggers()) >= {"csv", "tensorboard"}


def test_unknown_logger_is_a_one_line_error(cli, studies):
    r = cli("search", "--plugin", "vision", "--log", "nope")
    assert r.code == 2 and "unknown logger 'nope'; loggers: csv, tensorboard" in r.err
    assert len(r.err.strip().splitlines()) == 1 and not studies.exists()


def test_tensorboard_missing_is_listed_and_log_says_how_to_install(cli, studies, monkeypatch):
    # sys.modules[name] = None is how Python marks a package as not importable.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    items = {p["name"]: p for p in cli("plugins", "--format", "json").json()}
    assert items["tensorboard"]["status"] != "ok"
    assert "pip install tensorboard" in items["tensorboard"]["error"]
    assert items["csv"]["status"] == "ok"
    r = cli("search", "--plugin", "vision", "--log", "tensorboard")
    assert r.code == 2, r.err
    assert "logger 'tensorboard' is unavailable" in r.err and "pip install tensorboard" in r.err
    assert len(r.err.strip().splitlines()) == 1 and not studies.exists()


@pytest.mark.parametrize("state, value", [("PRUNED", None), ("FAIL", None)])
def test_tensorboard_logger_handles_unfinished_trials(tmp_path, state, value):
    from automl import TrialEvent
    from automl_plugins.loggers import tensorboard as tb

    tb.on_epoch_end(EpochEvent("s", str(tmp_path), 7, 0, 0.4, 0.6, "accuracy"))
    tb.on_trial_end(TrialEvent("s", str(tmp_path), 7, {"lr": 0.1}, state=state, value=value,
                               error="boom" if state == "FAIL" else None))
    assert not tb._writers  # closed
    assert list((tmp_path / "logs" / "tensorboard" / "trial_7").rglob("events.out.tfevents.*"))


def test_an_always_on_plugin_hears_every_event_in_every_worker(cli, studies, installed, tmp_path, monkeypatch):
    """An installed distribution whose plugin is listed in ``automl.listeners`` hears every
    lifecycle event of a search of another plugin, without --log, in each worker process."""
    events_file = tmp_path / "listener.jsonl"
    monkeypatch.setenv("AUTOML_LISTENER_FILE", str(events_file))
    r = cli("search", "--plugin-path", RECORDER, "--plugin", "recorder_plugin", "--trials", "3", "--workers", "2",
            "--max-epochs", "2", "--study", "heard")
    assert r.code == 0, r.err
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    starts = [e for e in events if e["hook"] == "on_trial_start"]
    ends = [e for e in events if e["hook"] == "on_trial_end"]
    epochs = [e for e in events if e["hook"] == "on_epoch_end"]
    assert sorted(e["number"] for e in starts) == [0, 1, 2] == sorted(e["number"] for e in ends)
    assert len(epochs) >= 3 and all(e["study"] == "heard" for e in events)
    import optuna

    study = optuna.load_study(study_name="heard", storage=f"sqlite:///{studies / 'heard' / 'study.db'}")
    ran_in = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert {e["pid"] for e in starts} == ran_in and os.getpid() not in ran_in  # each worker process heard
    assert [e["pid"] for e in events if e["hook"] == "on_study_end"] == [os.getpid()]
