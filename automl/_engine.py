"""The search engine's main-process side: plan (validate), create, run workers, finalize.

``plan_search`` and ``plan_resume`` resolve everything and load the data before anything is
written, so a rejected command leaves no trace. ``run`` starts the local worker processes,
reports progress from the storage, and turns Ctrl-C / SIGTERM into a clean stop that marks
running trials for re-queueing. ``finalize`` scores the best trial on the held-out test split
and saves the best model.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import optuna
import torch
from optuna.trial import TrialState

from automl._data import fingerprint, fit_baselines, load_data
from automl._errors import UserError
from automl._plugins import Registry, load_registry
from automl._spec import PRUNERS, SAMPLERS, Resolved, StudySpec, check_task_fit, make_pruner, make_sampler, resolve, space_hash
from automl._store import BASELINE_KEY, SUMMARY_KEY, TEST_KEY, StudyRef, create, new_ref, open_ref, requeue, spec_of
from automl._trainer import build_model, evaluate, score
from automl._types import DataBundle, Metric, StudyEvent
from automl._worker import WorkerJob, owner_alive, quiet_optuna, worker_main

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BACKENDS = ("local", "ray")
BEST_KEY = "automl:best"
KEEP_WEIGHTS = 5


class StopSignals:
    """Ctrl-C and SIGTERM during a search: recorded by the handlers, acted on by the poll loop.

    Written by hand because no library does this for a multi-process poll loop. Raising from
    the handler (Python's default for SIGINT) lands wherever the main thread happens to be:
    inside SQLAlchemy the exception comes out wrapped in Optuna's StorageInternalError, inside
    a finalizer it is swallowed and the signal is lost. Recording it and checking between polls
    loses neither. Outside the main thread (no handlers can be set there) it records nothing.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def _record(self, signum: int, frame: Any) -> None:
        self.received.append(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._record) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    @property
    def reason(self) -> str | None:
        """``interrupted`` (Ctrl-C, exit 130) or ``terminated`` (SIGTERM, exit 143), by the first."""
        if not self.received:
            return None
        return "terminated" if self.received[0] == signal.SIGTERM else "interrupted"

    @property
    def at_once(self) -> bool:
        """A second signal: stop at once, without waiting for the workers' cleanup."""
        return len(self.received) >= 2


@dataclass
class SearchRequest:
    plugin: str
    dataset: str | None = None
    spaces: list[str] | None = None
    metric: str | None = None
    data_path: str | None = None
    options: list[str] = field(default_factory=list)
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    trials: int = 20
    timeout: float | None = None
    workers: int = 1
    study: str | None = None
    storage: str | None = None
    max_failures: int | None = None
    max_epochs: int | None = None
    checkpoint_every_s: float = 10.0
    backend: str = "local"
    address: str | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    gpus: str = "auto"
    loggers: list[str] = field(default_factory=list)
    plugin_paths: list[str] = field(default_factory=list)


@dataclass
class Session:
    """A validated search, ready to run: nothing is written until ``create_study``."""

    ref: StudyRef
    spec: StudySpec
    registry: Registry
    resolved: Resolved
    bundle: DataBundle
    metric: Metric
    plugin_paths: list[str]
    requeued: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    counts: dict[str, int]
    finished: int
    target: int
    best_value: float | None
    best_number: int | None
    elapsed_s: float
    last_error: str | None = None


@dataclass
class Outcome:
    reason: str  # finished | timeout | interrupted | terminated | failures | worker-error
    snapshot: Snapshot
    errors: list[str] = field(default_factory=list)


def _check_numbers(trials: int | None, workers: int, timeout: float | None, seed: int,
                   max_failures: int | None) -> None:
    if trials is not None and trials <= 0:
        raise UserError(f"--trials must be at least 1, not {trials}")
    if workers <= 0 or workers > 256:
        raise UserError(f"--workers must be between 1 and 256, not {workers}")
    if timeout is not None and (not math.isfinite(timeout) or timeout <= 0):
        raise UserError(f"--timeout must be a positive number of seconds, not {timeout}")
    if seed < 0 or seed >= 2**31:
        raise UserError(f"--seed must be between 0 and 2147483647, not {seed}")
    if max_failures is not None and max_failures <= 0:
        raise UserError(f"--max-failures must be at least 1, not {max_failures}")


def plan_search(req: SearchRequest) -> Session:
    _check_numbers(req.trials, req.workers, req.timeout, req.seed, req.max_failures)
    if req.max_epochs is not None and req.max_epochs <= 0:
        raise UserError(f"--max-epochs must be at least 1, not {req.max_epochs}")
    if not math.isfinite(req.checkpoint_every_s) or req.checkpoint_every_s < 0:
        raise UserError(f"--checkpoint-every must be a number of seconds >= 0, not {req.checkpoint_every_s}")
    if req.sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {req.sampler!r}; choices: {', '.join(SAMPLERS)}")
    if req.pruner not in PRUNERS:
        raise UserError(f"unknown pruner {req.pruner!r}; choices: {', '.join(PRUNERS)}")
    if req.backend not in BACKENDS:
        raise UserError(f"unknown backend {req.backend!r}; choices: {', '.join(BACKENDS)}")
    for name, value in (("--cpus-per-trial", req.cpus_per_trial), ("--gpus-per-trial", req.gpus_per_trial)):
        if value is not None and (not math.isfinite(value) or value < 0 or value > 1024):
            raise UserError(f"{name} must be a number between 0 and 1024, not {value}")
    from automl.backends import assign_devices, cuda_count, parse_gpus

    if req.backend == "local":
        assign_devices(req.workers, req.gpus, req.gpus_per_trial)
    else:
        parse_gpus(req.gpus, cuda_count())
    registry = load_registry(req.plugin_paths)
    registry.check_loggers(req.loggers)
    resolved = resolve(registry, req.plugin, req.dataset, req.spaces, req.metric, req.options)
    name = req.study or _default_name(req.plugin, resolved.dataset.name)
    ref = new_ref(name, req.storage)
    data_path = os.path.abspath(req.data_path) if req.data_path else None
    bundle = load_data(req.plugin, resolved.dataset, data_path, resolved.options, req.seed)
    metric = check_task_fit(resolved, bundle.info)
    spec = StudySpec(
        plugin=req.plugin, dataset=resolved.dataset.name, spaces=[s.name for s in resolved.spaces],
        metric=metric.name, direction=metric.direction, data_path=data_path,
        options=resolved.options, sampler=req.sampler, pruner=req.pruner, seed=req.seed,
        trials=req.trials, timeout=req.timeout, workers=req.workers, max_failures=req.max_failures,
        max_epochs=req.max_epochs, checkpoint_every_s=req.checkpoint_every_s, backend=req.backend, address=req.address,
        cpus_per_trial=req.cpus_per_trial, gpus_per_trial=req.gpus_per_trial, gpus=req.gpus,
        loggers=list(dict.fromkeys(req.loggers)),
        data_fingerprint=fingerprint(bundle), space_hash=space_hash(resolved.spaces),
        plugin_version=resolved.plugin.version)
    return Session(ref, spec, registry, resolved, bundle, metric, list(req.plugin_paths))


def _default_name(plugin: str, dataset: str) -> str:
    return f"{plugin}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_study(session: Session) -> optuna.Study:
    quiet_optuna()
    spec = session.spec
    study = create(session.ref, spec.to_json(), spec.direction,
                   make_sampler(spec.sampler, spec.seed), make_pruner(spec.pruner))
    study.set_user_attr(SUMMARY_KEY, json.loads(json.dumps(session.bundle.summary, default=str)))
    baselines = [b for p in [session.resolved.plugin] for b in p.baselines.values()]
    if baselines:
        study.set_user_attr(BASELINE_KEY, fit_baselines(baselines, session.bundle, session.metric))
    return study


def plan_resume(name: str, more: int | None = None, force: bool = False,
                plugin_paths: list[str] | None = None, workers: int | None = None,
                backend: str | None = None, address: str | None = None,
                storage: str | None = None) -> Session:
    """Plan the continuation of a stored study; the backend may differ from the one that
    started it (both write the same Optuna study)."""
    _check_numbers(more, workers or 1, None, 0, None)
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choices: {', '.join(BACKENDS)}")
    ref = open_ref(name, storage)
    study = ref.load()
    spec = StudySpec.from_json(spec_of(study))
    registry = load_registry(plugin_paths or [])
    if spec.plugin not in registry.plugins:
        raise UserError(f"study {name!r} needs plugin {spec.plugin!r}, which is not installed; install "
                        f"the package that provides it (pip install <package>) or pass --plugin-path")
    resolved = resolve(registry, spec.plugin, spec.dataset, spec.spaces, spec.metric, spec.options)
    warnings: list[str] = []
    new_hash = space_hash(resolved.spaces)
    if new_hash != spec.space_hash:
        if not force:
            raise UserError(f"the search space of plugin {spec.plugin!r} changed since study {name!r} "
                            "was created; rerun with --force to continue with the new space")
        warnings.append("search space changed since the study was created (--force)")
    bundle = load_data(spec.plugin, resolved.dataset, spec.data_path, resolved.options, spec.seed)
    metric = check_task_fit(resolved, bundle.info)
    if fingerprint(bundle) != spec.data_fingerprint:
        warnings.append("the data changed since the study was created (fingerprint differs)")
    if resolved.plugin.version != spec.plugin_version:
        warnings.append(f"plugin {spec.plugin} is version {resolved.plugin.version}, "
                        f"the study was made with {spec.plugin_version}")
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    if more is not None:
        spec.trials = finished + more
    if workers is not None:
        spec.workers = workers
    if backend is not None:
        spec.backend, spec.address = backend, address
    session = Session(ref, spec, registry, resolved, bundle, metric, list(plugin_paths or []),
                      warnings=warnings)
    session.requeued = [t.number for t, _ in to_recover(study)]
    return session


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


def recover(session: Session, study: optuna.Study) -> list[int]:
    """Mark dead RUNNING trials failed and enqueue every trial to recover with its params."""
    numbers = []
    for trial, _why in to_recover(study):
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            trial = study._storage.get_trial(trial._trial_id)
        requeue(study, trial)
        numbers.append(trial.number)
    return numbers


def snapshot(study: optuna.Study, target: int, started: float) -> Snapshot:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: 0 for s in TrialState}
    best_value = best_number = last_error = None
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    for t in trials:
        counts[t.state.name] += 1
        if t.state == TrialState.COMPLETE and t.value is not None:
            if best_value is None or (t.value > best_value if maximize else t.value < best_value):
                best_value, best_number = t.value, t.number
        if t.state == TrialState.FAIL and t.user_attrs.get("error"):
            last_error = f"trial {t.number}: {t.user_attrs['error']}"
    finished = counts["COMPLETE"] + counts["PRUNED"]
    return Snapshot(counts, finished, target, best_value, best_number, time.time() - started, last_error)


def _devices(n: int, spec: StudySpec) -> list[str]:
    """One device per local worker (``--gpus``, ``--gpus-per-trial``); see automl.backends."""
    from automl.backends import assign_devices

    return assign_devices(n, spec.gpus, spec.gpus_per_trial)


def run(session: Session, on_progress: Callable[[Snapshot], None] | None = None,
        poll_s: float = 0.5) -> Outcome:
    """Run trials until the spec's target is reached: in local worker processes, or as Ray
    Tune trials when the spec's backend is ``ray``."""
    session.ref.ensure_dir()
    checkpoint_every_s = session.spec.checkpoint_every_s
    if session.spec.backend == "ray":
        from automl.backends import run_ray

        return run_ray(session, on_progress=on_progress, poll_s=poll_s, checkpoint_every_s=checkpoint_every_s)
    quiet_optuna()
    study = session.ref.load()
    spec = session.spec
    study.set_user_attr("automl:spec", spec.to_json())
    session.requeued = recover(session, study)
    started = time.time()
    snap = snapshot(study, spec.trials, started)
    left = spec.trials - snap.finished
    if left <= 0:
        return Outcome("finished", snap)
    ctx = mp.get_context("spawn")
    failures, lock = ctx.Value("i", 0, lock=False), ctx.Lock()
    errors = ctx.Queue()
    devices = _devices(min(spec.workers, left), spec)
    from automl.backends import threads_per_worker

    threads = threads_per_worker(len(devices))
    deadline = started + spec.timeout if spec.timeout else None
    max_failures = spec.max_failures or max(3, spec.trials)
    procs = []
    for i, device in enumerate(devices):
        job = WorkerJob(session.ref.name, str(session.ref.dir), session.ref.url, spec.to_json(),
                        session.plugin_paths, device, threads, i, deadline, checkpoint_every_s)
        procs.append(ctx.Process(target=worker_main, name=f"automl-worker-{i}",
                                 args=(job, failures, max_failures, lock, errors)))
    reason = "finished"
    with StopSignals() as stop:
        for p in procs:
            p.start()
        _wait(procs, study, spec.trials, started, on_progress, poll_s, stop)
        if stop.reason:
            reason = stop.reason
            if not _stop_workers(procs, poll_s, stop):
                reason = "killed"
    errs = _drain(errors)
    if reason == "finished":  # a worker that died on its own (out of memory, a crash in C)
        errs += [f"worker {i} {_exit_text(p.exitcode)}" for i, p in enumerate(procs)
                 if p.exitcode and not any(e.startswith(f"worker {i} ") for e in errs)]
    snap = snapshot(study, spec.trials, started)
    if reason == "finished":
        if errs and snap.finished < spec.trials:
            reason = "worker-error"
        elif failures.value >= max_failures and snap.finished < spec.trials:
            reason = "failures"
        elif deadline is not None and snap.finished < spec.trials:
            reason = "timeout"
    return Outcome(reason, snap, errs)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _wait(procs, study, target, started, on_progress, poll_s, stop: StopSignals) -> None:
    while any(p.is_alive() for p in procs) and not stop.reason:
        if on_progress:
            on_progress(snapshot(study, target, started))
        for p in procs:
            p.join(timeout=poll_s / len(procs))
    if on_progress:
        on_progress(snapshot(study, target, started))


def _stop_workers(procs, poll_s, stop: StopSignals, grace_s: float = 30.0) -> bool:
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


def _drain(q) -> list[str]:
    out = []
    while True:
        try:
            out.append(q.get(timeout=0.05))
        except (queue.Empty, EOFError, OSError):
            return out


def finalize(session: Session, study: optuna.Study | None = None, reason: str = "finished") -> dict[str, Any] | None:
    """Score the best trial on the test split, save it under ``best/``, prune old weights,
    and fire ``on_study_end``."""
    study = study or session.ref.load()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best_info = None
    if complete:
        best = study.best_trial
        best_info = _save_best(session, study, best)
        _prune_weights(session, study, complete)
    session.registry.call("on_study_end", session.spec.loggers, event=StudyEvent(
        session.ref.name, str(session.ref.dir), len(complete),
        best_info["value"] if best_info else None, best_info["params"] if best_info else None, reason))
    return best_info


def _save_best(session: Session, study: optuna.Study, best: optuna.trial.FrozenTrial) -> dict[str, Any]:
    config = best.user_attrs["config"]
    space = session.resolved.plugin.spaces[config["space"]]
    data = space.prepare(session.bundle, config) if space.prepare else session.bundle
    model = build_model(space, config["model"], data.info)
    weights = session.ref.trial_dir(best.number) / "model.pt"
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    y_true, y_pred = evaluate(model, data, "test", device)
    test_value = score(session.metric, y_true, y_pred)
    tests = dict(study.user_attrs.get(TEST_KEY, {}))
    tests[str(best.number)] = test_value
    study.set_user_attr(TEST_KEY, tests)
    info = {"number": best.number, "value": best.value, "test_value": test_value,
            "metric": session.metric.name, "direction": session.metric.direction,
            "params": best.params, "config": config}
    if data.info.task == "classification" and getattr(y_pred, "ndim", 0) == 2:
        from sklearn.metrics import confusion_matrix

        info["confusion_matrix"] = confusion_matrix(
            y_true, y_pred.argmax(axis=1), labels=list(range(y_pred.shape[1]))).tolist()
        info["class_names"] = data.info.class_names or [str(i) for i in range(y_pred.shape[1])]
    study.set_user_attr(BEST_KEY, info)
    best_dir = session.ref.dir / "best"
    best_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, best_dir / "model.pt.tmp")
    (best_dir / "model.pt.tmp").replace(best_dir / "model.pt")  # a Ctrl-C mid-copy leaves the old one
    record = dict(info, info=asdict(data.info), data_state=data.state, spec=session.spec.to_json())
    (best_dir / "config.json").write_text(json.dumps(record, indent=2, default=str))
    return info


def _prune_weights(session: Session, study: optuna.Study, complete: list) -> None:
    """Keep the weights of the best few trials; a study of big models would fill the disk."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: t.value, reverse=maximize)
    for t in ranked[KEEP_WEIGHTS:]:
        (session.ref.trial_dir(t.number) / "model.pt").unlink(missing_ok=True)
