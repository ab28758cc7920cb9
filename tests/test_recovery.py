"""Recovery without holes: claims that cannot leave an owner-less trial, a cap on retries of a
configuration that kills its worker, one re-queue however many processes recover at once,
and a joining worker that changes nothing but the trials it runs. Real processes, real
SIGKILLs, real SQLite stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

TINY = str(Path(__file__).parent / "data" / "tinyplug.py")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _load(studies: Path, name: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{studies / name / 'study.db'}", skip_table_creation=True)
    return optuna.load_study(study_name=name, storage=storage)


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_process_killed_inside_a_claim_leaves_a_trial_that_resume_reruns(studies, cli_proc, tmp_path):
    """SIGKILL lands inside ``Slots.claim``, after the new trial's commit (the sampler's
    before_trial hook runs there). The trial must carry its owner, so resume sees it dead and
    reruns it; an owner-less RUNNING trial would hold a slot of the target forever."""
    assert cli_proc("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "2", "--study", "cl").code == 0
    study = _load(studies, "cl")
    spec = dict(study.user_attrs["automl:spec"], trials=3)
    study.set_user_attr("automl:spec", spec)
    script = _script(tmp_path, f"""
        import os, signal, optuna
        from pathlib import Path
        from automl.study.recovery import Slots
        from automl.study.store import make_storage

        class DiesInClaim(optuna.samplers.RandomSampler):
            def before_trial(self, study, trial):
                os.kill(os.getpid(), signal.SIGKILL)

        storage = make_storage({f"sqlite:///{studies / 'cl' / 'study.db'}"!r})
        study = optuna.load_study(study_name="cl", storage=storage, sampler=DiesInClaim())
        Slots(study, storage, Path({str(studies / 'cl')!r}) / "slots.lock").claim()
    """)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [killed] = [t for t in _load(studies, "cl").trials if t.state == TrialState.RUNNING]
    assert killed.user_attrs["worker"]["pid"] > 0  # owned from the commit that made it
    r = cli_proc("resume", "cl", "--plugin-path", TINY)
    assert r.code == 0, r.err
    trials = _load(studies, "cl").trials
    assert sum(t.state in FINISHED for t in trials) == 3
    assert any(t.user_attrs.get("retry_of") == killed.number for t in trials)


def test_a_configuration_that_kills_its_worker_fails_after_the_retry_cap(studies, cli, monkeypatch):
    """The same configuration kills its worker on every run (the kernel's OOM killer, a
    segfault): it is rerun at most --max-retries times, then recorded FAIL with the reason,
    and the study moves on to its target."""
    monkeypatch.setenv("TINYPLUG_DIE_HIDDEN", "13")  # inherited by the worker processes
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "cap",
            "--max-retries", "2")
    assert r.code == 0, r.err
    study = _load(studies, "cap")
    params = dict(study.trials[0].params, **{"linear.hidden": 13})  # model parameters carry their space's name
    study.enqueue_trial(params)
    codes, dry_runs = [], []
    for _ in range(8):
        dry_runs.append(cli("resume", "cap", "--dry-run").out)
        r = cli("resume", "cap", "--trials", "2")
        codes.append(r.code)
        if r.code == 0:
            break
    assert codes[-1] == 0 and codes[:-1] == [1, 1, 1], codes  # the killer ran 3 times: 1 + 2 retries
    assert any("retry 1 of 2" in d for d in dry_runs) and any("not rerun" in d for d in dry_runs), dry_runs
    trials = _load(studies, "cap").trials
    killers = [t for t in trials if t.params.get("linear.hidden") == 13]
    assert len(killers) == 3
    assert all(t.state == TrialState.FAIL for t in killers)
    assert "gave up" in killers[-1].user_attrs["error"] and "--max-retries 2" in killers[-1].user_attrs["error"]
    assert sum(t.state in FINISHED for t in trials) == 3  # the target, without the killer


def test_two_processes_recovering_at_once_requeue_each_dead_trial_once(studies, cli_proc, tmp_path):
    assert cli_proc("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "rc").code == 0
    study = _load(studies, "rc")
    dead = {"host": os.uname().nodename, "pid": 2**22 + 12345, "start": "0"}  # no such process
    for _ in range(20):
        template = optuna.trial.FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, datetime_start=None, datetime_complete=None,
            params={}, distributions={}, user_attrs={"worker": dead}, system_attrs={}, intermediate_values={},
            trial_id=-1)
        study._storage.create_new_trial(study._study_id, template_trial=template)
    go = tmp_path / "go"
    script = _script(tmp_path, f"""
        import time, optuna
        from pathlib import Path
        from automl.study.recovery import claim_lock, recover
        from automl.study.store import make_storage

        storage = make_storage({f"sqlite:///{studies / 'rc' / 'study.db'}"!r})
        study = optuna.load_study(study_name="rc", storage=storage)
        while not Path({str(go)!r}).exists():
            time.sleep(0.001)
        print(len(recover(study, claim_lock(storage, Path({str(studies / 'rc')!r})))))
    """)
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    time.sleep(3)  # both are waiting at the line
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(int(out) for out, _ in outs) == [0, 20]  # one of them re-queued all, the other none
    retries = [t.user_attrs["retry_of"] for t in _load(studies, "rc").trials if "retry_of" in t.user_attrs]
    assert len(retries) == 20 == len(set(retries))


def test_a_joining_worker_leaves_the_spec_and_the_test_score_alone(studies, tmp_path):
    """``automl worker`` runs trials of a search that runs elsewhere: it does not rewrite the
    spec (workers 2 stays 2), does not finalize, and the test split is scored once, for the
    model the owning search selects."""
    # The search's trials wait at a gate until the joining worker has claimed one: otherwise,
    # on a loaded machine, the search's two workers could finish all 8 trials while the joining
    # one still starts up (seen under pytest -n 4), and nothing would show that it ran one.
    # The gate is closed once the study exists (the search's pre-flight batch has run), and
    # the joining worker does not see it.
    gate = tmp_path / "gate"
    env = {**os.environ, "TINYPLUG_DELAY": "0.1"}
    search = subprocess.Popen([sys.executable, "-m", "automl", "search", "--plugin-path", TINY, "--plugin", "tinyplug",
                               "--space", "slow", "--trials", "8", "--workers", "2", "--study", "join",
                               "--ensemble", "0", "--refit", "off"],  # no slow retraining after the trials
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "TINYPLUG_GATE": str(gate)})
    worker = None
    try:
        deadline = time.time() + 120
        while not (studies / "join" / "study.db").exists() and time.time() < deadline:
            time.sleep(0.1)
        gate.touch()
        worker = subprocess.Popen([sys.executable, "-m", "automl", "worker", "join", "--plugin-path", TINY],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        watch = _load(studies, "join")  # one storage for the polling
        pids = lambda: {t.user_attrs["worker"]["pid"] for t in watch.get_trials(deepcopy=False)
                        if "worker" in t.user_attrs}
        deadline = time.time() + 120
        while time.time() < deadline and worker.poll() is None and len(pids()) < 3:
            time.sleep(0.2)
        gate.unlink()
        worker_out, worker_err = worker.communicate(timeout=300)
        out, err = search.communicate(timeout=300)
    finally:  # a failed wait must not leave the search waiting at the gate for ever
        gate.unlink(missing_ok=True)
        for proc in (search, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert search.returncode == 0 and worker.returncode == 0, (err, worker_err)
    assert "worker done" in worker_out and "leaderboard" not in worker_out
    study = _load(studies, "join")
    spec = study.user_attrs["automl:spec"]
    assert spec["workers"] == 2 and spec["trials"] == 8
    assert sum(t.state in FINISHED for t in study.trials) == 8
    ran_by = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert len(ran_by) >= 3  # the search's two worker processes and the joining one
    tests = study.user_attrs["automl:test_values"]
    assert list(tests) == [str(study.user_attrs["automl:best"]["number"])]
    assert json.loads((studies / "join" / "best" / "config.json").read_text())["number"] == study.best_trial.number


def test_the_space_fingerprint_sees_what_is_sampled_not_how_the_code_reads(cli, studies, tmp_path):
    """A choice list changed in a helper the space calls is a changed space (resume refuses it
    without --force); an edited comment or docstring is not."""
    plugin = tmp_path / "tinyplug.py"
    source = Path(TINY).read_text().replace(
        'def define_linear(trial, info):\n    return {"hidden": trial.suggest_int("hidden", 4, 16)}',
        'WIDTHS = [4, 8, 16]\n\n\ndef widths():\n    return list(WIDTHS)\n\n\n'
        'def define_linear(trial, info):\n    return {"hidden": trial.suggest_categorical("hidden", widths())}')
    assert "def widths()" in source
    plugin.write_text(source)
    assert cli("search", "--plugin-path", plugin, "--plugin", "tinyplug", "--trials", "1", "--study", "fp").code == 0
    plugin.write_text(source.replace("def widths():", "def widths():\n    # the widths the MLP may take"))
    assert cli("resume", "fp", "--trials", "1").code == 0  # cosmetic: no --force needed
    plugin.write_text(source.replace("WIDTHS = [4, 8, 16]", "WIDTHS = [4, 8, 32]"))
    refused = cli("resume", "fp", "--trials", "1")
    assert refused.code == 2 and "--force" in refused.err and "changed" in refused.err
    # Optuna cannot mix two choice lists of one parameter in a study: even --force says so.
    forced = cli("resume", "fp", "--trials", "1", "--force")
    assert forced.code == 2 and "parameter 'linear.hidden'" in forced.err and "new study" in forced.err
    assert len(forced.err.strip().splitlines()) == 1


def test_search_resume_and_a_joining_worker_never_repeat_a_configuration(cli, studies):
    """Each process seeds its sampler from the study seed, the trials already in the study and
    its worker index: a resume or a joining worker starts where the study is, not where the
    first search started (which re-proposed trials 0 and 1 as trials 2 and 3)."""
    args = ("--plugin-path", TINY)
    assert cli("search", *args, "--plugin", "tinyplug", "--trials", "2", "--max-epochs", "1", "--study", "seeds",
               "--sampler", "random").code == 0
    assert cli("resume", "seeds", "--trials", "2").code == 0
    assert cli("worker", "seeds").code == 0  # the target is reached: joins and leaves
    assert cli("resume", "seeds", "--trials", "2", "--workers", "2").code == 0
    trials = _load(studies, "seeds").trials
    assert len(trials) == 6
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), params


def _dead_running_trial(studies: Path, name: str, deaths: int = 0, host: str | None = None) -> int:
    """A RUNNING trial of ``name`` whose owner is a process that no longer exists (on this
    host, or on ``host``), carrying ``deaths`` earlier deaths of its configuration."""
    from automl.study.recovery import HOST, ask_owned

    study = _load(studies, name)
    gone = subprocess.Popen(["true"])
    gone.wait()
    trial = ask_owned(study, {"host": host or HOST, "pid": gone.pid, "start": "0"})
    trial.suggest_int("linear.hidden", 4, 16)
    if deaths:
        study._storage.set_trial_system_attr(trial._trial_id, "automl_deaths", deaths)
    return trial.number


@pytest.mark.parametrize("after", ["error", "gave_up", "fail"])
def test_recovery_killed_between_its_commits_is_finished_by_the_next(studies, cli_proc, tmp_path, after):
    """``recover`` writes several commits per dead trial; a process killed between any two
    leaves a state the next recovery finishes: a dying configuration is re-queued once
    (never dropped), counted dead once, and one past the cap ends FAIL (never left RUNNING
    holding a slot). Found by benchmarks/bench_chaos (a resume killed 165 ms into recovery)."""
    name = f"k{after}"
    assert cli_proc("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", name,
                    "--max-retries", "2").code == 0
    deaths = 2 if after == "gave_up" else 0  # the last allowed death: this one gives up
    number = _dead_running_trial(studies, name, deaths)
    script = _script(tmp_path, f"""
        import os, optuna
        from pathlib import Path
        from automl.study import recovery
        from automl.study.store import make_storage

        storage = make_storage({f"sqlite:///{studies / name / 'study.db'}"!r})
        cls = type(storage)
        if {after!r} == "fail":  # killed after the FAIL commit, before the re-queue
            recovery.requeue = lambda *a, **k: os._exit(137)
        else:  # killed right after the user attr is written
            original = cls.set_trial_user_attr
            def dies_after(self, tid, key, value):
                original(self, tid, key, value)
                if key == {after!r}:
                    os._exit(137)
            cls.set_trial_user_attr = dies_after
        study = optuna.load_study(study_name={name!r}, storage=storage)
        recovery.recover(study, recovery.claim_lock(storage, Path({str(studies / name)!r})))
    """)
    assert subprocess.run([sys.executable, str(script)], timeout=120).returncode == 137
    from automl.study.recovery import claim_lock, recover

    study = _load(studies, name)
    recover(study, claim_lock(study._storage, studies / name))
    recover(study, claim_lock(study._storage, studies / name))  # twice: nothing more to do
    trials = {t.number: t for t in _load(studies, name).trials}
    assert trials[number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == number]
    if after == "gave_up":
        assert not retries and trials[number].user_attrs["gave_up"]
        assert "--max-retries 2" in trials[number].user_attrs["error"]
    else:
        [retry] = retries
        assert retry.state == TrialState.WAITING and retry.params == trials[number].params
        assert retry.system_attrs["automl_deaths"] == 1  # one death, counted once


def test_a_trial_whose_heartbeat_stopped_on_another_machine_is_rerun(studies, cli_proc, tmp_path):
    """A worker on another machine dies: its trial stops beating. After the grace period the
    next claim of any process recovers it (re-queued once, its death counted) instead of
    failing the claiming worker (Optuna fails such a trial before its callback can write)."""
    from automl.study.recovery import Slots
    from automl.study.store import GRACE_S, make_storage

    assert cli_proc("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "hb").code == 0
    study = _load(studies, "hb")
    study.set_user_attr("automl:spec", dict(study.user_attrs["automl:spec"], trials=3))
    number = _dead_running_trial(studies, "hb", host="machine-b")
    storage = make_storage(f"sqlite:///{studies / 'hb' / 'study.db'}")
    study = optuna.load_study(study_name="hb", storage=storage)
    trial_id = study.trials[number]._trial_id
    storage.record_heartbeat(trial_id)
    import sqlalchemy

    with storage.engine.begin() as con:  # the last beat, long ago
        con.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime('now', :ago) "
                                    "WHERE trial_id = :tid"), {"ago": f"-{3 * GRACE_S} seconds", "tid": trial_id})
    claimed = Slots(study, storage, studies / "hb" / "slots.lock").claim()
    assert claimed is not None
    trials = {t.number: t for t in _load(studies, "hb").trials}
    assert trials[number].state == TrialState.FAIL and "machine-b" in trials[number].user_attrs["error"]
    [retry] = [t for t in trials.values() if t.user_attrs.get("retry_of") == number]
    assert retry.system_attrs["automl_deaths"] == 1
    assert claimed.number == retry.number  # the claim took the re-queued configuration first


def test_a_resume_never_lowers_a_target_another_resume_raised(studies, cli):
    """Two resumes run at once, one with --trials: whichever writes its spec last, the stored
    target is the raised one (each writes under the claim lock and keeps the higher target)."""
    from automl.search import session as search_session

    assert cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "tg").code == 0
    plain = search_session.plan_resume("tg", None, False, [TINY])  # planned first: target 1
    raised = search_session.plan_resume("tg", 3, False, [TINY])    # target 1 + 3
    search_session.run(raised)
    assert search_session.run(plain).reason == "finished"
    spec = _load(studies, "tg").user_attrs["automl:spec"]
    assert spec["trials"] == 4 and plain.spec.trials == 4
    assert sum(t.state in FINISHED for t in _load(studies, "tg").trials) == 4


def test_resume_trials_adds_that_many_even_when_the_stored_target_was_higher(studies, cli):
    """``resume --trials N`` runs N more trials. A stopped search stored a higher target (a
    budget search stores "as many as fit"); keeping the higher of the two is only right when
    another resume raised it after this one was planned, not for the target this one read."""
    assert cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "hi").code == 0
    study = _load(studies, "hi")
    spec = dict(study.user_attrs["automl:spec"], trials=50)  # as a search stopped at 1 of 50 leaves it
    study.set_user_attr("automl:spec", spec)
    assert cli("resume", "hi", "--trials", "1").code == 0
    after = _load(studies, "hi")
    assert sum(t.state in FINISHED for t in after.trials) == 2
    assert after.user_attrs["automl:spec"]["trials"] == 2


def test_a_retry_retrains_the_epochs_its_dead_trial_reported_without_warnings(cli, cli_proc, studies):
    """A retry carries its dead trial's learning curve (pruning sees the whole curve), then
    trains those epochs again (no checkpoint here): its own values replace the inherited ones,
    and no process prints Optuna's "step=N is already reported" warning (seen in the stderr of
    resumes after kill -9)."""
    from automl.study.store import requeue

    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1", "--study", "rt",
            "--ensemble", "0", "--refit", "off", "--pruner", "none")
    assert r.code == 0, r.err
    study = _load(studies, "rt")
    done = study.trials[0]
    assert len(done.intermediate_values) >= 2
    # The dead trial's curve, marked so that the retry's own values can be told apart.
    dead = optuna.trial.create_trial(state=TrialState.FAIL, params=done.params, distributions=done.distributions,
                                     intermediate_values={step: -1.0 for step in done.intermediate_values})
    dead.number = done.number
    requeue(study, dead, 1)
    r = cli_proc("resume", "rt", "--plugin-path", TINY, "--trials", "1")  # its workers' stderr too
    assert r.code == 0, r.err
    assert "already reported" not in r.out + r.err
    retry = next(t for t in _load(studies, "rt").trials if t.user_attrs.get("retry_of") == done.number)
    assert retry.state == TrialState.COMPLETE
    assert -1.0 not in retry.intermediate_values.values(), retry.intermediate_values
    assert set(retry.intermediate_values) == set(done.intermediate_values)
