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

    from automl._trainer import build_model, fit, suggest_training
    from automl._worker import setup_process

    if "setup" not in _RAW_CACHE:
        _RAW_CACHE["setup"] = setup_process(config["spec"], [])
    registry, spec, resolved, bundle, metric = _RAW_CACHE["setup"]
    torch.set_num_threads(1)
    fixed = optuna.trial.FixedTrial({k: v for k, v in config.items() if k != "spec"})
    spaces = {s.name: s for s in resolved.spaces}
    space = next(iter(spaces.values()))
    train = (space.train or suggest_training)(fixed, bundle.info)
    train["epochs"] = 1
    model = build_model(space, space.define(fixed, bundle.info), bundle.info)

    def report(epoch: int, value: float, loss: float) -> None:
        tune.report({"value": float(value), "epoch": epoch})

    result = fit(model, bundle, train, metric, torch.device("cpu"), report=report, seed=0)
    tune.report({"value": float(result.best_value), "done": True})


class _RawDefine:
    """The raw side's define-by-run space (a class: Tune pickles its searcher's state)."""

    def __init__(self, spaces: list[Any], info: Any, spec_json: dict[str, Any]) -> None:
        self.spaces, self.info, self.spec_json = {s.name: s for s in spaces}, info, spec_json

    def __call__(self, trial: Any) -> dict[str, Any]:
        from automl.backends._ray_trial import sample_config

        sample_config(self.spaces, self.info, trial)
        return {"spec": self.spec_json}


def _raw(trials: int, workers: int, spec_json: dict[str, Any], resolved: Any, info: Any, folder: Path) -> float:
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    search = OptunaSearch(space=_RawDefine(resolved.spaces, info, spec_json), metric="value", mode="max", sampler=optuna.samplers.RandomSampler(seed=0))
    tuner = tune.Tuner(
        tune.with_resources(_raw_trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=workers,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name="raw", storage_path=str(folder / "raw"), verbose=0))
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def _automl(trials: int, workers: int, name: str) -> tuple[float, int]:
    from automl import _engine

    req = _engine.SearchRequest(plugin="vision", spaces=["mlp"], sampler="random", pruner="none", seed=0,
                                trials=trials, workers=workers, study=name, max_epochs=1, backend="ray",
                                cpus_per_trial=1)
    session = _engine.plan_search(req)
    _engine.create_study(session)
    start = time.perf_counter()
    outcome = _engine.run(session)
    return time.perf_counter() - start, outcome.snapshot.finished


def run(quick: bool = False) -> dict[str, Any]:
    """Measure both sides in one Ray instance; returns seconds per trial and their ratio."""
    import ray
    from ray import cloudpickle

    from automl import _engine
    from automl._worker import quiet_optuna
    from automl.backends._ray import _quiet_ray

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
        probe = _engine.plan_search(_engine.SearchRequest(plugin="vision", spaces=["mlp"], max_epochs=1,
                                                          sampler="random", seed=0))
        spec_json, resolved, info = probe.spec.to_json(), probe.resolved, probe.bundle.info
        _raw(workers, workers, spec_json, resolved, info, folder)  # warm-up: start the workers
        _automl(workers, workers, "warmup")
        raw_s = _raw(trials, workers, spec_json, resolved, info, folder)
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
