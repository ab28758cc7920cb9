"""Beyond one machine: PostgreSQL as the shared storage, its advisory lock as the claim lock,
an artifact store for the trials' files, and what is refused on SQLite.

"Machines" here are processes with their own working folder and their own ``AUTOML_STUDIES``
that share only the PostgreSQL URL and the ``--artifacts`` folder (tests/postgres.py starts
the server; these tests skip, saying what to install, without one).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from _results_helper import sklearn_test_csv
from optuna.trial import TrialState

from automl.study.store import FINISHED, SPEC_KEY, make_storage, quiet_optuna

POSTGRES = "postgresql+psycopg"


# ---------------------------------------------------------------------------------------------
# Refused: what cannot work across machines, before anything is written
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["search", "--plugin", "tabular", "--dataset", "iris", "--backend", "ray", "--address", "127.0.0.1:6379"],
    ["search", "--plugin", "tabular", "--dataset", "iris", "--backend", "ray", "--address", "auto",
     "--storage", "sqlite:///{tmp}/x.db"],
    ["worker", "some-study", "--storage", "sqlite:///{tmp}/x.db"],
])
def test_a_cluster_or_a_remote_worker_on_sqlite_is_refused(cli, studies, tmp_path, args):
    res = cli(*[a.format(tmp=tmp_path) for a in args])
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "SQLite" in lines[0] and f"--storage {POSTGRES}://" in lines[0], res.err
    assert not any(studies.iterdir()) if studies.exists() else True
    assert not (tmp_path / "x.db").exists()


def test_bad_artifact_stores_are_refused(cli, studies, tmp_path):
    base = ["search", "--plugin", "tabular", "--dataset", "iris", "--trials", "1"]
    res = cli(*base, "--artifacts", "ftp://host/x")
    assert res.code == 2 and "unsupported --artifacts URL" in res.err
    res = cli(*base, "--artifacts", str(tmp_path / "no" / "such" / "folder"))
    assert res.code == 2 and "does not exist" in res.err
    try:
        import boto3  # noqa: F401
    except ImportError:
        res = cli(*base, "--artifacts", "s3://bucket")
        assert res.code == 2 and "pip install boto3" in res.err
    res = cli(*base, "--artifacts", "s3://bucket/prefix")
    assert res.code == 2 and "bucket only" in res.err
    assert not studies.exists() or not any(studies.iterdir())


# ---------------------------------------------------------------------------------------------
# The claim lock on PostgreSQL: an advisory lock in the server, not a file on one machine
# ---------------------------------------------------------------------------------------------

def _study_with_target(url: str, name: str, target: int) -> optuna.Study:
    quiet_optuna()
    study = optuna.create_study(study_name=name, storage=make_storage(url, create=True))
    study.set_user_attr(SPEC_KEY, {"trials": target, "max_retries": 2})
    return study


def _claimer(url: str, name: str, folder: str) -> list[int]:
    """One "machine": its own folder; claims and finishes trials until the target is reached."""
    from automl.study.recovery import DatabaseLock, Slots

    quiet_optuna()
    storage = make_storage(url)
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    slots = Slots(study, storage, Path(folder) / "slots.lock")
    assert isinstance(slots.lock, DatabaseLock)
    numbers = []
    while (trial := slots.claim()) is not None:
        trial.suggest_float("x", 0, 1)
        numbers.append(trial.number)
        study.tell(trial, 1.0)
    return numbers


def test_claims_from_four_processes_reach_exactly_the_target(postgres_db, tmp_path):
    """Four processes with four different folders (a file lock in each would exclude nobody)
    claim from one study: exactly the target is finished, no trial is taken twice, and no
    file lock is made."""
    _study_with_target(postgres_db, "claims", 40)
    folders = [str(tmp_path / f"machine{i}") for i in range(4)]
    with mp.get_context("spawn").Pool(4) as pool:
        taken = pool.starmap(_claimer, [(postgres_db, "claims", f) for f in folders], chunksize=1)
    flat = [n for numbers in taken for n in numbers]
    assert len(flat) == 40 == len(set(flat)), taken
    study = optuna.load_study(study_name="claims", storage=make_storage(postgres_db))
    assert len(study.get_trials(states=FINISHED)) == 40 and len(study.trials) == 40
    assert sum(1 for numbers in taken if numbers) >= 2  # the claims were really contended
    assert not any(Path(f).exists() for f in folders)


def _hold(url: str, name: str, ready: str) -> None:
    from automl.study.recovery import claim_lock

    storage = make_storage(url)
    with claim_lock(storage, Path("/nonexistent") / name, name):
        Path(ready).touch()
        time.sleep(600)


def test_the_advisory_lock_excludes_other_sessions_and_dies_with_its_process(postgres_db, tmp_path):
    """While one process holds the study's lock, no other session gets it; a holder killed
    with SIGKILL loses it with its connection. Re-entrant within a process."""
    from sqlalchemy import create_engine, text

    from automl.study.recovery import DatabaseLock, claim_lock

    study = _study_with_target(postgres_db, "locked", 1)
    lock = claim_lock(study._storage, tmp_path / "locked")
    assert isinstance(lock, DatabaseLock) and lock.study_name == "locked"
    engine = create_engine(postgres_db)
    try:
        def free() -> bool:
            with engine.connect() as con:
                got = con.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock.key}).scalar()
                if got:
                    con.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock.key})
                con.commit()
            return bool(got)

        with lock:
            with lock:  # re-entrant
                assert not free()
            assert not free()
        assert free()
        ready = tmp_path / "ready"
        holder = mp.get_context("spawn").Process(target=_hold, args=(postgres_db, "locked", str(ready)))
        holder.start()
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists() and not free()
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        deadline = time.time() + 10
        while not free() and time.time() < deadline:
            time.sleep(0.1)
        assert free()
    finally:
        engine.dispose()
    assert not (tmp_path / "locked").exists()  # no slots.lock file on PostgreSQL


def test_recovery_under_the_advisory_lock(postgres_db, tmp_path):
    """A RUNNING trial whose process died is re-queued once with its exact parameters, under
    the PostgreSQL lock, however many processes recover at once."""
    from automl.study.recovery import claim_lock, recover

    study = _study_with_target(postgres_db, "rec", 4)
    from automl.study.recovery import HOST

    owner = {"host": HOST, "pid": 2**22 + 12345, "start": "0"}  # no such process
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study._storage.set_trial_user_attr(trial._trial_id, "worker", owner)
    requeued = recover(study, claim_lock(study._storage, tmp_path / "rec", "rec"))
    assert requeued == [trial.number]
    assert recover(study, claim_lock(study._storage, tmp_path / "rec", "rec")) == []
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.get_trials()[1].params == study.get_trials()[0].params


# ---------------------------------------------------------------------------------------------
# Three "machines", one PostgreSQL study, one artifact store
# ---------------------------------------------------------------------------------------------

SEARCH = ["--plugin", "tabular", "--dataset", "breast_cancer", "--space", "mlp", "--max-epochs", "40",
          "--pruner", "none", "--ensemble", "3"]


def _machine(root: Path, name: str) -> dict:
    folder = root / name
    (folder / "studies").mkdir(parents=True)
    return {"cwd": folder, "env": {**os.environ, "AUTOML_STUDIES": str(folder / "studies"), "OMP_NUM_THREADS": "1"}}


def _start(machine: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl", *map(str, args)], cwd=machine["cwd"], env=machine["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _new_rows(path: Path) -> Path:
    """The breast-cancer test rows as a CSV without the target: new data to predict on."""
    from sklearn.datasets import load_breast_cancer

    sklearn_test_csv(path, load_breast_cancer)
    return path


def _schema_ready(url: str) -> bool:
    """Whether the search made Optuna's schema (its last step is alembic's revision row): an
    RDBStorage opened before that would make tables itself, racing the search."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return con.execute(text("SELECT count(*) FROM alembic_version")).scalar() > 0
    except Exception:  # noqa: BLE001 - no such table yet
        return False
    finally:
        engine.dispose()


def _wait_for_study(url: str, name: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _schema_ready(url) and name in optuna.get_all_study_names(make_storage(url)):
            study = optuna.load_study(study_name=name, storage=make_storage(url))
            if study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
                return
        time.sleep(0.2)
    raise AssertionError(f"study {name} did not start in {timeout} s")


def _groups_with_trials(study: optuna.Study) -> set[int]:
    """Process groups (one per "machine") of the live processes that own a trial of ``study``."""
    groups = set()
    for t in study.get_trials(deepcopy=False):
        try:
            groups.add(os.getpgid(int(t.user_attrs.get("worker", {}).get("pid", -1))))
        except (ProcessLookupError, ValueError):
            continue
    return groups


def _advisory_lock_held(url: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return bool(con.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"))
                        .scalar())
    finally:
        engine.dispose()


def _let_others_in(url: str, search: subprocess.Popen, start_others) -> list[subprocess.Popen]:
    """Pause the search (SIGSTOP, never while it holds the claim lock) once it finished a trial,
    start the other machines' workers, and let it go on (SIGCONT) once each of them owns a
    trial: every machine runs some, however slowly this machine starts processes."""
    study = optuna.load_study(study_name="so", storage=make_storage(url))
    deadline = time.time() + 300
    while not study.get_trials(deepcopy=False, states=FINISHED) and time.time() < deadline and search.poll() is None:
        time.sleep(0.05)
    while True:
        os.killpg(search.pid, signal.SIGSTOP)
        if not _advisory_lock_held(url):
            break
        os.killpg(search.pid, signal.SIGCONT)  # it was inside a claim: let it finish the claim
        time.sleep(0.02)
    others = start_others()
    try:
        while time.time() < deadline and any(p.poll() is None for p in others):
            if {p.pid for p in others} <= _groups_with_trials(study):
                break
            time.sleep(0.1)
    finally:
        os.killpg(search.pid, signal.SIGCONT)
    return others


def test_three_machines_share_a_postgres_study_and_an_artifact_store(postgres_db, tmp_path, monkeypatch):
    """``automl search --storage postgresql://... --artifacts DIR --trials 12`` in folder A while
    two ``automl worker`` run from folders B and C: exactly 12 finished trials, run by all
    three, no errors; the workers do not finalize; export and predict from C give the same
    predictions as from A, although C holds none of the models it did not train itself."""
    quiet_optuna()
    a, b, c = (_machine(tmp_path, m) for m in "ABC")
    shared = tmp_path / "shared-artifacts"
    search = _start(a, "search", *SEARCH, "--trials", "12", "--study", "so", "--storage", postgres_db,
                    "--artifacts", shared)
    workers: list[subprocess.Popen] = []
    try:
        _wait_for_study(postgres_db, "so")
        workers = _let_others_in(postgres_db, search, lambda: [
            _start(m, "worker", "so", "--storage", postgres_db) for m in (b, c)])
        outs = [p.communicate(timeout=600) for p in (*workers, search)]
    finally:
        for p in (search, *workers):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    codes = [p.returncode for p in (*workers, search)]
    assert codes == [0, 0, 0], outs
    for _out, err in outs:
        for bad in ("Traceback", "IntegrityError", "database is locked", "deadlock", "UniqueViolation"):
            assert bad not in err, err
    assert all("worker done" in out and "leaderboard" not in out for out, _ in outs[:2])
    assert "leaderboard" in outs[2][0]

    study = optuna.load_study(study_name="so", storage=make_storage(postgres_db))
    trials = study.get_trials(states=FINISHED)
    assert len(trials) == 12 and len(study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING))) == 0
    ran = {}
    for t in trials:
        ran.setdefault(t.user_attrs["worker"]["pid"], []).append(t.number)
        names = {v for k, v in t.system_attrs.items() if k.startswith("artifacts:")}
        assert any('"model.pt"' in v for v in names) and any('"predictions.npz"' in v for v in names), t.number
    assert len(ran) >= 3, ran  # the search's worker and each joining worker ran some
    for m in (b, c):  # each "machine" holds only the models of the trials it ran
        assert not (m["cwd"] / "studies" / "so" / "best").exists()
    assert (a["cwd"] / "studies" / "so" / "best" / "model.pt").exists()
    best = study.user_attrs["automl:best"]["number"]
    by_folder = {str(m["cwd"].name): {int(p.name) for p in (m["cwd"] / "studies" / "so" / "trials").glob("*")
                                      if (p / "predictions.npz").exists()} for m in (a, b, c)}

    # predict and export from A and from C (in this process, as from each folder: fewer slow starts)
    from automl.output.export import export
    from automl.output.predict import run_predict

    rows = _new_rows(tmp_path / "new.csv")
    preds = {}
    for m in (a, c):
        monkeypatch.chdir(m["cwd"])
        monkeypatch.setenv("AUTOML_STUDIES", m["env"]["AUTOML_STUDIES"])
        preds[m["cwd"].name] = run_predict("so", str(rows))[1]
        export("so", str(m["cwd"] / "exported"))
        assert run_predict(str(m["cwd"] / "exported"), str(rows))[1] == preds[m["cwd"].name]
    assert preds["A"] == preds["C"] and len(preds["A"].splitlines()) > 50
    assert (c["cwd"] / "studies" / "so" / "best" / "model.pt").exists()  # downloaded from the store
    print(f"trials by process: {ran}; predictions held by folder before export: {by_folder}; best trial {best}")


def _owned_by(study: optuna.Study, group: int) -> list[int]:
    """RUNNING trials whose process belongs to process group ``group`` (one "machine")."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            if os.getpgid(int(t.user_attrs.get("worker", {}).get("pid", -1))) == group:
                out.append(t.number)
        except (ProcessLookupError, ValueError):
            continue
    return out


def test_the_owner_killed_mid_trial_and_a_resume_from_another_folder(postgres_db, tmp_path, monkeypatch):
    """The search that owns the study (folder A) is killed with SIGKILL while it trains a
    trial; the workers in B and C go on; ``automl resume`` from C re-runs A's dead trial and
    finalizes there, from the artifact store: exactly 12 finished, no finished trial lost."""
    quiet_optuna()
    a, b, c = (_machine(tmp_path, m) for m in "ABC")
    shared = tmp_path / "shared-artifacts"
    search = _start(a, "search", *SEARCH, "--trials", "12", "--study", "sk", "--storage", postgres_db,
                    "--artifacts", shared)
    workers = []
    try:
        _wait_for_study(postgres_db, "sk")
        workers = [_start(m, "worker", "sk", "--storage", postgres_db) for m in (b, c)]
        study = optuna.load_study(study_name="sk", storage=make_storage(postgres_db))
        deadline = time.time() + 300
        while time.time() < deadline and search.poll() is None:
            if len(study.get_trials(deepcopy=False, states=FINISHED)) >= 2 and _owned_by(study, search.pid):
                break
            time.sleep(0.05)
        killed = _owned_by(study, search.pid)
        finished_before = {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
        os.killpg(search.pid, signal.SIGKILL)
        search.wait(30)
        assert killed, "the search ended before it could be killed mid-trial"
        outs = [p.communicate(timeout=600) for p in workers]
    finally:
        for p in (search, *workers):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in workers] == [0, 0], outs
    res = subprocess.run([sys.executable, "-m", "automl", "resume", "sk"], cwd=c["cwd"], env=c["env"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "leaderboard" in res.stdout and "Traceback" not in res.stderr

    study = optuna.load_study(study_name="sk", storage=make_storage(postgres_db))
    finished = {t.number for t in study.get_trials(states=FINISHED)}
    assert len(finished) == 12 and finished_before <= finished
    dead = [t for t in study.get_trials() if t.number in killed]
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("died") for t in dead)
    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(states=FINISHED)}
    assert set(killed) <= retried
    best = study.user_attrs["automl:best"]["number"]
    assert (c["cwd"] / "studies" / "sk" / "best" / "model.pt").exists()
    from automl.output.predict import run_predict

    rows = _new_rows(tmp_path / "new.csv")
    monkeypatch.chdir(c["cwd"])
    monkeypatch.setenv("AUTOML_STUDIES", c["env"]["AUTOML_STUDIES"])
    assert len(run_predict("sk", str(rows))[1].splitlines()) > 50
    print(f"killed trials {killed}; best trial {best}; finished before the kill {sorted(finished_before)}")


TINY = str(Path(__file__).parent / "data" / "tinyplug.py")


def test_a_trial_whose_machine_died_continues_from_its_checkpoint_on_another(postgres_db, tmp_path):
    """Machine A trains a long trial, shipping its checkpoints to the artifact store, and is
    killed with SIGKILL; ``automl worker`` on machine B (its own folder: none of A's files)
    re-runs the trial from A's last checkpoint, not from its first epoch."""
    from automl.study.store import CHECKPOINT_KEY

    quiet_optuna()
    a, b = _machine(tmp_path, "A"), _machine(tmp_path, "B")
    a["env"]["TINYPLUG_DELAY"], b["env"]["TINYPLUG_DELAY"] = "0.15", "0.01"
    search = _start(a, "search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--trials", "1",
                    "--checkpoint-every", "0", "--study", "ck", "--storage", postgres_db,
                    "--artifacts", tmp_path / "shared")
    try:
        deadline = time.time() + 300
        shipped = None
        while time.time() < deadline and search.poll() is None:
            running = []
            if _schema_ready(postgres_db) and "ck" in optuna.get_all_study_names(make_storage(postgres_db)):
                running = optuna.load_study(study_name="ck", storage=make_storage(postgres_db)).get_trials(
                    states=(TrialState.RUNNING,))
            if running and running[0].system_attrs.get(CHECKPOINT_KEY) and len(running[0].intermediate_values) >= 2:
                shipped = running[0]
                break
            time.sleep(0.1)
        assert shipped is not None, search.communicate(timeout=60)
    finally:
        os.killpg(search.pid, signal.SIGKILL)
        search.wait(30)
    res = subprocess.run([sys.executable, "-m", "automl", "worker", "ck", "--storage", postgres_db],
                         cwd=b["cwd"], env=b["env"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    study = optuna.load_study(study_name="ck", storage=make_storage(postgres_db))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    seen = [(t.number, t.state.name, t.user_attrs.get("error"), t.user_attrs.get("retry_of"))
            for t in study.get_trials()]
    assert len(done) == 1 and done[0].user_attrs.get("retry_of") == shipped.number, (seen, res.stdout, res.stderr)
    assert done[0].user_attrs["run"]["resumed_from_epoch"] >= 1
    assert done[0].user_attrs["worker"]["pid"] != shipped.user_attrs["worker"]["pid"]
    assert not list((b["cwd"] / "studies" / "ck" / "trials").glob("*/checkpoint.pt"))  # used and removed
    # the finished retry removed the checkpoint copies it used and made: only the trial's files are left
    stored = {p.name for p in (tmp_path / "shared").iterdir()}
    expected = {json.loads(v)["artifact_id"] for t in study.get_trials() for k, v in t.system_attrs.items()
                if k.startswith("artifacts:")} | {json.loads(v)["artifact_id"] for k, v in
                                                   study._storage.get_study_system_attrs(study._study_id).items()
                                                   if k.startswith("artifacts:")}
    assert stored == expected


# ---------------------------------------------------------------------------------------------
# Another host on the network: a network namespace that reaches PostgreSQL over a veth pair
# ---------------------------------------------------------------------------------------------

#: One "machine" as a process: imports, says ready, waits for the go file, claims (_claimer).
CLAIMER = """
import json, os, sys, time
url, name, folder, tests, go = sys.argv[1:6]
sys.path.insert(0, tests)
from test_scale_out import _claimer
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.02)
print(json.dumps(_claimer(url, name, folder)), flush=True)
"""


@contextlib.contextmanager
def _network_host():
    """A network namespace (its own interfaces and loopback, as another host has) joined to
    this one by a veth pair: yields (namespace, this side's ADDRESS/PREFIX). Skips the test
    where namespaces cannot be made (not root, no iproute2, a container without the right)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's `ip`")
    tag = os.getpid() % 100000
    ns, outer, inner, net = f"automl-{tag}", f"vau{tag}", f"vav{tag}", f"10.213.{tag % 250}"
    steps = [["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "set", "lo", "up"],
             ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns],
             ["ip", "addr", "add", f"{net}.1/30", "dev", outer], ["ip", "link", "set", outer, "up"],
             ["ip", "-n", ns, "addr", "add", f"{net}.2/30", "dev", inner], ["ip", "-n", ns, "link", "set", inner, "up"]]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode:
                pytest.skip(f"cannot make a network namespace: {' '.join(step)}: {done.stderr.strip()}")
        yield ns, f"{net}.1/30"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes its end of the pair along
        subprocess.run(["ip", "link", "del", outer], capture_output=True)


def test_a_machine_on_its_own_network_claims_from_the_same_study(tmp_path):
    """One claimer runs in its own network namespace - another host: this host's 127.0.0.1 is
    not reachable from it - and reaches PostgreSQL over a veth pair; two more claim on this
    host. All start together: exactly the target is finished, no trial twice, and the one
    on the other network claimed its share."""
    from postgres import postgres_available, postgres_server, psycopg_available
    from sqlalchemy.engine import make_url

    reason = postgres_available() or psycopg_available()
    if reason:
        pytest.skip(reason)
    with _network_host() as (ns, address), postgres_server(durable=False, listen=(address,)) as url:
        port, host = make_url(url).port, address.split("/")[0]
        remote_url = make_url(url).set(host=host).render_as_string(hide_password=False)
        loopback = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", "import socket; "
                                   f"socket.create_connection(('127.0.0.1', {port}), timeout=2)"], capture_output=True)
        assert loopback.returncode != 0  # the namespace has its own loopback: the server is only on the veth
        _study_with_target(url, "netns", 30)
        go, tests = tmp_path / "go", str(Path(__file__).resolve().parent)
        machines = ((["ip", "netns", "exec", ns], remote_url, "b"), ([], url, "a"), ([], url, "c"))
        procs = [subprocess.Popen([*prefix, sys.executable, "-c", CLAIMER, u, "netns", str(tmp_path / folder), tests,
                                   str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for prefix, u, folder in machines]
        try:
            for proc in procs:
                assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            go.touch()
            results = [proc.communicate(timeout=120) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in results]
        taken = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
        flat = [n for numbers in taken for n in numbers]
        assert len(flat) == 30 == len(set(flat)), taken
        assert taken[0], f"the claimer on the other network claimed nothing: {taken}"
        storage = optuna.storages.RDBStorage(url)
        study = optuna.load_study(study_name="netns", storage=storage)
        assert len(study.get_trials(states=FINISHED)) == 30 and len(study.trials) == 30
        storage.engine.dispose()
