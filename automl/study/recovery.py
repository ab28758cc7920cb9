"""Keeping a study whole across crashes: who owns a trial, claims, heartbeats, recovery.

- :func:`owner_record` / :func:`owner_alive`: every running trial records its process (host,
  pid, the pid's start time), so a later process can tell that it died.
- :class:`Slots`: hands out trials so that all processes on a study reach exactly its target.
- :class:`Heartbeat`: one thread per worker process beating for the running trial, so that
  a worker that died on another machine is detected (:func:`recover_stale`, at every claim).
- :func:`to_recover` / :func:`recover`: RUNNING trials of dead processes and interrupted
  trials are marked failed and their exact parameters re-queued.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl.study.spec import StudySpec
from automl.study.store import GRACE_S, SPEC_KEY, requeue

HOST = socket.gethostname()
#: States that use up a slot of the target (failed trials give theirs back; a queued trial
#: takes one only when it starts).
BUSY = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


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


def claim_lock(storage: Any, study_dir: Path, study_name: str | None = None) -> Any:
    """The lock every claim and every recovery of a study holds, so that processes working
    one study never both take the last slot or both re-queue one dead trial.

    On PostgreSQL (and MySQL) the lock is the database's own (:class:`DatabaseLock`, keyed by
    the study's name, ``study_dir``'s name by default), so processes on different machines
    exclude one another. On SQLite, which only one machine can use, a file lock beside the
    study (``slots.lock``) serializes the processes; an in-memory study lives in one process,
    so a thread lock does there."""
    if isinstance(storage, optuna.storages.InMemoryStorage):
        return _THREAD_LOCKS.setdefault(id(storage), threading.Lock())
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)  # under Optuna's cache
    if engine is not None and engine.dialect.name in DatabaseLock.SQL:
        return DatabaseLock(engine, study_name or study_dir.name)
    from filelock import FileLock

    study_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(study_dir / "slots.lock"))


class DatabaseLock:
    """A study's claim lock held in its database server: a session-level advisory lock on
    PostgreSQL (``pg_advisory_lock``), a named lock on MySQL (``GET_LOCK``), on a connection of
    its own for as long as it is held.

    Every process on every machine that reaches the study's storage takes the same lock, so
    the claims are serialized by the database rather than by a file only one machine sees. A
    process that dies holding it (``kill -9``, a machine lost) loses its connection, and the
    server releases the lock with it. Re-entrant in one process (the session takes it around a
    recovery that a claim may nest), like the file lock it replaces on these storages.
    Written by hand: SQLAlchemy and Optuna have no advisory-lock helper.
    """

    #: (take, release) per SQLAlchemy dialect; ``:key`` is a signed 64-bit number on PostgreSQL
    #: and a name of at most 64 characters on MySQL (where -1 waits without a time limit).
    SQL = {
        "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
        "mysql": ("SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)"),
    }

    def __init__(self, engine: Any, study_name: str) -> None:
        import hashlib

        self.engine, self.study_name = engine, study_name
        digest = hashlib.sha256(f"automl-claim:{study_name}".encode()).digest()
        self.key: int | str = (int.from_bytes(digest[:8], "big", signed=True)
                               if engine.dialect.name == "postgresql" else "automl-claim:" + digest.hex()[:48])
        self._take, self._release = self.SQL[engine.dialect.name]
        self._guard = threading.RLock()
        self._depth = 0
        self._con: Any = None

    def __enter__(self) -> DatabaseLock:
        from sqlalchemy import text

        self._guard.acquire()
        try:
            if self._depth == 0:
                con = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                try:
                    con.execute(text(self._take), {"key": self.key})
                except BaseException:
                    con.invalidate()  # really closed, not pooled: a lock taken just before an interrupt ends
                    con.close()
                    raise
                self._con = con
            self._depth += 1
        except BaseException:
            self._guard.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        from sqlalchemy import text

        try:
            self._depth -= 1
            if self._depth == 0:
                con, self._con = self._con, None
                try:
                    con.execute(text(self._release), {"key": self.key})
                except BaseException:
                    con.invalidate()  # the server session ends, and the lock with it
                    raise
                finally:
                    con.close()
        finally:
            self._guard.release()


_THREAD_LOCKS: dict[int, threading.Lock] = {}


class Slots:
    """Hands out trials so that every process working a study - local workers, a second
    ``automl search``/``resume``, ``automl worker`` - together reach exactly the target.

    Under the study's claim lock (:func:`claim_lock`), while COMPLETE + PRUNED + RUNNING
    trials are fewer than the target, a process takes a WAITING trial (a re-queued one, or a
    configuration a space asks to try first) if there is one, else creates a new trial. Failed
    trials give their slot back.
    The target is read from the study each time, so ``automl resume NAME --trials N`` also
    extends running workers. Optuna has no such primitive: ``MaxTrialsCallback`` checks after
    a trial ends, so parallel workers overshoot.

    A claimed trial is owned from its first moment: a new trial is created with its owner
    (``worker``: host, pid, device) in the same commit, and a re-queued one gets its owner
    before it leaves the WAITING state. A process killed anywhere inside a claim therefore
    leaves either nothing, a WAITING trial, or a RUNNING trial whose owner is known to be
    dead - never an owner-less trial that would hold a slot forever.
    """

    def __init__(self, study: optuna.Study, storage, lock_path: Path, device: str | None = None) -> None:
        self.study, self.storage, self.device = study, storage, device
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.lock = claim_lock(storage, lock_path.parent, study.study_name)

    def claim(self) -> optuna.Trial | None:
        with self.lock:
            recover_stale(self.study)  # a worker that died on another machine: its trial first
            counts, target = count_states(self.storage, self.study_id)
            busy = sum(counts.get(s.name, 0) for s in BUSY)
            if busy >= target:
                return None  # the target is finished or being finished; queued trials wait for a resume
            return ask_owned(self.study, owner_record(self.device))


def ask_owned(study: optuna.Study, owner: dict[str, Any]) -> optuna.Trial:
    """``study.ask()`` with the trial's owner written in the same commit that makes it
    RUNNING (see :class:`Slots`). Written by hand because Optuna's ``ask`` commits the new
    trial before anything can be attached to it; this follows ``Study.ask`` otherwise."""
    storage = study._storage
    study._thread_local.cached_all_trials = None
    for waiting in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            storage.set_trial_user_attr(waiting._trial_id, "worker", owner)  # still WAITING: harmless
            if storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, waiting._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process took it meanwhile
    template = optuna.trial.FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.datetime.now(),
        datetime_complete=None, params={}, distributions={}, user_attrs={"worker": owner}, system_attrs={},
        intermediate_values={}, trial_id=-1)
    return optuna.Trial(study, storage.create_new_trial(study._study_id, template_trial=template))


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


def _heartbeats(storage: Any, study_id: int, trial_id: int | None = None) -> dict[int, float]:
    """Seconds since the last heartbeat of each RUNNING trial of a study that has beaten (or
    of one trial), measured on the database's clock, which also stamped the beats (Optuna's
    ``record_heartbeat`` writes the database's ``now()``): the machines' clocks and time
    zones do not enter. Empty without an RDB storage."""
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)  # under Optuna's cache
    if engine is None:
        return {}
    import sqlalchemy
    from sqlalchemy import text

    where = "t.trial_id = :tid" if trial_id is not None else "t.study_id = :sid AND t.state = 'RUNNING'"
    with engine.connect() as con:
        now = con.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        rows = con.execute(text("SELECT h.trial_id, h.heartbeat FROM trial_heartbeats h JOIN trials t "
                                f"ON t.trial_id = h.trial_id WHERE {where}"),
                           {"sid": study_id, "tid": trial_id}).all()
    now = now.replace(tzinfo=None) if isinstance(now, datetime.datetime) else datetime.datetime.fromisoformat(str(now))
    ages = {}
    for tid, beat in rows:
        if isinstance(beat, str):
            beat = datetime.datetime.fromisoformat(beat)
        ages[int(tid)] = (now - beat.replace(tzinfo=None)).total_seconds()
    return ages


def _dead(trial: optuna.trial.FrozenTrial, storage: Any) -> str | None:
    """Why a RUNNING trial is known to be dead, or ``None`` while it may be alive."""
    owner = trial.user_attrs.get("worker")
    alive = owner_alive(owner)
    if alive is False:
        return "its process died"
    started = trial.datetime_start or datetime.datetime.now()
    age = (datetime.datetime.now() - started).total_seconds()
    if not owner and age > GRACE_S:
        return "it has no owner (its process died while claiming it)"
    if alive is None and owner:  # another host: only its heartbeat can tell
        beat = _heartbeats(storage, 0, trial._trial_id).get(trial._trial_id)
        if (beat is None and age > GRACE_S) or (beat is not None and beat > GRACE_S):
            return f"its process on {owner.get('host')} stopped beating"
    return None


def deaths(trial: optuna.trial.FrozenTrial) -> int:
    """How many earlier runs of this trial's configuration died with their process (carried
    by each retry; interruptions by Ctrl-C do not count). A run that died adds one."""
    return int(trial.system_attrs.get("automl_deaths", 0))


def to_recover(study: optuna.Study, max_retries: int | None = None) -> list[tuple[optuna.trial.FrozenTrial, str]]:
    """Trials to rerun, unless a retry of them already exists:

    - RUNNING trials whose process is dead;
    - failed trials whose process died (``died``) but that a recovery killed midway did not
      re-queue yet;
    - interrupted trials (Ctrl-C, SIGTERM).

    A configuration whose process died more than ``max_retries`` times is listed with a
    reason that says it will not be rerun."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    cap = retry_cap(study) if max_retries is None else max_retries
    out = []
    for t in trials:
        if t.number in retried:
            continue
        if t.state == TrialState.RUNNING:  # even one marked gave_up: a recovery killed before its FAIL
            why = _dead(t, study._storage)
            if why is not None:
                out.append((t, _why_rerun(why, deaths(t) + 1, cap)))
        elif t.state == TrialState.FAIL and not t.user_attrs.get("gave_up"):
            if t.user_attrs.get("died"):
                out.append((t, _why_rerun("its process died", deaths(t) + 1, cap)))
            elif t.user_attrs.get("interrupted"):
                out.append((t, "it was interrupted"))
    return out


def _why_rerun(why: str, died: int, cap: int) -> str:
    if died > cap:
        return f"{why}; not rerun: this configuration's process died {died} times (--max-retries {cap})"
    return f"{why} (retry {died} of {cap})"


def retry_cap(study: optuna.Study) -> int:
    """The study's ``--max-retries`` (from its spec)."""
    spec = study.user_attrs.get(SPEC_KEY) or {}
    value = spec.get("max_retries")
    return StudySpec.max_retries if value is None else int(value)


def recover(study: optuna.Study, lock: Any) -> list[int]:
    """Under the study's claim lock: mark dead RUNNING trials failed and re-queue every trial
    to recover with its exact parameters; a configuration past the retry cap stays FAIL with
    its reason. Returns the numbers of the trials re-queued."""
    with lock:
        cap = retry_cap(study)
        return [t.number for t, why in to_recover(study, cap) if _rerun(study, t, why, cap)]


def recover_stale(study: optuna.Study, cap: int | None = None) -> list[int]:
    """Recover the RUNNING trials whose heartbeat is older than the grace period and whose
    process is not known alive (it ran on another machine, or this one's pid is gone); the
    caller holds the claim lock. Cheap enough for every claim: one query over the running
    trials' heartbeats.

    Optuna's own ``fail_stale_trials`` marks such a trial FAIL before it calls its callback,
    after which no attribute of the trial can be written (the death count, the reason), so
    automl does not use it."""
    storage = study._storage
    stale = [tid for tid, age in _heartbeats(storage, study._study_id).items() if age > GRACE_S]
    if not stale:
        return []
    cap = retry_cap(study) if cap is None else cap
    numbers = []
    for tid in stale:
        trial = storage.get_trial(tid)
        why = _dead(trial, storage) if trial.state == TrialState.RUNNING else None
        if why is not None and _rerun(study, trial, _why_rerun(why, deaths(trial) + 1, cap), cap):
            numbers.append(trial.number)
    return numbers


def _rerun(study: optuna.Study, trial: optuna.trial.FrozenTrial, why: str, cap: int) -> bool:
    """Recover one trial (the claim lock held); whether it was re-queued.

    Each step is its own commit, ordered so that a process killed between any two leaves a
    state that the next recovery finishes (tests/test_recovery): every write to the trial
    happens while it is still RUNNING (a finished trial's attributes cannot change), the
    ``died`` mark before the FAIL lets a later recovery re-queue a trial whose re-queue was
    cut off, and the death count lives on the retry (``automl_deaths``), never rewritten on the
    dead trial, so redoing a step never counts a death twice."""
    storage = study._storage
    died = deaths(trial) + 1
    if trial.state == TrialState.RUNNING:
        gave_up = died > cap
        if not trial.user_attrs.get("error") or gave_up:
            storage.set_trial_user_attr(trial._trial_id, "error", f"{'gave up' if gave_up else 'rerun'}: {why}")
        storage.set_trial_user_attr(trial._trial_id, "died", True)
        if gave_up:
            storage.set_trial_user_attr(trial._trial_id, "gave_up", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if gave_up:
            return False
        trial = storage.get_trial(trial._trial_id)
    elif trial.user_attrs.get("died"):
        if died > cap:
            return False
    else:  # interrupted: not a death
        died -= 1
    requeue(study, trial, died)
    return True
