"""Keeping a study whole across crashes: who owns a trial, claims, heartbeats, recovery.

- :func:`owner_record` / :func:`owner_alive`: every running trial records its process (host,
  pid, the pid's start time), so a later process can tell that it died.
- :class:`Slots`: hands out trials so that all processes on a study reach exactly its target.
- :class:`Heartbeat`: one thread per worker process beating for the running trial, so that
  a worker that died on another machine is detected by Optuna's stale-trial check.
- :func:`to_recover` / :func:`recover`: RUNNING trials of dead processes and interrupted
  trials are marked failed and their exact parameters re-queued.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl.study.store import SPEC_KEY, requeue

HOST = socket.gethostname()
#: States that use up a slot of the target (failed trials give theirs back).
BUDGET = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (Linux), to tell a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_alive(owner: dict[str, Any] | None) -> bool | None:
    """Whether the process that ran a trial is alive; ``None`` when it ran on another host."""
    if not owner or owner.get("host") != HOST:
        return None
    pid = int(owner.get("pid", -1))
    if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
        try:
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True
    return process_start_time(pid) == owner.get("start")


_OWNER: dict[int, dict[str, Any]] = {}


def owner_record(device: str | None = None) -> dict[str, Any]:
    """Who runs a trial: host, pid and the pid's start time (see :func:`owner_alive`), and the
    device it trains on. Read from /proc once per process: it is written for every trial."""
    pid = os.getpid()
    if pid not in _OWNER:
        _OWNER.clear()
        _OWNER[pid] = {"host": HOST, "pid": pid, "start": process_start_time(pid)}
    return {**_OWNER[pid], **({"device": device} if device else {})}


class Slots:
    """Hands out trials so that every process working a study - local workers, a second
    ``automl search``/``resume``, ``automl worker`` - together reach exactly the target.

    Under a file lock, a process takes a WAITING trial (a re-queued one) if there is one,
    else creates a new trial only while COMPLETE + PRUNED + RUNNING + WAITING trials are
    fewer than the target. Failed trials give their slot back. The target is read from the
    study each time, so ``automl resume NAME --trials N`` also extends running workers.
    Optuna has no such primitive: ``MaxTrialsCallback`` checks after a trial ends, so parallel
    workers overshoot. The lock is a file beside the study, so the guarantee holds for
    processes on one machine; across machines (a shared PostgreSQL) it is best effort. An
    in-memory study lives in one process, so a thread lock does there.
    """

    def __init__(self, study: optuna.Study, storage, lock_path: Path, device: str | None = None) -> None:
        self.study, self.storage, self.device = study, storage, device
        self.study_id = storage.get_study_id_from_name(study.study_name)
        if isinstance(storage, optuna.storages.InMemoryStorage):
            self.lock: Any = threading.Lock()
        else:
            from filelock import FileLock

            lock_path.parent.mkdir(parents=True, exist_ok=True)
            self.lock = FileLock(str(lock_path))

    def claim(self) -> optuna.Trial | None:
        with self.lock:
            optuna.storages.fail_stale_trials(self.study)
            counts, target = count_states(self.storage, self.study_id)
            waiting = counts.get(TrialState.WAITING.name, 0)
            used = sum(counts.get(s.name, 0) for s in BUDGET)
            if waiting == 0 and used >= target:
                return None
            trial = self.study.ask()
            try:
                # Owned from the first moment: a worker killed before its objective starts
                # still leaves a trial that resume can tell is dead.
                trial.set_user_attr("worker", owner_record(self.device))
            except KeyboardInterrupt:
                trial.set_user_attr("interrupted", True)
                self.study.tell(trial, state=TrialState.FAIL)
                raise
            return trial


def count_states(storage, study_id: int) -> tuple[dict[str, int], int]:
    """Trials per state, and the study's target number of trials (from its spec).

    On an RDB store both come from one connection: a ``GROUP BY`` and one attribute row.
    ``RDBStorage.get_n_trials`` loads every trial of the study to count them, which made each
    claim O(trials), and the spec read through Optuna is its own session
    (benchmarks/bench_engine)."""
    engine = getattr(storage, "engine", None)
    if engine is None:  # one pass over the trials, not one per state
        counts: dict[str, int] = {}
        for t in storage.get_all_trials(study_id, deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        return counts, int(storage.get_study_user_attrs(study_id)[SPEC_KEY]["trials"])
    from sqlalchemy import text

    with engine.connect() as con:
        rows = con.execute(text("SELECT state, COUNT(*) FROM trials WHERE study_id = :sid GROUP BY state"),
                           {"sid": study_id}).all()
        spec = con.execute(text("SELECT value_json FROM study_user_attributes WHERE study_id = :sid "
                                "AND key = :key"), {"sid": study_id, "key": SPEC_KEY}).scalar_one()
    counts = {str(getattr(state, "name", state)).split(".")[-1]: int(n) for state, n in rows}
    return counts, int(json.loads(spec)["trials"])


class Heartbeat:
    """A worker's heartbeat: one thread for the life of the process, beating every
    ``interval`` seconds for whichever trial runs, and not at all between trials.

    Optuna's ``optimize`` starts a heartbeat thread for every trial; starting one costs about
    a millisecond on a busy two-core machine, which was measurable against a trivial
    objective (benchmarks/bench_engine). It beats at the storage's own interval; a storage
    without heartbeats (in memory) gets none.
    """

    def __init__(self, storage) -> None:
        interval = getattr(storage, "get_heartbeat_interval", None)  # Optuna's heartbeat storages
        self.storage, self.interval = storage, interval() if interval else None
        self.enabled = self.interval is not None
        self._cond = threading.Condition()
        self._trial: int | None = None
        self._generation = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def _set(self, trial_id: int | None) -> None:
        with self._cond:
            self._trial = trial_id
            self._generation += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._trial is not None or self._closed)
                if self._closed:
                    return
                trial_id, generation = self._trial, self._generation
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a missed beat; the next one tries again
                pass
            with self._cond:  # until the interval passes or the trial changes
                self._cond.wait_for(lambda: self._generation != generation or self._closed, self.interval)

    @contextmanager
    def beating(self, trial_id: int):
        """Beat for this trial while the block runs (the first beat at once)."""
        if not self.enabled:
            yield
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="automl-heartbeat", daemon=True)
            self._thread.start()
        self._set(trial_id)
        try:
            yield
        finally:
            self._set(None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)


def to_recover(study: optuna.Study) -> list[tuple[optuna.trial.FrozenTrial, str]]:
    """Trials to rerun: RUNNING ones whose process is dead, and interrupted ones, unless a
    retry of them already exists."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    out = []
    for t in trials:
        if t.number in retried:
            continue
        if t.state == TrialState.RUNNING and owner_alive(t.user_attrs.get("worker")) is False:
            out.append((t, "its process died"))
        elif t.state == TrialState.FAIL and t.user_attrs.get("interrupted"):
            out.append((t, "it was interrupted"))
    return out


def recover(study: optuna.Study) -> list[int]:
    """Mark dead RUNNING trials failed and enqueue every trial to recover with its params."""
    numbers = []
    for trial, _why in to_recover(study):
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            trial = study._storage.get_trial(trial._trial_id)
        requeue(study, trial)
        numbers.append(trial.number)
    return numbers
