"""The local backend: ``--workers N`` processes on this machine pull trials from the study.

Each worker process builds its trial runner once (plugins and data loaded once), then claims
trials (:class:`automl.study.recovery.Slots`) until the target, the failure limit or the
deadline is reached, so that all processes working a study - these workers, a second
``automl search`` or ``resume``, ``automl worker`` - reach exactly the target together. A
worker's heartbeat keeps its running trial alive in the storage; a worker dies with its
parent (``kill -9`` of the search leaves no orphan taking trials).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import multiprocessing.connection
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
    StopRequested,
    StopSignals,
    TrialRunner,
    error_reason,
    exit_text,
    poll,
    snapshot,
)
from automl.backends.devices import assign_devices, threads_per_worker
from automl.study.artifacts import SharedFiles, shared_files
from automl.study.recovery import Heartbeat, Slots
from automl.study.spec import StudySpec
from automl.study.store import FINISHED, make_storage, quiet_optuna


def process_context() -> Any:
    """Worker processes come from a fork server where the platform has one, else are spawned.

    The fork server (the standard library's) is started early by :meth:`LocalBackend.warm_up`
    and imports torch and the trial code once, in parallel with the main process's own work;
    each worker is then forked from it already warm, instead of paying a second or two of
    imports. Workers take the main process's environment and working folder from the job
    (:func:`worker_main`), so they behave as spawned ones do.
    """
    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")


class LocalBackend:
    """Worker processes on this machine (``--backend local``, the default)."""

    name = "local"

    def check(self, spec: StudySpec) -> None:
        assign_devices(spec.workers, spec.gpus, spec.gpus_per_trial)

    def warm_up(self, modules: list[str]) -> None:
        """Start the fork server now, importing ``modules``, so workers start warm later."""
        ctx = process_context()
        if ctx.get_start_method() != "forkserver":
            return
        from multiprocessing import forkserver

        # torch.optim.Optimizer.__init__ imports torch._dynamo on its first call
        # (torch._compile._disable_dynamo): 2-3 s in every process that builds an optimizer, on
        # 2 cores. Imported once here, every worker forked from the server has it already.
        ctx.set_forkserver_preload([*modules, "torch._dynamo"])
        with _sigint_blocked():
            forkserver.ensure_running()

    def run(self, job: Job, spec: StudySpec, stop: StopSignals,
            on_progress: Callable[[Snapshot], None] | None, poll_s: float) -> Outcome:
        import optuna

        quiet_optuna()
        study = optuna.load_study(study_name=job.study_name, storage=make_storage(job.url))
        started = time.time()
        left = spec.trials - snapshot(study, spec.trials, started).finished
        ctx = process_context()
        failures, lock = ctx.Value("i", 0, lock=False), ctx.Lock()
        errors, stop_event = ctx.Queue(), ctx.Event()
        devices = assign_devices(max(1, min(spec.workers, left)), spec.gpus, spec.gpus_per_trial)
        threads = threads_per_worker(len(devices))
        max_failures = spec.failure_limit
        where = here()
        procs = [ctx.Process(target=worker_main, name=f"automl-worker-{i}",
                             args=(job, device, threads, i, failures, max_failures, lock, errors, stop_event,
                                   where))
                 for i, device in enumerate(devices)]
        reason = "finished"
        with _sigint_blocked():
            for p in procs:
                p.start()

        def wait(seconds: float) -> None:
            for p in procs:
                p.join(timeout=seconds / len(procs))

        # Trials cut themselves at the deadline after their current batch; a batch that runs far
        # past it (a huge one, a hung data loader) is stopped here, as Ctrl-C would stop it.
        hard = job.deadline + max(5.0, 0.05 * spec.timeout) if job.deadline and spec.timeout else None

        def running() -> bool:
            if hard is not None and time.time() > hard and not stop_event.is_set():
                stop_event.set()
            return any(p.is_alive() for p in procs)

        poll(running, wait, study, spec.trials, started, on_progress, poll_s, stop)
        if stop.reason:
            reason = stop.reason
            stop_event.set()
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


@contextlib.contextmanager
def _sigint_blocked():
    """Start processes with SIGINT blocked: they inherit the signal mask (across fork and
    exec, and so do the fork server's children), so a terminal's Ctrl-C, which goes to the
    whole process group, is never delivered inside a worker - or inside the fork server while
    it imports torch - where it would raise wherever the process happens to be: inside
    SQLAlchemy, or during interpreter shutdown as "Exception ignored ... KeyboardInterrupt".
    The main process records the signal and asks its workers to stop through an event.

    In the main process a Ctrl-C that arrives during the block stays pending and is handled
    as soon as the block ends: delayed by the few milliseconds a process start takes, never
    lost. (Ignoring SIGINT instead would lose it: the kernel may discard an ignored signal.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker

    # Started first: starting it unblocks SIGINT in this process whatever the mask was before.
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _stop_workers(procs: list, poll_s: float, stop: StopSignals, grace_s: float = 30.0) -> bool:
    """After the first Ctrl-C (the stop event is set): wait for the workers to stop; their
    running trials are marked interrupted and re-queued on resume. A second Ctrl-C (or the
    grace period) kills them at once: their trials stay RUNNING with a dead owner, which
    resume detects. Returns False when killed."""
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


def die_with_parent() -> None:
    """A worker must not outlive ``kill -9`` of the search: it would keep taking trials.

    The search process holds the write end of a pipe whose read end is this process's
    "parent sentinel" (multiprocessing's, for spawned and fork-server workers alike): it
    becomes readable the moment the search dies, and a thread waiting on it ends the worker.
    PR_SET_PDEATHSIG also ends a spawned worker with its direct parent."""
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="automl-parent-watch", daemon=True).start()


class _ShouldStop:
    """A worker's stop flag: set by the search (its stop event) or by a SIGTERM or SIGINT
    sent to this worker, which the handlers only record (never raise)."""

    def __init__(self, event: Any) -> None:
        self.event, self.signalled = event, False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._record)

    def _record(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def __call__(self) -> bool:
        return self.signalled or self.event.is_set()


def _own_gpu(device: str) -> str:
    """Give a GPU worker only its own GPU (``CUDA_VISIBLE_DEVICES``, set before CUDA starts in
    this process): whatever defaults to GPU 0 - bf16 checks, memory queries, a plugin's
    ``torch.device("cuda")`` - is then its GPU. Returns the device name to use here."""
    if not device.startswith("cuda:"):
        return device
    index = int(device.split(":", 1)[1])
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[index] if index < len(visible) else str(index)
    return "cuda:0"


def here() -> tuple[dict[str, str], str]:
    """This process's environment and working folder, for a child to :func:`adopt`."""
    return dict(os.environ), os.getcwd()


def adopt(where: tuple[dict[str, str], str]) -> None:
    """Take the environment and working folder :func:`here` recorded in the parent: a child of
    the fork server starts with the server's, which plugins reading either would not expect."""
    env, cwd = where
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)


def worker_main(job: Job, device: str, threads: int, index: int, failures: Any, max_failures: int,
                lock: Any, errors: Any, stop_event: Any, where: tuple[dict[str, str], str] | None = None) -> None:
    """Entry point of a local worker process. ``where`` is the main process's environment
    and working folder, which a worker forked from the fork server would not otherwise have."""
    should_stop = _ShouldStop(stop_event)
    if where is not None:
        adopt(where)
    import optuna
    import torch

    die_with_parent()
    shown, device = device, _own_gpu(device)
    try:
        torch.set_num_threads(max(1, threads))
        runner = job.factory(job, device)
        storage = make_storage(job.url)
        existing = storage.get_n_trials(storage.get_study_id_from_name(job.study_name))
        study = optuna.load_study(study_name=job.study_name, storage=storage,
                                  sampler=runner.sampler(index, existing, job.salt), pruner=runner.pruner())
    except (KeyboardInterrupt, StopRequested):
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which exits cleanly
        errors.put(f"worker {index} could not start: {error_reason(exc)}")
        traceback.print_exc(file=sys.stderr)
        return
    try:
        _take_trials(job, Slots(study, storage, Path(job.study_dir) / "slots.lock", device=shown),
                     study, storage, runner, failures, max_failures, lock, should_stop)
    except (KeyboardInterrupt, StopRequested):
        return
    except Exception as exc:  # noqa: BLE001 - e.g. the store failing outside a trial: reported
        errors.put(f"worker {index} stopped: {error_reason(exc)}")
        traceback.print_exc(file=sys.stderr)


def _take_trials(job: Job, slots: Slots, study: Any, storage: Any, runner: TrialRunner,
                 failures: Any, max_failures: int, lock: Any, should_stop: Any = None) -> None:
    """Claim and run trials until the target, the failure limit or the deadline is reached,
    or the search asks to stop."""
    heartbeat = Heartbeat(storage)
    files = shared_files(job.spec.get("artifacts"), job.study_dir)
    try:
        while should_stop is None or not should_stop():
            with lock:
                if failures.value >= max_failures:
                    return
            if job.deadline is not None and time.time() >= job.deadline - _min_trial_s(job):
                return  # too little of the budget left for a trial to train anything worth keeping
            trial = slots.claim()
            if trial is None:
                return
            if run_trial(study, runner, trial, heartbeat, should_stop, files) not in FINISHED:
                with lock:
                    failures.value += 1
    finally:
        heartbeat.close()


def _min_trial_s(job: Job) -> float:
    """Under a time budget, no trial starts with less than two epochs' time left."""
    return 2.0 * float(job.spec.get("epoch_s") or 0.0)


def run_trial(study: Any, runner: TrialRunner, trial: Any, heartbeat: Heartbeat, should_stop: Any = None,
              files: SharedFiles | None = None) -> Any:
    """Run a claimed trial and tell Optuna the outcome; returns its state. The heartbeat keeps
    the trial alive in the storage, so a worker that dies is detected by others. A trial
    stopped by ``should_stop`` is told FAIL, marked interrupted, and the stop goes on up.
    ``files``: the study's artifact store (``--artifacts``): the trial continues from the
    checkpoint of the run it retries wherever that ran, ships its own checkpoints while it
    trains, and its files are stored there before it is told COMPLETE (a trial whose files
    cannot be stored fails, with the reason)."""
    import optuna
    from optuna.trial import TrialState

    with heartbeat.beating(trial._trial_id):
        try:
            with files.running(trial) if files is not None else contextlib.nullcontext():
                value = runner(trial, should_stop=should_stop) if should_stop is not None else runner(trial)
            if files is not None:
                try:
                    files.upload(trial)
                except Exception as exc:
                    trial.set_user_attr("error", f"storing its files in the artifact store: {error_reason(exc)}")
                    raise
            frozen = study.tell(trial, value)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        except (KeyboardInterrupt, StopRequested):
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception:  # noqa: BLE001 - the reason is in the trial's "error" attribute
            frozen = study.tell(trial, state=TrialState.FAIL)
        return frozen.state
