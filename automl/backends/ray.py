"""The Ray Tune backend: ``automl search --backend ray [--address ADDR]``.

Without ``--address`` a local Ray starts with this machine's CPUs and the GPUs ``--gpus``
selects, and is shut down at the end; with ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` the
search joins a running cluster (``ray start --head``). If Ray is already initialised in this
process (a notebook, the benchmarks), that instance is used and left running.

Where things go: Tune's result folders under ``STUDY/ray/``; a local Ray's logs under
``STUDY/ray/logs`` (its session folder lives under ``STUDY/ray/tmp`` when that path is short
enough for Unix sockets, else in a short temporary folder whose logs are copied back). Ray's
console output is kept out of automl's (``log_to_driver=False``, ``verbose=0``, loggers at
ERROR); a trial whose worker was lost (its node died) and an error the cluster publishes (a
raylet that died) are one line each, not Ray's traceback or log dump.

Trials: ``--workers`` caps concurrent trials, ``--cpus-per-trial`` / ``--gpus-per-trial``
(fractions share a GPU) are each trial's Tune resources, and ``--pruner`` maps to Ray's
schedulers: ``asha`` -> ASHAScheduler, ``hyperband`` -> AsyncHyperBandScheduler (three
brackets; the synchronous HyperBandScheduler pauses trials, which needs Tune checkpoints),
``median`` -> MedianStoppingRule, ``none`` -> FIFO. The search ends with exactly the spec's
target of finished trials: a failed trial is replaced until ``--max-failures``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from automl.backends.base import Job, Outcome, Snapshot, StopSignals, error_reason, poll, snapshot
from automl.backends.devices import cpu_cores, cuda_count, parse_gpus
from automl.errors import UserError
from automl.study.spec import StudySpec
from automl.study.store import quiet_optuna

ENV = {"RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0", "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
       "RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_AIR_NEW_OUTPUT": "0",
       "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1e9",
       "RAY_TQDM": "0", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
MAX_SOCKET_DIR = 40  # + "/session_<date>_<pid>/sockets/plasma_store" must stay under 107 bytes
LOST_RETRIES = 2


class LostTrialLine(logging.Filter):
    """One line instead of Ray Tune's traceback when a trial task fails.

    Tune logs every failed trial task at ERROR with the whole traceback (when a node dies:
    ``ActorUnavailableError``, ``ActorDiedError``, ...). automl's trainable records a trial's
    own errors and ends normally, so a failed task is a lost worker (its node or process died):
    the user is told, in one line, which trial and that Tune runs it again. Hand-written as a
    logging filter: Tune's only switch (``TUNE_PRINT_ALL_TRIAL_ERRORS=0``) drops the line too.
    ``numbers`` maps a Tune trial id to the study's trial number (the searcher's trials)."""

    PATTERN = re.compile(r"Trial task failed for trial (\S+)")

    def __init__(self) -> None:
        super().__init__()
        self.numbers: Callable[[str], int | None] = lambda trial_id: None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        text = record.getMessage()
        match = self.PATTERN.match(text)
        if match:
            name = match.group(1)
            number = self.numbers(name.rsplit("_", 1)[-1])
            who = f"trial {number}" if number is not None else f"Ray Tune trial {name}"
            text = (f"{who} lost its Ray worker, whose node or process died ({error_reason(exc)}); "
                    f"Ray Tune runs it again, up to {LOST_RETRIES} times")
        else:
            text = f"{text}: {error_reason(exc)}"
        record.msg, record.args, record.exc_info, record.exc_text = text, None, None, None
        return True


LOST_LINE = LostTrialLine()
#: How long the same published cluster error is printed once (Ray publishes a dead raylet twice).
REPEAT_S = 30.0


def _one_line_cluster_errors() -> None:
    """Print each error the cluster publishes to the driver as one line.

    ``ray.init`` starts a thread in the driver that prints every error the cluster publishes
    to stdout in full: a raylet that died comes with the last 20 lines of its log, and twice.
    Its first line says what happened (``Raylet is terminated. Termination is unexpected.
    Possible reasons include: (1) SIGKILL ...``), so only that line is printed, once in
    ``REPEAT_S``. Ray has no setting for this (``log_to_driver`` covers workers' output, not
    these errors), hence the wrapper around the function that thread calls, looked up by
    name at each call; a Ray without it is left as it is."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "automl_one_line", False):
        return
    printed: dict[str, float] = {}

    def one_line(data: dict, *args: Any, **kwargs: Any) -> Any:
        lines = [str(line) for line in data.get("lines") or [] if str(line).strip()]
        if data.get("pid") == "raylet" and lines:
            first = lines[0].strip().splitlines()[0]
            first = re.sub(r"\s*Last \d+ lines of the \w+ logs:\s*$", "", first)
            now = time.monotonic()
            if now - printed.get(first, -REPEAT_S) < REPEAT_S:
                return None
            printed[first] = now
            data = {**data, "lines": [first]}
        return original(data, *args, **kwargs)

    one_line.automl_one_line = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = one_line


def _quiet_ray() -> None:
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    for name in ("ray", "ray.tune", "ray.train", "ray.data", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)
    controller = logging.getLogger("ray.tune.execution.tune_controller")  # where Tune logs trial failures
    if LOST_LINE not in controller.filters:
        controller.addFilter(LOST_LINE)


def _temp_dir(study_dir: Path) -> tuple[Path, bool]:
    """The local Ray's session folder, and whether it is a stand-in outside the study."""
    inside = study_dir / "ray" / "tmp"
    if len(str(inside)) <= MAX_SOCKET_DIR:
        inside.mkdir(parents=True, exist_ok=True)
        return inside, False
    return Path(tempfile.mkdtemp(prefix="automl-ray-", dir="/tmp")), True


def _token_auth() -> None:
    """Send Ray's auth token when one is set up, as ``ray start`` does (Ray >= 2.5x clusters
    started where ``~/.ray/auth_token`` exists require it); ``RAY_AUTH_MODE`` overrides."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception:  # noqa: BLE001 - connecting reports any real problem
        pass


def start_ray(spec: StudySpec, study_dir: Path) -> tuple[bool, Path | None, bool]:
    """Start or join Ray. Returns (we own it, its temp dir, the temp dir is a stand-in)."""
    import ray

    _quiet_ray()  # again: importing Ray resets its loggers
    if ray.is_initialized():
        return False, None, False
    _one_line_cluster_errors()
    common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    if spec.address:
        env = {k: v for k, v in os.environ.items() if k.startswith("AUTOML_")}
        env.update({k: os.environ[k] for k in ENV if k.startswith(("RAY_CHDIR", "PYTHONWARN"))})
        _token_auth()
        try:
            ray.init(address=spec.address, runtime_env={"env_vars": env}, **common)
        except Exception as exc:  # noqa: BLE001 - an unreachable cluster is the user's address
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot join the Ray cluster at {spec.address!r}: {first}; start one with "
                            "`ray start --head` or give its address (auto, HOST:PORT, ray://HOST:PORT)") from None
        return True, None, False
    gpus = parse_gpus(spec.gpus, cuda_count())
    if gpus and spec.gpus not in (None, "", "auto"):
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    temp, standin = _temp_dir(study_dir)
    ray.init(num_cpus=cpu_cores(), num_gpus=len(gpus), include_dashboard=False, _temp_dir=str(temp), **common)
    return True, temp, standin


def stop_ray(owned: bool, temp: Path | None, standin: bool, study_dir: Path) -> None:
    """Shut Ray down if this search started it; keep its logs under ``STUDY/ray/logs``."""
    import ray

    if not owned:
        return
    ray.shutdown()
    if temp is None:
        return
    logs = temp / "session_latest" / "logs"
    if logs.is_dir():
        try:
            shutil.copytree(logs, study_dir / "ray" / "logs", dirs_exist_ok=True, symlinks=False,
                            ignore_dangling_symlinks=True)
        except (OSError, shutil.Error):
            pass
    if standin:
        shutil.rmtree(temp, ignore_errors=True)


def resources(spec: Any, workers: int) -> dict[str, float]:
    """Each trial's Tune resources; refuses requests no node can ever satisfy."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    node_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    node_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    total_cpus = sum(n.get("CPU", 0) for n in nodes)
    cpu = spec.cpus_per_trial if spec.cpus_per_trial is not None else max(1, min(node_cpus, total_cpus // workers))
    if spec.gpus_per_trial is not None:
        gpu = spec.gpus_per_trial
    else:
        gpu = 1 if node_gpus >= 1 and (spec.gpus or "auto").lower() not in ("none", "cpu") else 0
    if cpu > node_cpus:
        raise UserError(f"--cpus-per-trial {cpu:g} is more than any Ray node has ({node_cpus:g} CPUs)")
    if gpu > node_gpus:
        raise UserError(f"--gpus-per-trial {gpu:g} is more than any Ray node has ({node_gpus:g} GPUs)")
    return {"cpu": float(cpu), "gpu": float(gpu)}


def scheduler(pruner: str, mode: str, max_t: int) -> Any:
    """Ray's trial scheduler for ``--pruner`` (see the module docstring)."""
    from ray.tune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule

    from automl.backends.ray_trial import METRIC

    common = dict(time_attr="training_iteration", metric=METRIC, mode=mode)
    if pruner == "asha":
        return ASHAScheduler(max_t=max_t, grace_period=2, reduction_factor=3, **common)
    if pruner == "hyperband":
        return AsyncHyperBandScheduler(max_t=max_t, grace_period=2, reduction_factor=3, brackets=3, **common)
    if pruner == "median":
        return MedianStoppingRule(grace_period=3, min_samples_required=5, **common)
    return FIFOScheduler()


def check_paths(paths: list[str]) -> None:
    """On a cluster, every node must see the dataset and the study folder at the same path."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from automl.backends.ray_trial import probe_paths

    probe = ray.remote(num_cpus=0)(probe_paths)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths)
            for n in ray.nodes() if n.get("Alive")]
    for host, missing in ray.get(refs, timeout=120):
        if missing:
            what = "--data path" if missing[0] != paths[-1] else "study folder"
            raise UserError(f"the {what} {missing[0]} does not exist on Ray node {host}: Ray workers read "
                            "files where they are; put it on a shared filesystem mounted at the same path on "
                            "every node (or use a dataset that its plugin fetches itself)")


class RayBackend:
    """Ray Tune trials on a local Ray or a cluster (``--backend ray [--address ADDR]``)."""

    name = "ray"

    def check(self, spec: StudySpec) -> None:
        parse_gpus(spec.gpus, cuda_count())

    def warm_up(self, modules: list[str]) -> None:
        return None  # Ray starts its own worker processes

    def run(self, job: Job, spec: StudySpec, stop: StopSignals,
            on_progress: Callable[[Snapshot], None] | None, poll_s: float) -> Outcome:
        """Run the study's remaining trials as Ray Tune trials."""
        import optuna

        from automl.study.store import make_storage

        _quiet_ray()
        quiet_optuna()
        study = optuna.load_study(study_name=job.study_name, storage=make_storage(job.url))
        study_dir = Path(job.study_dir)
        started = time.time()
        left = spec.trials - snapshot(study, spec.trials, started).finished
        max_failures = spec.failure_limit
        (study_dir / "ray").mkdir(parents=True, exist_ok=True)
        stop_file = study_dir / "ray" / "stop"
        stop_file.unlink(missing_ok=True)
        owned, temp, standin = start_ray(spec, study_dir)
        reason, errors = "finished", []
        try:
            if spec.address:
                check_paths([p for p in (spec.data_path, str(study_dir)) if p])
            tuner, searcher = _tuner(job, spec, left, max_failures, str(stop_file))
            LOST_LINE.numbers = lambda trial_id: getattr(searcher._ot_trials.get(trial_id), "number", None)
            reason, errors = _fit(tuner, study, spec.trials, started, on_progress, poll_s, stop_file, stop)
        finally:
            LOST_LINE.numbers = lambda trial_id: None
            _reconcile(study, started, interrupted=reason in ("interrupted", "terminated"))
            stop_file.unlink(missing_ok=True)
            stop_ray(owned, temp, standin, study_dir)
        snap = snapshot(study, spec.trials, started)
        if reason == "finished" and snap.finished < spec.trials:
            if errors:
                reason = "worker-error"
            elif searcher.failed >= max_failures:
                reason = "failures"
            elif job.deadline is not None:
                reason = "timeout"
        return Outcome(reason, snap, errors)


def _tuner(job: Job, spec: StudySpec, left: int, max_failures: int, stop_file: str) -> tuple[Any, Any]:
    from ray import tune

    from automl.backends.ray_trial import AutomlSearch, DefineByRun, StopFile, plain_storage, trainable

    study_dir = Path(job.study_dir)
    workers = max(1, min(spec.workers, left))
    res = resources(spec, workers)
    mode = "max" if spec.direction == "maximize" else "min"
    runner = job.factory(job, "cpu")  # samples configs in this (driver) process; its data is cached here
    storage = plain_storage(job.url)
    existing = storage.get_n_trials(storage.get_study_id_from_name(job.study_name))
    searcher = AutomlSearch(DefineByRun(runner), mode=mode, sampler=runner.sampler(0, existing, job.salt),
                            study_name=job.study_name,
                            storage=storage, target=left, max_failures=max_failures,
                            deadline=job.deadline, stop_file=stop_file)
    fn = tune.with_resources(tune.with_parameters(trainable, job=job, threads=max(1, int(res["cpu"]))), res)
    max_t = (spec.fixed_epochs() or 1000) + 1
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler(spec.pruner, mode, max_t),
                                    num_samples=-1, max_concurrent_trials=workers, reuse_actors=True),
        run_config=tune.RunConfig(name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(study_dir / "ray"),
                                  verbose=0, stop=StopFile(stop_file),
                                  failure_config=tune.FailureConfig(max_failures=LOST_RETRIES),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    return tuner, searcher


def _fit(tuner: Any, study: Any, target: int, started: float, on_progress: Callable | None, poll_s: float,
         stop_file: Path, stop: StopSignals, grace_s: float = 60.0) -> tuple[str, list[str]]:
    """Run ``tuner.fit`` in a thread; poll progress here; Ctrl-C / SIGTERM stop it cleanly."""
    box: dict[str, Any] = {}

    def target_fn() -> None:
        try:
            box["grid"] = tuner.fit()
        except BaseException as exc:  # noqa: BLE001 - reported as the outcome's error
            box["error"] = f"Ray Tune stopped: {error_reason(exc)}"

    thread = threading.Thread(target=target_fn, name="automl-ray-tune", daemon=True)
    reason = "finished"
    thread.start()
    poll(thread.is_alive, lambda s: thread.join(timeout=s), study, target, started, on_progress, poll_s, stop)
    if stop.reason:
        reason = stop.reason
        stop_file.touch()
        poll(thread.is_alive, lambda s: thread.join(timeout=s), study, target, started, on_progress, poll_s, stop,
             until=time.time() + grace_s)
    return reason, [box["error"]] if "error" in box else []


def _reconcile(study: Any, started: float, interrupted: bool) -> None:
    """Ray trials of this run still RUNNING (stopped, or lost with Tune) become FAIL: marked
    interrupted after Ctrl-C so that ``automl resume`` reruns them."""
    import datetime

    since = datetime.datetime.fromtimestamp(started)
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ours = (t.user_attrs.get("worker") or {}).get("backend") == "ray"
        if not ours or (t.datetime_start and t.datetime_start < since):
            continue
        try:
            if interrupted:
                storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            if not t.user_attrs.get("error"):
                storage.set_trial_user_attr(t._trial_id, "error", "interrupted" if interrupted else
                                            "the Ray trial ended without a result")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except Exception:  # noqa: BLE001 - a trial finished meanwhile
            continue
