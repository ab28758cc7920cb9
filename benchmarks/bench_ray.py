"""Per-trial overhead of automl's Ray backend against raw Ray Tune, on the same objective.

Both sides run on one Ray instance started here, with the same Tune settings (concurrency,
resources, actor reuse, FIFO scheduling) and the same trivial objective: the vision plugin's
``mlp`` space on the digits data, one epoch, parameters drawn by a seeded random sampler
through Ray's ``OptunaSearch``. Raw Ray Tune keeps its Optuna study in memory and its
trainable only builds, trains and reports; automl adds what makes a trial durable (the SQLite
study, user attrs, weights under ``STUDY/trials/N``, the exact-target searcher). A warm-up
round first starts Ray's workers, so neither side pays for worker start-up.

Run: ``python benchmarks/bench_ray.py [--quick]``. The goal is ``ratio < 1.15``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_RAW_CACHE: dict[str, Any] = {}


def _raw_trainable(config: dict[str, Any]) -> None:
    """Raw Ray Tune: rebuild the config from the sampled params, train, report each epoch."""
    import optuna
    import torch
    from ray import tune

    from automl.backends.base import Job
    from automl.search.objective import make_runner
    from automl.training import build_model, fit

    if "setup" not in _RAW_CACHE:
        _RAW_CACHE["setup"] = make_runner(Job("raw", "/tmp", "", config["spec"], make_runner))
    runner = _RAW_CACHE["setup"]
    bundle, metric = runner.bundle, runner.metric
    torch.set_num_threads(1)
    fixed = optuna.trial.FixedTrial({k: v for k, v in config.items() if k != "spec"})
    cfg = runner.sample(fixed)
    space = runner.spaces[cfg["space"]]
    train = dict(cfg["train"], epochs=1)
    model = build_model(space, cfg["model"], bundle.info)

    def report(epoch: int, value: float, loss: float) -> None:
        tune.report({"value": float(value), "epoch": epoch})

    result = fit(model, bundle, train, metric, torch.device("cpu"), report=report, seed=0)
    tune.report({"value": float(result.best_value), "done": True})


class _RawDefine:
    """The raw side's define-by-run space (a class: Tune pickles its searcher's state)."""

    def __init__(self, runner: Any, spec_json: dict[str, Any]) -> None:
        self.runner, self.spec_json = runner, spec_json

    def __call__(self, trial: Any) -> dict[str, Any]:
        self.runner.sample(trial)
        return {"spec": self.spec_json}


def _raw(trials: int, workers: int, spec_json: dict[str, Any], runner: Any, folder: Path) -> float:
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    search = OptunaSearch(space=_RawDefine(runner, spec_json), metric="value", mode="max",
                          sampler=optuna.samplers.RandomSampler(seed=0))
    tuner = tune.Tuner(
        tune.with_resources(_raw_trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=workers,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name="raw", storage_path=str(folder / "raw"), verbose=0))
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def _automl(trials: int, workers: int, name: str) -> tuple[float, int]:
    from automl.search import session as search_session
    from benchmarks._common import plan

    req = dict(plugin="vision", spaces=["mlp"], sampler="random", pruner="none", seed=0,
                                trials=trials, workers=workers, study=name, max_epochs=1, backend="ray",
                                cpus_per_trial=1)
    session = plan(**req)
    search_session.create_study(session)
    start = time.perf_counter()
    outcome = search_session.run(session)
    return time.perf_counter() - start, outcome.snapshot.finished


def run(quick: bool = False) -> dict[str, Any]:
    """Measure both sides in one Ray instance; returns seconds per trial and their ratio."""
    import ray
    from ray import cloudpickle

    from automl.backends.ray import _quiet_ray
    from automl.study.store import quiet_optuna
    from benchmarks._common import plan

    if __name__ != "__main__":
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    trials, workers = (6, 2) if quick else (20, 2)
    folder = Path(tempfile.mkdtemp(prefix="automl-bench-ray-"))
    old = os.environ.get("AUTOML_STUDIES")
    os.environ["AUTOML_STUDIES"] = str(folder / "studies")
    _quiet_ray()
    quiet_optuna()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _temp_dir=tempfile.mkdtemp(prefix="abr-", dir="/tmp"))
    try:
        probe = plan(plugin="vision", spaces=["mlp"], max_epochs=1,
                     sampler="random", seed=0)
        from automl.backends.base import Job
        from automl.search.objective import make_runner

        spec_json = probe.spec.to_json()
        runner = make_runner(Job("probe", str(folder), "", spec_json, make_runner))
        _raw(workers, workers, spec_json, runner, folder)  # warm-up: start the workers
        _automl(workers, workers, "warmup")
        raw_s = _raw(trials, workers, spec_json, runner, folder)
        automl_s, finished = _automl(trials, workers, "bench")
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("AUTOML_STUDIES", None)
        else:
            os.environ["AUTOML_STUDIES"] = old
    return {"benchmark": "ray_overhead", "trials": trials, "workers": workers, "finished": finished,
            "raw_tune_s": round(raw_s, 2), "automl_ray_s": round(automl_s, 2),
            "raw_s_per_trial": round(raw_s / trials, 3), "automl_s_per_trial": round(automl_s / trials, 3),
            "ratio": round(automl_s / raw_s, 3), "goal": "< 1.15"}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
