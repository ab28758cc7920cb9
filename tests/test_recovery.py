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
    env = {**os.environ, "TINYPLUG_DELAY": "0.1"}
    search = subprocess.Popen([sys.executable, "-m", "automl", "search", "--plugin-path", TINY, "--plugin", "tinyplug",
                               "--space", "slow", "--trials", "8", "--workers", "2", "--study", "join"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (studies / "join" / "study.db").exists() and time.time() < deadline:
        time.sleep(0.1)
    worker = subprocess.run([sys.executable, "-m", "automl", "worker", "join", "--plugin-path", TINY],
                            capture_output=True, text=True, env=env, timeout=300)
    out, err = search.communicate(timeout=300)
    assert search.returncode == 0 and worker.returncode == 0, (err, worker.stderr)
    assert "worker done" in worker.stdout and "leaderboard" not in worker.stdout
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
