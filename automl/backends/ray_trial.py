"""What runs inside a Ray Tune trial, and the searcher that binds Tune to the automl study.

The searcher is Ray's ``OptunaSearch`` on the study's own storage and study name: it asks the
study for a trial, samples the whole config there (the driver's sampler sees every trial of
the study, whichever backend ran it), and passes the Optuna trial id to Tune. The trainable
opens that same trial in its process and runs the local backend's ``Objective`` on it, so the
user attrs (worker, config, run, error, ...), intermediate values and weights under
``STUDY/trials/N/`` are exactly those of a local trial. Each epoch is also reported to Tune,
whose scheduler (ASHA, async HyperBand, median stopping) may stop the trial: the searcher then
tells Optuna PRUNED, as it does for a trial the objective prunes itself (:func:`outcome`). A
trial that raises is recorded FAIL with its error and ends normally, so Tune's
``FailureConfig`` retries only trials whose worker was lost (a dead node).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from automl.backends.base import Job, TrialRunner, error_reason
from automl.errors import UserError
from automl.study.artifacts import shared_files
from automl.study.recovery import owner_record
from automl.study.store import quiet_optuna

METRIC = "value"
ID_KEY = "automl_trial_id"
STATE_KEY = "automl_state"
_CACHE: dict[str, tuple] = {}


def plain_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's storage without heartbeats (Ray, not Optuna, watches Ray trials)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, **kwargs)


class DefineByRun:
    """The define-by-run space given to ``OptunaSearch``: samples the config in the driver
    (with the trial runner's own sampling) and marks the trial as a Ray trial owned, until a
    worker takes it, by the driver process."""

    def __init__(self, runner: TrialRunner) -> None:
        self.runner = runner
        self.owner = {**owner_record(), "backend": "ray"}

    def __call__(self, trial: Any) -> dict[str, Any]:
        self.runner.sample(trial)
        trial.set_user_attr("worker", self.owner)  # one write: the driver's loop is serial
        return {ID_KEY: trial._trial_id, "automl_number": trial.number}


class AutomlSearch(OptunaSearch):
    """``OptunaSearch`` that stops at exactly the target of finished trials.

    It suggests trials until ``target`` trials finished (COMPLETE or PRUNED) during this run,
    counting failed ones out and replacing them, and stops after ``max_failures`` failures, at
    the deadline, or when the stop file appears. Intermediate values come from the trials
    themselves (as on the local backend), so ``on_trial_result`` does nothing here. Its state
    lives in the Optuna storage, so Tune's searcher checkpoint (a pickle) is not written.
    """

    def __init__(self, define: DefineByRun, *, mode: str, sampler: optuna.samplers.BaseSampler,
                 study_name: str, storage: optuna.storages.BaseStorage, target: int,
                 max_failures: int, deadline: float | None, stop_file: str) -> None:
        super().__init__(space=define, metric=METRIC, mode=mode, sampler=sampler,
                         study_name=study_name, storage=storage)
        self.target, self.max_failures, self.deadline, self.stop_file = target, max_failures, deadline, stop_file
        self.live = self.done = self.failed = 0

    def stopping(self) -> bool:
        """Whether to start no more trials (stop file, failures or deadline)."""
        return (os.path.exists(self.stop_file) or self.failed >= self.max_failures
                or (self.deadline is not None and time.time() >= self.deadline))

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.done >= self.target or self.stopping():
            return Searcher.FINISHED
        if self.done + self.live >= self.target:
            return None  # wait: a running trial may still fail and need a replacement
        config = super().suggest(trial_id)
        if config is not None:
            self.live += 1
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self._ot_trials.pop(trial_id, None)
        if trial is None:
            return
        self.live = max(0, self.live - 1)
        state, value, reason = classify(result, error, os.path.exists(self.stop_file))
        try:
            frozen = self._ot_study._storage.get_trial(trial._trial_id)
            if frozen.state != TrialState.RUNNING:
                return
            if reason and not frozen.user_attrs.get("error"):
                trial.set_user_attr("error", reason)
            if reason == "interrupted":
                trial.set_user_attr("interrupted", True)
            self._ot_study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        except Exception as exc:  # noqa: BLE001 - e.g. a NaN value: record the trial failed
            if self._ot_study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                trial.set_user_attr("error", error_reason(exc))
                self._ot_study.tell(trial, None, state=TrialState.FAIL)
            state = TrialState.FAIL
        if state == TrialState.FAIL:
            self.failed += 1
        else:
            self.done += 1

    def save(self, checkpoint_path: str) -> None:
        return None

    def restore(self, checkpoint_path: str) -> None:
        return None


def classify(result: dict | None, error: bool,
             stopping: bool) -> tuple[TrialState, float | list[float] | None, str | None]:
    """The Optuna state of a finished Tune trial from its last result (the value: one per
    objective for a multi-objective study)."""
    result = result or {}
    state = result.get(STATE_KEY)
    if state == "COMPLETE":
        values = result.get("automl_values")
        if values is not None:  # a multi-objective study (--objective)
            if any(v is None or not math.isfinite(float(v)) for v in values):
                return TrialState.FAIL, None, f"the trial's objectives are {values}"
            return TrialState.COMPLETE, [float(v) for v in values], None
        value = result.get("automl_value")
        if value is None or not math.isfinite(float(value)):
            return TrialState.FAIL, None, f"the trial's metric is {value}"
        return TrialState.COMPLETE, float(value), None
    if state == "FAIL":
        return TrialState.FAIL, None, result.get("automl_error") or "failed"
    if state == "PRUNED":  # the objective pruned it (outcome)
        return TrialState.PRUNED, None, None
    if error:
        return TrialState.FAIL, None, "the Ray trial failed or its worker was lost (see the study's ray/ folder)"
    if stopping:
        return TrialState.FAIL, None, "interrupted"
    return TrialState.PRUNED, None, None


def _runner(job: Job, device: str) -> TrialRunner:
    """The trial runner of this Ray worker process, built once per study (Tune reuses actors)."""
    key = json.dumps([job.study_name, job.url, job.spec, device], sort_keys=True, default=str)
    if key not in _CACHE:
        _CACHE.clear()  # a reused Ray worker keeps one study's data loaded, not every one
        _CACHE[key] = job.factory(job, device)
    return _CACHE[key]


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def _storage(url: str) -> optuna.storages.RDBStorage:
    """The study's storage, opened once per Ray worker process (Tune reuses the actors): a new
    SQLAlchemy engine per trial cost tens of milliseconds (benchmarks/bench_ray)."""
    if url not in _STORAGES:
        _STORAGES[url] = plain_storage(url)
    return _STORAGES[url]


def _device() -> Any:
    import ray
    import torch

    if torch.cuda.is_available() and ray.get_gpu_ids():
        return torch.device("cuda:0")  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU
    return torch.device("cpu")


def trainable(config: dict[str, Any], job: Job | None = None, threads: int = 1) -> None:
    """The Tune function trainable: run the trial runner on the Optuna trial the searcher asked."""
    import ray
    import torch
    from ray import tune

    assert job is not None  # bound with tune.with_parameters
    quiet_optuna()
    storage = _storage(job.url)
    trial_id = int(config[ID_KEY])
    try:
        _check_readable(job)
        device = _device()
        runner = _runner(job, str(device))
        torch.set_num_threads(max(1, int(threads)))
        study = optuna.load_study(study_name=job.study_name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(), pruner=optuna.pruners.NopPruner())
        trial = optuna.trial.Trial(study, trial_id)
        ctx = ray.get_runtime_context()
        earlier = trial.user_attrs.get("worker")
        if earlier and earlier.get("ray"):  # Tune runs it again (its node was lost): keep where it ran
            trial.set_user_attr("earlier_workers", [*trial.user_attrs.get("earlier_workers", []), earlier])
        trial.set_user_attr("worker", {**owner_record(str(device)), "backend": "ray", "ray": {
            "node_id": ctx.get_node_id(), "address": ctx.gcs_address, "trial": tune.get_context().get_trial_id()}})
    except Exception as exc:  # noqa: BLE001 - recorded as the trial's failure
        reason = error_reason(exc)
        try:
            storage.set_trial_user_attr(trial_id, "error", reason)
        except Exception:  # noqa: BLE001 - the searcher records a generic reason instead
            pass
        tune.report({STATE_KEY: "FAIL", "automl_error": reason})
        return

    def on_epoch(epoch: int, value: float, train_loss: float) -> None:
        tune.report({METRIC: float(value), "train_loss": float(train_loss), "epoch": int(epoch)})

    def run() -> float | list[float]:
        value = runner(trial, on_epoch)
        files = shared_files(job.spec.get("artifacts"), job.study_dir)
        if files is not None:
            try:
                files.upload(trial)  # before the searcher tells COMPLETE: Optuna records the files on the trial
            except Exception as exc:
                trial.set_user_attr("error", f"storing its files in the artifact store: {error_reason(exc)}")
                raise
        return value

    tune.report(outcome(run))


def outcome(run: Any) -> dict[str, Any]:
    """The last result a trainable reports for ``run()`` (the trial runner): its value (a
    multi-objective study's every objective, the primary as Tune's metric); PRUNED when the
    objective prunes the trial itself (too slow for a time budget, rejected before training
    under a constraint), as the local backend records it; FAIL with the reason when it raises
    (the runner stored the reason in the trial)."""
    try:
        value = run()
    except optuna.TrialPruned as exc:
        return {STATE_KEY: "PRUNED", "automl_pruned": str(exc)}
    except Exception as exc:  # noqa: BLE001 - recorded as the trial's failure
        return {STATE_KEY: "FAIL", "automl_error": error_reason(exc)}
    if isinstance(value, list):
        return {METRIC: float(value[0]), STATE_KEY: "COMPLETE", "automl_value": float(value[0]),
                "automl_values": [float(v) for v in value]}
    return {METRIC: float(value), STATE_KEY: "COMPLETE", "automl_value": float(value)}


def _check_readable(job: Job) -> None:
    spec = job.spec
    for what, path in (("--data", spec.get("data_path")), ("the study folder", job.study_dir)):
        if path and not os.path.exists(path):
            raise UserError(f"{what} {path} does not exist on Ray node {socket.gethostname()}: "
                            "put it on a shared filesystem mounted at the same path on every node")


def probe_paths(paths: list[str]) -> tuple[str, list[str]]:
    """On a Ray node: its host name and which of ``paths`` it cannot see."""
    return socket.gethostname(), [p for p in paths if not os.path.exists(p)]


class StopFile(Stopper):
    """Stops the whole experiment when a file appears (Ctrl-C / SIGTERM in the driver); a
    file, not an event, so that it also works when Tune runs on a ``ray://`` cluster's head."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return os.path.exists(self.path)
