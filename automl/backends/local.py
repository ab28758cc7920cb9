"""The local backend: ``--workers N`` processes on this machine pull trials from the study.

Each worker process builds its trial runner once (plugins and data loaded once), then claims
trials (:class:`automl.study.recovery.Slots`) until the target, the failure limit or the
deadline is reached, so that all processes working a study - these workers, a second
``automl search`` or ``resume``, ``automl worker`` - reach exactly the target together. A
worker's heartbeat keeps its running trial alive in the storage; a worker dies with its
parent (``kill -9`` of the search leaves no orphan taking trials).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from automl.backends.base import (
    Job,
    Outcome,
    Snapshot,
    StopSignals,
    TrialRunner,
    error_reason,
    exit_text,
    poll,
    snapshot,
)
from automl.backends.devices import assign_devices, threads_per_worker
from automl.study.recovery import Heartbeat, Slots
from automl.study.spec import StudySpec
from automl.study.store import FINISHED, make_storage, quiet_optuna


class LocalBackend:
    """Worker processes on this machine (``--backend local``, the default)."""

    name = "local"

    def check(self, spec: StudySpec) -> None:
        assign_devices(spec.workers, spec.gpus, spec.gpus_per_trial)

    def run(self, job: Job, spec: StudySpec, stop: StopSignals,
            on_progress: Callable[[Snapshot], None] | None, poll_s: float) -> Outcome:
        import optuna

        quiet_optuna()
        study = optuna.load_study(study_name=job.study_name, storage=make_storage(job.url))
        started = time.time()
        left = spec.trials - snapshot(study, spec.trials, started).finished
        ctx = mp.get_context("spawn")
        failures, lock = ctx.Value("i", 0, lock=False), ctx.Lock()
        errors = ctx.Queue()
        devices = assign_devices(max(1, min(spec.workers, left)), spec.gpus, spec.gpus_per_trial)
        threads = threads_per_worker(len(devices))
        max_failures = spec.failure_limit
        procs = [ctx.Process(target=worker_main, name=f"automl-worker-{i}",
                             args=(job, device, threads, i, failures, max_failures, lock, errors))
                 for i, device in enumerate(devices)]
        reason = "finished"
        for p in procs:
            p.start()

        def wait(seconds: float) -> None:
            for p in procs:
                p.join(timeout=seconds / len(procs))

        poll(lambda: any(p.is_alive() for p in procs), wait, study, spec.trials, started, on_progress, poll_s, stop)
        if stop.reason:
            reason = stop.reason
            if not _stop_workers(procs, poll_s, stop):
                reason = "killed"
        errs = _drain(errors)
        if reason == "finished":  # a worker that died on its own (out of memory, a crash in C)
            errs += [f"worker {i} {exit_text(p.exitcode)}" for i, p in enumerate(procs)
                     if p.exitcode and not any(e.startswith(f"worker {i} ") for e in errs)]
        snap = snapshot(study, spec.trials, started)
        if reason == "finished" and snap.finished < spec.trials:
            if errs:
                reason = "worker-error"
            elif failures.value >= max_failures:
                reason = "failures"
            elif job.deadline is not None:
                reason = "timeout"
        return Outcome(reason, snap, errs)


def _stop_workers(procs: list, poll_s: float, stop: StopSignals, grace_s: float = 30.0) -> bool:
    """First Ctrl-C: ask workers to stop; their running trials are marked interrupted and
    re-queued on resume. A second Ctrl-C (or the grace period) kills them at once: their
    trials stay RUNNING with a dead owner, which resume detects. Returns False when killed."""
    for p in procs:
        if p.is_alive() and p.pid:
            try:
                os.kill(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    end = time.time() + grace_s
    while any(p.is_alive() for p in procs) and time.time() < end and not stop.at_once:
        for p in procs:
            p.join(timeout=poll_s / len(procs))
    graceful = True
    for p in procs:
        if p.is_alive():
            graceful = False
            p.kill()
            p.join(timeout=5)
    return graceful


def _drain(q: Any) -> list[str]:
    out = []
    while True:
        try:
            out.append(q.get(timeout=0.05))
        except (queue.Empty, EOFError, OSError):
            return out


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


def worker_main(job: Job, device: str, threads: int, index: int, failures: Any, max_failures: int,
                lock: Any, errors: Any) -> None:
    """Entry point of a local worker process."""
    import optuna
    import torch

    _die_with_parent(os.getppid())
    try:
        torch.set_num_threads(max(1, threads))
        runner = job.factory(job, device)
        storage = make_storage(job.url)
        study = optuna.load_study(study_name=job.study_name, storage=storage,
                                  sampler=runner.sampler(index), pruner=runner.pruner())
    except KeyboardInterrupt:
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which exits cleanly
        errors.put(f"worker {index} could not start: {error_reason(exc)}")
        traceback.print_exc(file=sys.stderr)
        return
    try:
        _take_trials(job, Slots(study, storage, Path(job.study_dir) / "slots.lock", device=device),
                     study, storage, runner, failures, max_failures, lock)
    except KeyboardInterrupt:
        return
    except Exception as exc:  # noqa: BLE001 - e.g. the store failing outside a trial: reported
        errors.put(f"worker {index} stopped: {error_reason(exc)}")
        traceback.print_exc(file=sys.stderr)


def _take_trials(job: Job, slots: Slots, study: Any, storage: Any, runner: TrialRunner,
                 failures: Any, max_failures: int, lock: Any) -> None:
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
            if run_trial(study, runner, trial, heartbeat) not in FINISHED:
                with lock:
                    failures.value += 1
    finally:
        heartbeat.close()


def run_trial(study: Any, runner: TrialRunner, trial: Any, heartbeat: Heartbeat) -> Any:
    """Run a claimed trial and tell Optuna the outcome; returns its state. The heartbeat keeps
    the trial alive in the storage, so a worker that dies is detected by others."""
    import optuna
    from optuna.trial import TrialState

    with heartbeat.beating(trial._trial_id):
        try:
            value = runner(trial)
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
