"""Crash safety with real processes and real signals: kill -9, Ctrl-C, SIGTERM, concurrent
workers on one study, corrupt stores, changed spaces, missing plugins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

TINY = str(Path(__file__).parent / "data" / "tinyplug.py")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: For searches whose end is not the point here: no ensemble and no refit, which train the best
#: models of the slow space again (its sleeps included) after the last trial.
NO_FINAL_TRAINING = ("--ensemble", "0", "--refit", "off")


def _start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _study(studies: Path, name: str) -> optuna.Study | None:
    db = studies / name / "study.db"
    if not db.exists():
        return None
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}", skip_table_creation=True)
        return optuna.load_study(study_name=name, storage=storage)
    except Exception:  # noqa: BLE001 - not created yet
        return None


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended early ({proc.returncode}): {err[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("timed out waiting")


def _count(studies, name, states) -> int:
    study = _study(studies, name)
    return 0 if study is None else len(study.get_trials(deepcopy=False, states=states))


def _no_lock_errors(*texts: str) -> None:
    for text in texts:
        assert "database is locked" not in text
        assert "Traceback" not in text, text[-3000:]


def test_kill_9_at_three_points_then_resume_loses_nothing(studies, cli):
    """One study's life: ``search`` killed -9 after 2 finished trials, ``resume`` killed
    after 5, another ``resume`` killed after 8, then a last ``resume`` to the end. No
    finished trial is lost or changed, none is counted twice, the target is met exactly.
    (12 trials, no ensemble or refit at the end: each kill moment is here once; the chaos
    benchmark, benchmarks/bench_chaos, repeats kills by the hundred.)"""
    name = "kill9"
    slow = {"TINYPLUG_DELAY": "0.02"}
    runs = [(("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--trials", "12",
              "--workers", "2", "--study", name, "--seed", "9", *NO_FINAL_TRAINING), 2),
            (("resume", name), 5),
            (("resume", name), 8)]
    # Kill moments count finished trials, pruned ones included: counting completed ones only,
    # a run whose trials were mostly pruned could finish all 12 before reaching the moment
    # (1 run in 20 did: 7 complete + 5 pruned), and the test saw a process that ended early.
    kept: dict[int, tuple[TrialState, float | None]] = {}
    for args, kill_after in runs:
        proc = _start(*args, env=slow)
        _wait_for(lambda: _count(studies, name, FINISHED) >= kill_after, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(1.0)  # the workers die with their parent (PR_SET_PDEATHSIG)
        now = {t.number: (t.state, t.value) for t in _study(studies, name).get_trials(states=FINISHED)}
        assert len(now) >= kill_after
        assert all(now.get(number) == was for number, was in kept.items()), "a finished trial changed"
        kept = now

    r = cli("resume", name)
    assert r.code == 0, r.err
    _no_lock_errors(r.err)
    after = _study(studies, name).get_trials()
    by_number = {t.number: t for t in after}
    for number, was in kept.items():
        assert (by_number[number].state, by_number[number].value) == was
    assert sum(t.state in FINISHED for t in after) == 12
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retried = [t.user_attrs["retry_of"] for t in after if "retry_of" in t.user_attrs]
    assert retried, "the killed runs left trials to re-queue"
    assert len(retried) == len(set(retried)), "a re-queued trial ran twice"
    for t in after:
        if "retry_of" in t.user_attrs:
            # The retry fixes every parameter the killed trial had sampled (it may have been
            # killed while sampling, so the retry can have more).
            assert t.params.items() >= by_number[t.user_attrs["retry_of"]].params.items()


def test_killed_long_trial_continues_from_its_checkpoint(studies, cli_proc):
    proc = _start("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--trials", "1",
                  "--checkpoint-every", "0", "--study", "ckpt", *NO_FINAL_TRAINING, env={"TINYPLUG_DELAY": "0.15"})
    ckpts = lambda: list((studies / "ckpt" / "trials").glob("*/checkpoint.pt")) if (studies / "ckpt").exists() else []
    _wait_for(lambda: bool(ckpts()), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1.0)
    r = cli_proc("resume", "ckpt", "--plugin-path", TINY, env={"TINYPLUG_DELAY": "0.01"})
    assert r.code == 0, r.err
    trials = _study(studies, "ckpt").get_trials()
    retry = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(retry) == 1 and retry[0].user_attrs["retry_of"] == 0
    assert retry[0].user_attrs["run"]["resumed_from_epoch"] >= 1
    assert not list((studies / "ckpt" / "trials").glob("*/checkpoint.pt"))


def test_signals_during_store_reads_are_recorded_not_lost(tmp_path):
    """Ctrl-C and SIGTERM land wherever the main thread is, often inside SQLAlchemy. The search
    loop records them (a CI run once saw a raised exception come out wrapped in Optuna's
    StorageInternalError); every one fired during heavy store reads must be seen."""
    from automl.backends.base import StopSignals

    study = optuna.create_study(storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}"))
    study.optimize(lambda t: t.suggest_float("x", 0, 100), n_trials=30)
    # What the handlers were before, not Python's default: a process started in the background
    # by a non-interactive shell (CI, `cmd &`) starts with SIGINT ignored, and Python keeps that.
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as stop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            fired = len(stop.received)
            signal.setitimer(signal.ITIMER_REAL, 0.003)  # SIGALRM: forwarded as `sig` below
            old = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), sig))
            try:
                end = time.time() + 10
                while len(stop.received) == fired and time.time() < end:
                    study.get_trials(deepcopy=False)
            finally:
                signal.signal(signal.SIGALRM, old)
        assert stop.received == [signal.SIGTERM, signal.SIGINT]
        assert stop.reason == "terminated" and stop.at_once
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
    assert len(study.get_trials()) == 30


def test_sigterm_marks_running_trials_and_resume_reruns_them(studies, cli):
    """SIGTERM to the search alone (``kill PID``; Ctrl-C in a terminal is the process-group
    test below): the same clean stop, exit 143."""
    sig, code = signal.SIGTERM, 143
    name = f"sig{code}"
    proc = _start("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--trials", "4",
                  "--workers", "2", "--study", name, *NO_FINAL_TRAINING, env={"TINYPLUG_DELAY": "0.2"})
    _wait_for(lambda: _count(studies, name, (TrialState.RUNNING,)) >= 1, proc)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "leaderboard" in out and f"automl resume {name}" in err
    _no_lock_errors(err)
    interrupted = [t for t in _study(studies, name).get_trials() if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    dry = cli("resume", name, "--dry-run")
    assert dry.code == 0 and all(f"rerun trial {t.number}" in dry.out for t in interrupted)
    r = cli("resume", name)
    assert r.code == 0, r.err
    trials = _study(studies, name).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 4
    assert {t.user_attrs.get("retry_of") for t in trials} >= {t.number for t in interrupted}


def test_second_ctrl_c_exits_at_once(studies, cli_proc):
    proc = _start("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--trials", "4",
                  "--study", "twice", *NO_FINAL_TRAINING, env={"TINYPLUG_DELAY": "0.5"})
    _wait_for(lambda: _count(studies, "twice", (TrialState.RUNNING,)) >= 1, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    start = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.time() - start < 10
    r = cli_proc("resume", "twice", "--plugin-path", TINY, "--dry-run")
    assert r.code == 0 and "would rerun trial" in r.out  # the store is intact and knows what to rerun


def test_search_and_two_workers_share_one_study_exactly(studies, cli_proc):
    name = "shared"
    slow = {"TINYPLUG_DELAY": "0.02"}
    search = _start("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "slow", "--trials", "10",
                    "--study", name, "--workers", "1", *NO_FINAL_TRAINING, env=slow)
    _wait_for(lambda: _study(studies, name) is not None and "automl:spec" in _study(studies, name).user_attrs,
              search)
    study = _study(studies, name)
    # Model parameters are stored under their space's name (slow.hidden); training ones as they are.
    enqueued = [{"slow.hidden": 5 + 2 * i, "optimizer": "adam", "lr": 0.01, "weight_decay": 1e-5,
                 "batch_size": 32, "epochs": 4, "scheduler": "constant"} for i in range(3)]
    for params in enqueued:
        study.enqueue_trial(params)
    workers = [_start("worker", name, env=slow) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in [search, *workers]]
    for p, (out, err) in zip([search, *workers], outputs):
        assert p.returncode == 0, err
        _no_lock_errors(out, err)
    trials = _study(studies, name).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 10
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for params in enqueued:
        ran = [t for t in trials if t.params.get("slow.hidden") == params["slow.hidden"] and t.params.get("lr") == 0.01]
        assert len(ran) == 1, f"enqueued trial ran {len(ran)} times"


def test_corrupt_and_foreign_store_are_clear_errors(cli, studies):
    (studies / "junk").mkdir(parents=True)
    (studies / "junk" / "study.db").write_bytes(b"this is not a database" * 100)
    r = cli("leaderboard", "junk")
    assert r.code == 2 and "not a readable SQLite database" in r.err and len(r.err.strip().splitlines()) == 1
    import sqlite3

    (studies / "foreign").mkdir()
    with sqlite3.connect(studies / "foreign" / "study.db") as con:
        con.execute("CREATE TABLE customers (id INTEGER)")
    r = cli("resume", "foreign")
    assert r.code == 2 and "not an Optuna study store" in r.err
    listed = cli("studies", "--format", "json").json()
    assert {s["name"] for s in listed} == {"junk", "foreign"} and all("error" in s for s in listed)


def test_changed_space_refused_without_force_and_missing_plugin(cli, studies, tmp_path):
    plugin = tmp_path / "tinyplug.py"
    plugin.write_text(Path(TINY).read_text())
    assert cli("search", "--plugin-path", plugin, "--plugin", "tinyplug", "--trials", "1", "--study", "ch").code == 0
    moved = tmp_path / "moved.py"
    plugin.rename(moved)
    missing = cli("resume", "ch", "--trials", "1")  # the stored --plugin-path is gone
    assert missing.code == 2 and str(plugin) in missing.err and "--plugin-path" in missing.err
    assert len(missing.err.strip().splitlines()) == 1
    not_installed = cli("resume", "ch", "--trials", "1", "--plugin-path", "automl_no_such_module")
    assert not_installed.code == 2, not_installed.err
    moved.rename(plugin)
    plugin.write_text(plugin.read_text().replace('trial.suggest_int("hidden", 4, '
                                                 '16)', 'trial.suggest_int("hidden", 4, 32)'))
    refused = cli("resume", "ch", "--trials", "1", "--plugin-path", plugin)
    assert refused.code == 2 and "--force" in refused.err
    assert len(_study(studies, "ch").trials) == 1
    forced = cli("resume", "ch", "--trials", "1", "--plugin-path", plugin, "--force")
    assert forced.code == 0 and "search space changed" in forced.err
    assert len(_study(studies, "ch").trials) == 2


def test_out_of_memory_halves_the_batch_and_retries(cli, studies):
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "oom", "--trials", "1",
            "--study", "oom")
    assert r.code == 0, r.err
    trial = _study(studies, "oom").trials[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["run"]["oom_batch_size"] == 16


def test_a_worker_killed_on_its_own_is_an_error_and_its_trial_reruns(cli, studies):
    """The kernel's OOM killer takes a worker, not the search: the search says so and exits
    1 instead of reporting a finished search; resume knows the trial to rerun."""
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--space", "die", "--trials", "2",
            "--study", "died")
    assert r.code == 1
    assert "worker 0 was killed by SIGKILL" in r.err
    [trial] = _study(studies, "died").trials
    assert trial.state == TrialState.RUNNING
    dry = cli("resume", "died", "--dry-run", "--plugin-path", TINY)
    assert dry.code == 0 and "would rerun trial 0 (its process died" in dry.out


def _quiet(err: str) -> None:
    """Nothing a user should not see: no traceback, no 'Exception ignored' from any process."""
    for needle in ("Traceback", "Exception ignored", "KeyboardInterrupt", "database is locked"):
        assert needle not in err, err[-3000:]


@pytest.mark.parametrize("when", ["starting", "training", "twice"])
def test_ctrl_c_to_the_whole_process_group_is_quiet(studies, cli, when):
    """A terminal's Ctrl-C goes to every process of the foreground group at once: the search,
    its fork server and its workers. Wherever it lands, no process prints a traceback, the
    search exits 130, and resume knows what to rerun."""
    name = f"pg-{when}"
    proc = subprocess.Popen([sys.executable, "-m", "automl", "search", "--plugin-path", TINY, "--plugin", "tinyplug",
                             "--space", "slow", "--trials", "4", "--workers", "2", "--study", name,
                             *NO_FINAL_TRAINING],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "TINYPLUG_DELAY": "0.1"})
    if when == "starting":
        _wait_for(lambda: (studies / name / "study.db").exists(), proc)
    else:
        _wait_for(lambda: _count(studies, name, (TrialState.RUNNING,)) >= 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    if when == "twice":
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, out + err
    _quiet(err)
    time.sleep(0.5)  # anything a worker might print after the search returned
    dry = cli("resume", name, "--dry-run")
    assert dry.code == 0, dry.err
    r = cli("resume", name)
    assert r.code == 0, r.err
    _quiet(r.err)
    assert sum(t.state in FINISHED for t in _study(studies, name).get_trials()) == 4
