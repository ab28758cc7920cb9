"""A two-node Ray cluster on one machine: ``ray start --head`` plus a second node started with
``ray start --address`` (its own temp folder, its own ``second`` resource), one CPU each, and
``automl search --backend ray --address`` run as a real process on a PostgreSQL study.

The cluster is started once for the module (about 10 s); one search (about 45 s on 2 cores)
checks both that trials run on both nodes, each trial's node recorded, and that the search
survives the second node's death: once a trial finished on that node and it trains another,
its raylet is killed with SIGKILL. The fixture's teardown checks that no process of the cluster
(raylet, gcs_server, agents, workers) survives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from _ray_node import NODE_PORTS, RAY, start_head

pytestmark = pytest.mark.ray

TINY = str(Path(__file__).resolve().parents[1] / "data" / "tinyplug.py")
TRIALS = 8
#: tinyplug's ``slow`` space sleeps this long per training batch (seconds): trials of about 2 s
#: on the head, and of 4-6 s on the second node, so that a trial seen running there is still
#: running when its node is killed (the worker's environment comes from its node's `ray start`).
DELAY, SECOND_DELAY = "0.06", "0.25"


def _processes() -> list[tuple[int, str, str]]:
    """(pid, name, command line) of every live process (zombies have exited), read from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            name = Path(f"/proc/{entry}/comm").read_text().strip()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.append((int(entry), name, cmdline))
    return out


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _group(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return 0


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = _parent(pid)
    return False


@dataclass
class Cluster:
    address: str  # the head's GCS, HOST:PORT
    temps: tuple[str, str]  # the head's and the second node's temp folders
    head: subprocess.Popen
    second: subprocess.Popen

    def processes(self) -> list[tuple[int, str, str]]:
        """This cluster's processes: those whose command line names its temp folders or its GCS."""
        marks, groups = self.temps, {self.head.pid, self.second.pid}
        return [p for p in _processes() if _group(p[0]) in groups or any(m in p[2] for m in marks)]

    def raylet(self, popen: subprocess.Popen) -> int | None:
        """The pid of the raylet a ``ray start`` process started."""
        return next((pid for pid, name, _ in _processes() if name == "raylet" and _descends_from(pid, popen.pid)),
                    None)


def _stop(started: list[subprocess.Popen], cluster: Cluster | None) -> list[tuple[int, str, str]]:
    """Stop exactly this cluster, as ``ray stop`` does but only its processes (``ray stop``
    would stop every Ray on the machine): SIGTERM to each ``ray start`` process group, SIGKILL
    to what is left of them after a grace period, then to any other process of the cluster.
    Returns what still ran after the grace period and the SIGKILLs."""
    def signal_groups(sig: int) -> None:
        for proc in started:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    signal_groups(signal.SIGTERM)
    deadline = time.time() + 1  # Ray's own graceful stop takes up to 30 s here; nothing it saves is needed
    while any(p.poll() is None for p in started) and time.time() < deadline:
        time.sleep(0.2)
    signal_groups(signal.SIGKILL)
    for proc in started:
        proc.wait(timeout=10)
    left = cluster.processes() if cluster else []
    for pid, _, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    while cluster and cluster.processes() and time.time() < deadline:
        time.sleep(0.2)
    return cluster.processes() if cluster else []


@pytest.fixture(scope="module")
def cluster():
    temps = (tempfile.mkdtemp(prefix="rn1-", dir="/tmp"), tempfile.mkdtemp(prefix="rn2-", dir="/tmp"))  # short paths
    env = {**os.environ, "TINYPLUG_DELAY": DELAY, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus", "1"]
    started: list[subprocess.Popen] = []
    made: Cluster | None = None
    log = open(os.path.join(temps[1], "start.log"), "w")  # the second node's output, closed below
    try:
        head, address = start_head(temps[0], *common, env=env)
        started.append(head)
        if os.path.exists(os.path.expanduser("~/.ray/auth_token")):  # the head requires it then; a joining
            env["RAY_AUTH_MODE"] = "token"                              # node sends it only when told so
        deadline = time.time() + 120
        second = subprocess.Popen(
            [RAY, "start", "--address", address, "--resources", json.dumps({"second": 1}),
             "--temp-dir", temps[1], "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block", *common,
             *NODE_PORTS],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**env, "TINYPLUG_DELAY": SECOND_DELAY})
        started.append(second)
        made = Cluster(address, temps, head, second)
        while made.raylet(second) is None:
            assert second.poll() is None and time.time() < deadline, \
                f"ray start --address did not start:\n{Path(log.name).read_text()[-3000:]}"
            time.sleep(0.3)
        yield made
    finally:
        left = _stop(started, made)
        log.close()
        for temp in temps:
            subprocess.run(["rm", "-rf", temp], check=False)
    assert not left, f"processes of the cluster survived its stop: {left}"


def _search(cluster: Cluster, study: str, storage: str, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "automl", "search", "--plugin-path", TINY, "--plugin", "tinyplug",
           "--space", "slow", "--pruner", "none", "--ensemble", "0", "--backend", "ray",
           "--address", cluster.address, "--storage", storage, "--workers", "2", "--cpus-per-trial", "1",
           "--trials", str(TRIALS), "--study", study]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TINYPLUG_DELAY": DELAY, "OMP_NUM_THREADS": "1"})


def _node(attrs: dict) -> str | None:
    return ((attrs.get("worker") or {}).get("ray") or {}).get("node_id")


def _finished(trials) -> list:
    return [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def test_trials_on_both_nodes_and_a_killed_node(cluster, postgres_db, cli, tmp_path):
    """One search on the two nodes. Once two trials finished, one of them on the second node,
    and the second node trains another, its raylet is killed with SIGKILL: the node and its
    workers are gone. The search still ends, exit 0, with exactly its 8 trials, the finished
    ones unchanged, and the lost trial run again on the head (its ``earlier_workers`` names
    the lost node); the user sees no traceback."""
    from sqlalchemy import create_engine, text

    search = _search(cluster, "two", postgres_db, tmp_path)
    raylet = cluster.raylet(cluster.second)
    assert raylet is not None
    engine, storage = create_engine(postgres_db), None
    killed, before, second_id, deadline = None, {}, None, time.time() + 240
    try:
        while search.poll() is None and killed is None and time.time() < deadline:
            time.sleep(0.2)
            try:
                if storage is None:  # opened once the search made the schema (opening it would make it)
                    with engine.connect() as con:
                        if not con.execute(text("SELECT count(*) FROM alembic_version")).scalar():
                            continue
                    storage = optuna.storages.RDBStorage(postgres_db)
                trials = optuna.load_study(study_name="two", storage=storage).trials
            except Exception:  # noqa: BLE001 - the search has not made the study yet
                continue
            on_second = [t for t in trials if _node(t.user_attrs) and
                         _descends_from((t.user_attrs.get("worker") or {}).get("pid", 0), raylet)]
            second_id = second_id or next((_node(t.user_attrs) for t in on_second), None)
            running = [t for t in on_second if t.state == optuna.trial.TrialState.RUNNING]
            if len(_finished(trials)) >= 2 and running and _finished(on_second):
                os.kill(raylet, signal.SIGKILL)  # mid-trial: trials there last 4-6 s (SECOND_DELAY)
                killed, before = running[0], {t.number: t.value for t in _finished(trials)}
        out, err = search.communicate(timeout=300)
    finally:
        engine.dispose()
        if storage is not None:
            storage.engine.dispose()
        if search.poll() is None:
            search.kill()
    assert killed is not None, f"no trial was seen running on the second node after one finished there\n{err}"
    assert search.returncode == 0, err
    trials = {t.number: t for t in optuna.load_study(study_name="two", storage=postgres_db).trials}
    assert len(_finished(trials.values())) == TRIALS and len(trials) == TRIALS
    assert {n: trials[n].value for n in before} == before  # nothing finished lost or changed
    nodes = {n: _node(t.user_attrs) for n, t in trials.items()}
    assert second_id in nodes.values() and len(set(nodes.values())) == 2 and None not in nodes.values()
    lost = trials[killed.number]
    assert lost.state == optuna.trial.TrialState.COMPLETE
    assert [(w.get("ray") or {}).get("node_id") for w in lost.user_attrs["earlier_workers"]] == [second_id]
    assert nodes[killed.number] not in (None, second_id)
    rows = cli("leaderboard", "two", "--format", "json").json()  # the node of every trial, by a stable name
    assert {r["number"]: r["ray_node"] for r in rows} == nodes
    # One line says what happened, not a traceback nor the dead raylet's log (Ray prints both)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert any(f"trial {killed.number} lost its Ray worker" in line for line in err.splitlines()), err
    raylet_lines = [line for line in out.splitlines() if "(raylet)" in line or "[state-dump]" in line]
    assert len(raylet_lines) == 1 and "Raylet is terminated" in raylet_lines[0], out
