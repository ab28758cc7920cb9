"""The Ray Tune backend end to end: a local Ray search, its resume on the local backend, and a
search on a ``ray start`` cluster. Each starts Ray (seconds), so there are only two."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
from _ray_node import start_head

pytestmark = pytest.mark.ray
# No ensemble and no refit: what happens after the last trial is not the point here, and both
# train the best models again in the search process (tests/test_refit.py covers them).
QUICK = ["--plugin", "vision", "--space", "mlp", "--max-epochs", "2", "--ensemble", "0", "--refit", "off"]


def _trials(studies, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name / 'study.db'}").trials


def test_ray_search_then_resume_on_local_backend(cli, studies, installed, tmp_path, monkeypatch):
    heard = tmp_path / "listener.jsonl"  # the always-on fixture_listener plugin writes here
    monkeypatch.setenv("AUTOML_LISTENER_FILE", str(heard))
    res = cli("search", *QUICK, "--backend", "ray", "--trials", "4", "--workers", "2", "--study", "r1",
              "--pruner", "none")
    assert res.code == 0, res.err
    events = [json.loads(line) for line in heard.read_text().splitlines()]
    starts = [e for e in events if e["hook"] == "on_trial_start"]
    assert sorted(e["number"] for e in starts) == [0, 1, 2, 3]
    assert os.getpid() not in {e["pid"] for e in starts}  # heard in Ray's worker processes
    assert sum(e["hook"] == "on_trial_end" for e in events) == 4 and any(e["hook"] == "on_epoch_end" for e in events)
    assert [e["pid"] for e in events if e["hook"] == "on_study_end"] == [os.getpid()]
    assert "Configuration for experiment" not in res.out and "Trial status" not in res.out
    rows = cli("leaderboard", "r1", "--format", "json").json()
    assert len(rows) == 4 and all(r["state"] == "COMPLETE" and r["value"] is not None for r in rows)
    trials = _trials(studies, "r1")
    for t in trials:
        assert t.user_attrs["worker"]["backend"] == "ray" and t.user_attrs["worker"]["device"] == "cpu"
        assert t.user_attrs["run"]["epochs_run"] == 2 and t.user_attrs["config"]["space"] == "mlp"
        assert len(t.intermediate_values) == 2
        assert (studies / "r1" / "trials" / str(t.number) / "model.pt").exists()
    assert (studies / "r1" / "best" / "model.pt").exists()
    assert (studies / "r1" / "ray" / "logs").is_dir()
    assert any(p.name.startswith("tune-") for p in (studies / "r1" / "ray").iterdir())

    res = cli("resume", "r1", "--trials", "2", "--backend", "local")
    assert res.code == 0, res.err
    rows = cli("leaderboard", "r1", "--format", "json").json()
    assert len(rows) == 6 and sum(r["state"] == "COMPLETE" for r in rows) == 6
    assert [t.user_attrs.get("worker", {}).get("backend") for t in _trials(studies, "r1")].count("ray") == 4
    summary = [s for s in cli("studies", "--format", "json").json() if s["name"] == "r1"]
    assert summary and summary[0]["finished"] == 6


def _cluster_logs(temp: str, lines: int = 15) -> str:
    """The end of each non-empty log of the cluster's node (raylet, agents, workers): what a
    failed search on the cluster is read from, since the folder is removed after the test."""
    out = []
    for path in sorted(Path(temp).glob("session_2*/logs/*")):
        if path.is_file() and path.suffix in (".err", ".out", ".log") and path.stat().st_size:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"\n--- {path.name}\n" + "\n".join(tail))
    return "".join(out)


def test_search_on_a_ray_start_cluster(cli, studies, postgres_db):
    """A Ray cluster needs a storage every node reaches: PostgreSQL (SQLite is refused)."""
    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's Unix socket paths
    try:
        head, address = start_head(temp, "--num-cpus", "2")
        try:
            res = cli("search", *QUICK, "--backend", "ray", "--address", address,
                      "--trials", "2", "--study", "c1", "--storage", postgres_db)
            assert res.code == 0, res.err + _cluster_logs(temp)
            trials = optuna.load_study(study_name="c1", storage=postgres_db).trials
            assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2
            # the trials ran in the cluster's workers, not in a Ray started by the search
            ports = {t.user_attrs["worker"]["ray"]["address"].rsplit(":", 1)[1] for t in trials}
            assert ports == {address.rsplit(":", 1)[1]}
            assert not (studies / "c1" / "ray" / "logs").exists()
        finally:
            # stop exactly this cluster: its process group (`ray stop` would stop every Ray here)
            try:
                os.killpg(head.pid, 15)
                head.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
            try:
                os.killpg(head.pid, 9)
            except ProcessLookupError:
                pass
            head.wait(timeout=10)
    finally:
        subprocess.run(["rm", "-rf", temp], check=False)
