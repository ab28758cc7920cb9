"""Trial execution: the objective, and the worker process loop of the local backend.

Each worker process loads plugins and data once, then takes trial slots from a counter shared
with the parent, so that N workers finish exactly the target number of trials. Each trial runs
through ``study.optimize(n_trials=1)`` so that Optuna's heartbeat, pruning and failure
handling are Optuna's own.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from automl._data import load_data
from automl._errors import TrialFailed
from automl._plugins import Registry, load_registry
from automl._spec import Resolved, StudySpec, check_task_fit, make_pruner, make_sampler, resolve
from automl._store import make_storage
from automl._trainer import build_model, fit, suggest_training
from automl._types import DataBundle, EpochEvent, Metric, SearchSpace, TrialEvent

HOST = socket.gethostname()


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trial_seed(study_seed: int, number: int) -> int:
    return (int(study_seed) * 1_000_003 + number * 7919) % 2**31


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*(independent sampling|constant_liar).*")
    # automl's workers beat the heartbeat themselves around ask/tell (see run_trial).
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used with Study.optimize.*")


class Objective:
    """One trial: sample, prepare data, build, train, save weights, return the val metric.

    The trial's user attributes: ``config`` (written before training, so a crashed trial
    still shows what it ran) and ``run`` (one record at the end: best epoch, epochs run,
    samples/s, the epoch it resumed from, the batch size after an out-of-memory retry). Each
    attribute is its own storage commit, so there are as few as that. ``worker`` (host, pid,
    device) is written by whoever claims the trial (:class:`Slots`, the Ray trainable).
    """

    def __init__(self, *, registry: Registry, spec: StudySpec, spaces: list[SearchSpace],
                 metric: Metric, bundle: DataBundle, study_name: str, study_dir: Path,
                 device: torch.device, checkpoint_every_s: float = 10.0,
                 on_epoch: Callable[[int, float, float], None] | None = None) -> None:
        self.registry, self.spec, self.metric, self.bundle = registry, spec, metric, bundle
        self.spaces = {s.name: s for s in spaces}
        self.study_name, self.study_dir, self.device = study_name, study_dir, device
        self.checkpoint_every_s = checkpoint_every_s
        self.on_epoch = on_epoch  # e.g. the Ray backend's report to Tune

    def _space(self, trial: optuna.Trial) -> SearchSpace:
        if len(self.spaces) == 1:
            return next(iter(self.spaces.values()))
        return self.spaces[trial.suggest_categorical("space", list(self.spaces))]

    def _event(self, trial: optuna.Trial, **kw: Any) -> TrialEvent:
        return TrialEvent(self.study_name, str(self.study_dir), trial.number, dict(trial.params), **kw)

    def __call__(self, trial: optuna.Trial) -> float:
        start = time.perf_counter()
        config: dict[str, Any] | None = None
        try:
            space = self._space(trial)
            info = self.bundle.info
            train_cfg = (space.train or suggest_training)(trial, info)
            if self.spec.max_epochs:
                train_cfg["epochs"] = min(int(train_cfg.get("epochs", 1)), self.spec.max_epochs)
            config = {"space": space.name, "model": space.define(trial, info), "train": train_cfg}
            config = json.loads(json.dumps(config))  # the contract: JSON-able, stored as such
            trial.set_user_attr("config", config)
            self.registry.call("on_trial_start", self.spec.loggers, event=self._event(trial, config=config))
            value = self._train(trial, space, config)
        except optuna.TrialPruned:
            self._end(trial, config, "PRUNED", None, start, None)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("error", "interrupted")
            raise
        except Exception as exc:
            reason = _reason(exc)
            trial.set_user_attr("error", reason)
            self._end(trial, config, "FAIL", None, start, reason)
            raise
        self._end(trial, config, "COMPLETE", value, start, None)
        return value

    def _end(self, trial, config, state, value, start, error) -> None:
        duration = time.perf_counter() - start
        self.registry.call("on_trial_end", self.spec.loggers, event=self._event(
            trial, config=config, state=state, value=value, duration_s=duration, error=error))

    def _train(self, trial: optuna.Trial, space: SearchSpace, config: dict[str, Any]) -> float:
        data = space.prepare(self.bundle, config) if space.prepare else self.bundle
        seed = trial_seed(self.spec.seed, trial.number)
        tdir = self.study_dir / "trials" / str(trial.number)
        ckpt = tdir / "checkpoint.pt"
        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is not None:
            old = self.study_dir / "trials" / str(retry_of) / "checkpoint.pt"
            if old.exists() and not ckpt.exists():
                tdir.mkdir(parents=True, exist_ok=True)
                old.replace(ckpt)

        last_epoch = int(config["train"].get("epochs", 1)) - 1

        def report(epoch: int, value: float, train_loss: float) -> None:
            trial.report(value, epoch)
            if self.on_epoch is not None:
                self.on_epoch(epoch, value, train_loss)
            self.registry.call("on_epoch_end", self.spec.loggers, event=EpochEvent(
                self.study_name, str(self.study_dir), trial.number, epoch, train_loss, value, self.metric.name))
            # After the last epoch the trial ends anyway: asking the pruner (which reads every
            # trial of the study) would cost a query and gain nothing.
            if epoch < last_epoch and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        train_cfg = dict(config["train"])
        run: dict[str, Any] = {}
        for attempt in (0, 1):
            seed_everything(seed)
            model = build_model(space, config["model"], data.info)
            try:
                result = fit(model, data, train_cfg, self.metric, self.device, step=space.step,
                             report=report, seed=seed, checkpoint=ckpt,
                             checkpoint_every_s=self.checkpoint_every_s)
                break
            except torch.OutOfMemoryError:
                # Out of device memory: halve the batch once and retry before failing.
                del model
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if attempt or int(train_cfg.get("batch_size", 1)) < 2:
                    raise TrialFailed("out of memory, also with half the batch size") from None
                train_cfg["batch_size"] = int(train_cfg["batch_size"]) // 2
                run["oom_batch_size"] = train_cfg["batch_size"]
                ckpt.unlink(missing_ok=True)
        tdir.mkdir(parents=True, exist_ok=True)
        tmp = tdir / "model.pt.tmp"
        torch.save(result.state_dict, tmp)
        tmp.replace(tdir / "model.pt")
        ckpt.unlink(missing_ok=True)
        run.update(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                   samples_per_s=round(result.samples / max(result.seconds, 1e-9), 1))
        if result.resumed_from_epoch:
            run["resumed_from_epoch"] = result.resumed_from_epoch
        trial.set_user_attr("run", run)
        return result.best_value


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


@dataclass
class WorkerJob:
    study_name: str
    study_dir: str
    url: str
    spec: dict[str, Any]
    plugin_paths: list[str]
    device: str
    threads: int
    index: int
    deadline: float | None
    checkpoint_every_s: float = 10.0


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive ``kill -9`` of its parent: it would keep taking trials."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def setup_process(spec_json: dict[str, Any], plugin_paths: list[str]
                  ) -> tuple[Registry, StudySpec, Resolved, DataBundle, Metric]:
    """Load plugins, resolve the spec and load the data in a trial process (a local worker
    or a Ray Tune trial)."""
    quiet_optuna()
    spec = StudySpec.from_json(spec_json)
    registry = load_registry(plugin_paths, only={spec.plugin, *spec.loggers})
    resolved = resolve(registry, spec.plugin, spec.dataset, spec.spaces, spec.metric, spec.options)
    bundle = load_data(spec.plugin, resolved.dataset, spec.data_path, resolved.options, spec.seed)
    metric = check_task_fit(resolved, bundle.info)
    return registry, spec, resolved, bundle, metric


def worker_main(job: WorkerJob, failures, max_failures: int, lock, errors) -> None:
    """Entry point of a local worker process."""
    _die_with_parent(os.getppid())
    try:
        torch.set_num_threads(max(1, job.threads))
        registry, spec, resolved, bundle, metric = setup_process(job.spec, job.plugin_paths)
        sampler = make_sampler(spec.sampler, None if spec.seed is None else spec.seed + job.index,
                               parallel=spec.workers > 1)
        storage = make_storage(job.url)
        study = optuna.load_study(study_name=job.study_name, storage=storage,
                                  sampler=sampler, pruner=make_pruner(spec.pruner))
        objective = Objective(registry=registry, spec=spec, spaces=resolved.spaces, metric=metric,
                              bundle=bundle, study_name=job.study_name, study_dir=Path(job.study_dir),
                              device=torch.device(job.device), checkpoint_every_s=job.checkpoint_every_s)
    except KeyboardInterrupt:
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which exits cleanly
        errors.put(f"worker {job.index} could not start: {_reason(exc)}")
        traceback.print_exc(file=sys.stderr)
        return
    try:
        _take_trials(job, Slots(study, storage, Path(job.study_dir) / "slots.lock", device=job.device),
                     study, storage, objective, failures, max_failures, lock)
    except KeyboardInterrupt:
        return
    except Exception as exc:  # noqa: BLE001 - e.g. the store failing outside a trial: reported
        errors.put(f"worker {job.index} stopped: {_reason(exc)}")
        traceback.print_exc(file=sys.stderr)


def _take_trials(job: WorkerJob, slots: "Slots", study: optuna.Study, storage, objective: Objective,
                 failures, max_failures: int, lock) -> None:
    """Claim and run trials until the target, the failure limit or the deadline is reached."""
    heartbeat = Heartbeat(storage)
    try:
        while True:
            with lock:
                if failures.value >= max_failures:
                    return
            if job.deadline is not None and time.time() >= job.deadline:
                return
            trial = slots.claim()
            if trial is None:
                return
            if run_trial(study, objective, trial, heartbeat) not in FINISHED:
                with lock:
                    failures.value += 1
    finally:
        heartbeat.close()


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_BUDGET = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


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
            used = sum(counts.get(s.name, 0) for s in _BUDGET)
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
        return counts, int(storage.get_study_user_attrs(study_id)["automl:spec"]["trials"])
    from sqlalchemy import text

    with engine.connect() as con:
        rows = con.execute(text("SELECT state, COUNT(*) FROM trials WHERE study_id = :sid GROUP BY state"),
                           {"sid": study_id}).all()
        spec = con.execute(text("SELECT value_json FROM study_user_attributes WHERE study_id = :sid "
                                "AND key = 'automl:spec'"), {"sid": study_id}).scalar_one()
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


def run_trial(study: optuna.Study, objective: Objective, trial: optuna.Trial, heartbeat: Heartbeat) -> TrialState:
    """Run the objective on a claimed trial and tell Optuna the outcome. The heartbeat keeps
    the trial alive in the storage, so a worker that dies is detected by others."""
    with heartbeat.beating(trial._trial_id):
        return _run_and_tell(study, objective, trial)


def _run_and_tell(study: optuna.Study, objective: Objective, trial: optuna.Trial) -> TrialState:
    try:
        value = objective(trial)
        frozen = study.tell(trial, value)
    except optuna.TrialPruned:
        frozen = study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception:  # noqa: BLE001 - the reason is in the trial's "error" attribute
        frozen = study.tell(trial, state=TrialState.FAIL)
    return frozen.state
