"""A search session in the main process: plan (validate), create, run, finalize.

:func:`plan_search` and :func:`plan_resume` resolve everything and load the data before
anything is written, so a rejected command leaves no trace. :func:`run` recovers the trials
of dead processes, then hands the study to the backend the spec names (local worker
processes or Ray Tune, looked up in :data:`automl.backends.BACKENDS`) with this module's
trial runner (:func:`automl.search.objective.make_runner`). :func:`finalize` scores the best
trial on the held-out test split and saves the best model.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from automl.backends import get_backend
from automl.backends.base import Backend, Job, Outcome, Snapshot, StopSignals, snapshot
from automl.errors import UserError
from automl.plugins import Registry, listener_names, load_registry
from automl.search.baselines import fit_baselines
from automl.search.finalize import KEEP_MODELS, rank_trials
from automl.search.finalize import finalize as _finalize
from automl.search.objective import Objective, make_pruner, make_runner, make_sampler
from automl.study.artifacts import check_artifacts_url, fetch_targets, fetch_trial, open_store, publish_best
from automl.study.datasets import fingerprint, load_data
from automl.study.recovery import claim_lock, recover, to_recover
from automl.study.resolve import Resolved, check_goals, check_task_fit, resolve
from automl.study.sampling import start_params
from automl.study.spec import FIGURES, StudySpec, check_counts
from automl.study.store import (
    BASELINE_KEY,
    FINISHED,
    SPEC_KEY,
    SUMMARY_KEY,
    StudyRef,
    create,
    delete,
    new_ref,
    open_ref,
    quiet_optuna,
    require_shared,
    spec_of,
)
from automl.types import DataBundle, Metric


@dataclass
class Session:
    """A validated search, ready to run: nothing is written until :func:`create_study`."""

    ref: StudyRef
    spec: StudySpec
    registry: Registry
    resolved: Resolved
    bundle: DataBundle
    metric: Metric
    backend: Backend
    requeued: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: When the command started (``time.time()``): a ``--timeout`` counts from here.
    started: float = field(default_factory=time.time)
    #: What one epoch was measured on, when it was (``spec.epoch_s`` holds the seconds).
    epoch_measure: str | None = None
    #: The stored target a resume read when it was planned (None for a new search): if the
    #: stored one differs when the spec is written, another resume raised it meanwhile.
    read_target: int | None = None


def _absolute(paths: list[str]) -> list[str]:
    """``--plugin-path`` entries that are files or folders, made absolute (workers and Ray
    nodes start elsewhere); module names stay as they are."""
    return [os.path.abspath(p) if os.path.exists(p) else p for p in paths]


def study_plugins(spec: StudySpec) -> set[str]:
    """The plugins a search imports: its own, its loggers (``--log``) and the always-on
    listeners (``automl.listeners``); no other installed plugin is imported, so a search
    starts as fast as its own plugin allows."""
    return {spec.plugin, *spec.loggers, *listener_names()}


def check_plugin_paths(paths: list[str], study: str) -> list[str]:
    """A stored study's ``--plugin-path`` files, refused with their name when one moved."""
    for path in paths:
        if os.path.isabs(path) and not os.path.exists(path):
            raise UserError(f"study {study!r} was made with --plugin-path {path}, which no longer exists; "
                            "pass --plugin-path with its new location")
    return paths


def plan_search(spec: StudySpec, name: str | None = None, storage: str | None = None,
                warm: bool = False, started: float | None = None, measure: bool = False) -> Session:
    """Check and complete a new study's spec: resolve the plugin's names, load the data,
    pick the metric, fingerprint data and spaces. Raises :class:`UserError`; writes nothing.
    ``warm``: the search will run, so the backend may start its trial processes' imports now.
    ``started``: when the command started (a ``--timeout`` counts from there). With a
    timeout, or ``measure`` (``--dry-run``), one epoch is timed here (see :func:`measure_epoch`)."""
    started = time.time() if started is None else started
    quiet_optuna()
    spec.check()
    _check_scale_out(spec, storage)
    spec.pruner = spec.resolved_pruner()
    backend = get_backend(spec.backend)
    backend.check(spec)
    if warm:
        backend.warm_up([make_runner.__module__])
    spec.plugin_paths = _absolute(spec.plugin_paths)
    _objective_metric(spec)
    registry = load_registry(spec.plugin_paths, only=study_plugins(spec))
    registry.check_loggers(spec.loggers)
    resolved = resolve(registry, spec.plugin, spec.dataset, spec.spaces or None, spec.metric, spec.options,
                       deployment=spec.deployment_aware)
    ref = new_ref(name or f"{spec.plugin}-{resolved.dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage)
    spec.data_path = os.path.abspath(spec.data_path) if spec.data_path else None
    bundle = load_data(spec.plugin, resolved.dataset, spec.data_path, resolved.options, spec.seed)
    metric = check_task_fit(resolved, bundle.info)
    spec.directions = check_goals(resolved, bundle.info, spec.objectives, spec.constraints)
    if spec.multi_objective:
        spec.pruner = "none"  # Optuna's pruners compare one value per epoch; the CLI says so
    spec.dataset, spec.spaces = resolved.dataset.name, [s.name for s in resolved.spaces]
    spec.metric, spec.direction, spec.options = metric.name, metric.direction, resolved.options
    spec.loggers = list(dict.fromkeys(spec.loggers))
    spec.data_fingerprint = fingerprint(bundle)
    spec.plugin_version = resolved.plugin.version
    session = Session(ref, spec, registry, resolved, bundle, metric, backend, started=started)
    objective = _objective(session)
    objective.preflight()
    spec.space_hash = objective.space_fingerprint()
    if spec.timeout or measure:
        measure_epoch(session, objective)
    return session


def _objective_metric(spec: StudySpec) -> None:
    """``--objective`` and ``--metric``: one objective is the study's metric (as ``--metric``);
    with several, the study's metric (what trials train and early-stop on, and the test score
    of the selected model) is ``--metric``, else the first objective that is not a deployment
    figure, else the plugin's default."""
    if len(spec.objectives) == 1:
        if spec.metric and spec.metric != spec.objectives[0]:
            raise UserError(f"--metric {spec.metric} and a single --objective {spec.objectives[0]}: give one of them "
                            "(several --objective make a multi-objective study)")
        spec.metric, spec.objectives = spec.objectives[0], []
    elif spec.objectives and spec.metric is None:
        spec.metric = next((o for o in spec.objectives if o not in FIGURES), None)


def _check_scale_out(spec: StudySpec, url: str | None) -> None:
    """Refuse a Ray cluster on a storage only one machine can use (``url`` None: the default
    SQLite file), and check ``--artifacts``; before anything slow is loaded."""
    if spec.backend == "ray" and spec.address:
        require_shared(url, f"--backend ray --address {spec.address} (a Ray cluster)")
    if spec.artifacts:
        spec.artifacts = check_artifacts_url(spec.artifacts)


def finalize(session: Session, study: optuna.Study | None = None, reason: str = "finished") -> dict[str, Any] | None:
    """The session's last step (:func:`automl.search.finalize.finalize`), with the study's
    artifact store when it has one: the files of the trials finalize reads (the best ones'
    models, their predictions, the targets) that ran on other machines are downloaded first,
    and the selected model (``best/``) is uploaded after, for export and predict elsewhere."""
    study = study or session.ref.load()
    store = open_store(session.spec.artifacts)
    if store is not None:
        _fetch_ranked(session, study, store)
    try:
        best = _finalize(session, study, reason)
    except FileNotFoundError as exc:
        raise UserError(f"{exc}: the trial ran on another machine; give the study an artifact store that every "
                        "machine reaches (automl search ... --artifacts /shared/folder or s3://BUCKET)") from None
    if store is not None and best is not None:
        publish_best(store, study, session.ref.dir / "best")
    return best


def _fetch_ranked(session: Session, study: optuna.Study, store: Any) -> None:
    """Download the files of the best trials (the selected one, the ensemble's candidates)
    that are not in this machine's study folder."""
    ranked = rank_trials(study, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    fetch_targets(store, study, session.ref.dir)
    for t in ranked[:max(1, session.spec.ensemble) + KEEP_MODELS]:
        fetch_trial(store, t, study._storage, session.ref.trial_dir(t.number))


def measure_epoch(session: Session, objective: Objective | None = None) -> None:
    """Time one epoch of the first space on this machine, with the threads each worker will
    have (``spec.epoch_s``): a time budget sets every trial's epochs from it, and the user
    sees what fits in the budget before the search starts."""
    from automl.backends.devices import threads_per_worker

    objective = objective or _objective(session)
    seconds, what = objective.epoch_seconds(threads_per_worker(session.spec.workers))
    session.spec.epoch_s, session.epoch_measure = round(seconds, 3), what
    epochs = objective.distributions().get("epochs")
    session.spec.space_max_epochs = int(epochs.high) if isinstance(epochs, optuna.distributions.IntDistribution) \
        else None


def _objective(session: Session) -> Objective:
    """The session's objective in this process (for the checks before a search, not trials)."""
    return Objective(registry=session.registry, spec=session.spec, spaces=session.resolved.spaces,
                     metric=session.metric, bundle=session.bundle, study_name=session.ref.name,
                     study_dir=session.ref.dir, device=torch.device("cpu"))


def create_study(session: Session) -> optuna.Study:
    """Create the study with its spec, data summary and baseline rows: all of it, or (on any
    error, Ctrl-C included) nothing."""
    quiet_optuna()
    spec = session.spec
    study = create(session.ref, spec.to_json(), spec.directions if spec.multi_objective else spec.direction,
                   make_sampler(spec.sampler, spec.seed), make_pruner(spec.pruner, constrained=bool(spec.constraints)))
    try:
        starts = start_params({s.name: s for s in session.resolved.spaces}, session.bundle.info)
        for params in starts[:spec.trials]:
            study.enqueue_trial(params, skip_if_exists=True)
        study.set_user_attr(SUMMARY_KEY, json.loads(json.dumps(session.bundle.summary, default=str)))
        baselines = list(session.resolved.plugin.baselines.values())
        if baselines:
            study.set_user_attr(BASELINE_KEY, fit_baselines(baselines, session.bundle, session.metric,
                                                              spec, session.ref.dir))
    except BaseException:
        delete(session.ref)
        raise
    return study


def plan_resume(name: str, more: int | None = None, force: bool = False,
                plugin_paths: list[str] | None = None, workers: int | None = None,
                backend: str | None = None, address: str | None = None,
                storage: str | None = None, warm: bool = False, max_retries: int | None = None,
                timeout: float | None = None, started: float | None = None) -> Session:
    """Plan the continuation of a stored study; the backend may differ from the one that
    started it (both write the same Optuna study). ``warm`` as for :func:`plan_search`."""
    quiet_optuna()
    check_counts(more, workers)
    backend_obj = get_backend(backend) if backend is not None else None
    ref = open_ref(name, storage)
    study = ref.load()
    spec = StudySpec.from_json(spec_of(study))
    if plugin_paths:
        spec.plugin_paths = _absolute(plugin_paths)
    registry = load_registry(check_plugin_paths(spec.plugin_paths, name), only=study_plugins(spec))
    if spec.plugin not in registry.plugins:
        raise UserError(f"study {name!r} needs plugin {spec.plugin!r}, which is not installed; install "
                        f"the package that provides it (pip install <package>) or pass --plugin-path")
    resolved = resolve(registry, spec.plugin, spec.dataset, spec.spaces, spec.metric, spec.options)
    warnings: list[str] = []
    bundle = load_data(spec.plugin, resolved.dataset, spec.data_path, resolved.options, spec.seed)
    metric = check_task_fit(resolved, bundle.info)
    if fingerprint(bundle) != spec.data_fingerprint:
        warnings.append("the data changed since the study was created (fingerprint differs)")
    if resolved.plugin.version != spec.plugin_version:
        warnings.append(f"plugin {spec.plugin} is version {resolved.plugin.version}, "
                        f"the study was made with {spec.plugin_version}")
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    read_target = spec.trials
    if more is not None:
        spec.trials = finished + more
    if workers is not None:
        spec.workers = workers
    if max_retries is not None:
        spec.max_retries = max_retries
    if timeout is not None:
        spec.timeout = timeout
    spec.check()
    if backend is not None:
        spec.backend, spec.address = backend, address
    chosen = backend_obj or get_backend(spec.backend)
    chosen.check(spec)
    _check_scale_out(spec, ref.url)
    if storage and not spec.artifacts:
        warnings.append(f"study {name!r} has no artifact store (--artifacts): the models of the trials this worker "
                        f"runs stay in {ref.dir} on this machine, where the search that owns the study cannot "
                        "load them")
    if warm:
        chosen.warm_up([make_runner.__module__])
    session = Session(ref, spec, registry, resolved, bundle, metric, chosen, warnings=warnings,
                      started=time.time() if started is None else started, read_target=read_target)
    objective = _objective(session)
    if objective.space_fingerprint() != spec.space_hash:
        if not force:
            raise UserError(f"the search space of plugin {spec.plugin!r} changed since study {name!r} "
                            "was created (a parameter, its range or its choices); rerun with --force to continue "
                            "with the new space")
        _check_compatible(study, objective, name)
        warnings.append("search space changed since the study was created (--force)")
    objective.preflight()
    if spec.timeout and not spec.epoch_s:
        measure_epoch(session, objective)
    session.requeued = [t.number for t, why in to_recover(study) if "not rerun" not in why]
    return session


def _check_compatible(study: optuna.Study, objective: Objective, name: str) -> None:
    """A forced resume with a changed space: Optuna continues a study whose ranges changed,
    but not one whose parameter changed type or whose choices changed."""
    new = objective.distributions()
    old: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        old.update(t.distributions)
    for param in sorted(old.keys() & new.keys()):
        try:
            optuna.distributions.check_distribution_compatibility(old[param], new[param])
        except ValueError:
            raise UserError(f"study {name!r} cannot continue with the changed space even with --force: parameter "
                            f"{param!r} was {old[param]} and is now {new[param]}, and Optuna cannot mix them in "
                            "one study; start a new study with automl search") from None


def run(session: Session, on_progress: Callable[[Snapshot], None] | None = None,
        poll_s: float = 0.5, stop: StopSignals | None = None, owner: bool = True) -> Outcome:
    """Run trials until the spec's target is reached, on the spec's backend. Ctrl-C and
    SIGTERM are recorded and end the run cleanly (see :class:`StopSignals`); give ``stop``
    when the caller already records them (the CLI does, from before the study is created).

    ``owner``: this process owns the search (``search``, ``resume``) and stores its spec (a
    resume may have changed the target, workers or backend); a joining ``automl worker`` is
    not the owner and changes nothing but the trials it runs."""
    quiet_optuna()
    session.ref.ensure_dir()
    spec = session.spec
    study = session.ref.load()
    lock = claim_lock(study._storage, session.ref.dir, session.ref.name)
    if owner:
        _store_spec(study, spec, lock, session.read_target)
    session.requeued = recover(study, lock)
    started = time.time()
    snap = snapshot(study, spec.trials, started)
    if snap.finished >= spec.trials:
        return Outcome("finished", snap)
    deadline = None
    if spec.timeout:  # budget-aware: trials are cut at it; else it only stops new trials (the old way)
        deadline = session.started + spec.timeout - (spec.reserve_s() if spec.budget_aware else 0.0)
    job = Job(session.ref.name, str(session.ref.dir), session.ref.url, spec.to_json(), make_runner,
              deadline=deadline, salt=0 if owner else os.getpid())
    if stop is not None:
        return _run_until_done(session, study, job, stop, on_progress, poll_s, owner)
    with StopSignals() as own:
        return _run_until_done(session, study, job, own, on_progress, poll_s, owner)


def _store_spec(study: optuna.Study, spec: StudySpec, lock: Any, read_target: int | None) -> None:
    """Store the owner's spec (a resume may change the target, workers, backend, budget)
    under the claim lock, compare-and-set on the target: if the stored target is no longer
    the one this resume read when it was planned, another resume raised it meanwhile
    (``resume --trials`` only ever adds trials) and writing the planned spec back would undo
    that raise, so the higher one is kept. A target this resume read is replaced as planned:
    ``resume --trials N`` runs N more even after a search that stored a higher target."""
    with lock:
        stored = study._storage.get_study_user_attrs(study._study_id).get(SPEC_KEY) or {}
        if read_target is not None and int(stored.get("trials", read_target)) != read_target:
            spec.trials = max(spec.trials, int(stored["trials"]))
        study.set_user_attr(SPEC_KEY, spec.to_json())


def _wait_for_running(study: optuna.Study, target: int, started: float, stop: StopSignals,
                      on_progress: Callable[[Snapshot], None] | None, poll_s: float, up_to_s: float = 30.0) -> None:
    """Show progress while other processes' trials run, for at most ``up_to_s`` seconds (then
    the caller checks whether their processes died) or until a signal."""
    end = time.time() + up_to_s
    while time.time() < end and not stop.reason:
        snap = snapshot(study, target, started)
        if on_progress:
            on_progress(snap)
        if not snap.counts.get("RUNNING", 0):
            return
        time.sleep(poll_s)


def _run_until_done(session: Session, study: optuna.Study, job: Job, stop: StopSignals,
                    on_progress: Callable[[Snapshot], None] | None, poll_s: float, owner: bool) -> Outcome:
    """Run the backend; as the owner of the search, also wait for trials that other processes
    (``automl worker``) still run, so that finalize sees the whole study, and run the backend
    again for trials they left to redo (a worker that died: its trial is re-queued)."""
    spec, lock = session.spec, claim_lock(study._storage, session.ref.dir, session.ref.name)
    outcome = session.backend.run(job, spec, stop, on_progress, poll_s)
    if not owner:
        return outcome
    started = time.time()
    for _ in range(100):  # each round finishes trials or gives up retries: bounded in practice
        snap = snapshot(study, spec.trials, started)
        if outcome.reason != "finished" or snap.finished >= spec.trials or stop.reason:
            break
        if snap.counts.get("RUNNING", 0):
            _wait_for_running(study, spec.trials, started, stop, on_progress, poll_s)
            recover(study, lock)  # a trial whose process died meanwhile is re-queued here
            continue
        before = snap.finished
        outcome = session.backend.run(job, spec, stop, on_progress, poll_s)
        if snapshot(study, spec.trials, started).finished == before and not snapshot(
                study, spec.trials, started).counts.get("WAITING", 0):
            break  # nothing left that this process can run
    if stop.reason and outcome.reason == "finished":
        outcome = Outcome(stop.reason, snapshot(study, spec.trials, started), outcome.errors)
    return outcome


def rebuild_ensemble(name: str, size: int, plugin_paths: list[str] | None = None) -> dict[str, Any] | None:
    """``automl ensemble NAME``: build a stored study's ensemble again over its best ``size``
    trials (0 removes it). Plans like a resume (plugin, data), runs no trial."""
    from automl.search.finalize import build_ensemble
    from automl.study.store import ENSEMBLE_KEY

    session = plan_resume(name, plugin_paths=plugin_paths, force=True)
    study = session.ref.load()
    if size == 0:
        study.set_user_attr(ENSEMBLE_KEY, None)
        return None
    store = open_store(session.spec.artifacts)
    if store is not None:
        _fetch_ranked(session, study, store)
    ranked = rank_trials(study, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return build_ensemble(session, study, ranked, size)
