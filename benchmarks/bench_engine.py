"""Engine overhead per trial: automl's per-trial machinery against raw ``study.optimize``.

Both sides run the same trivial objective (two parameters, a quadratic: the sampler and the
storage are all the work there is) with the same sampler (automl's default TPE, built by
``automl.search.objective.make_sampler("tpe", 0)``) and the same trial count, on the same kind of storage:

- ``sqlite``: the default store, ``automl._store.make_storage`` (SQLite in WAL mode, busy
  timeout, heartbeats every 5 s with the stale-trial re-queue callback). Raw Optuna gets a
  storage made by the same function, so its ``optimize`` also checks for stale trials and
  beats the heartbeat, as Optuna does for any heartbeat storage.
- ``memory``: ``optuna.storages.InMemoryStorage`` on both sides. An in-memory study cannot
  outlive its process, so it has no heartbeat and automl's loop starts no heartbeat thread
  for it, and ``Slots`` takes a thread lock instead of the file lock.

automl's side is exactly a local worker's loop (``automl.backends.local``): ``Slots.claim`` (file
lock, stale-trial check, counts against the study's target read from its spec) then
``run_trial`` (the worker's heartbeat thread, objective, ``tell``). Worker start-up (a process, plugins and
data loaded once) is not per trial and is not counted here; the scaling section includes it.

A second row, ``objective``, adds what automl's ``Objective`` does around training (the
``config`` and ``run`` user attrs, the plugin hooks, saving the weights): both sides
then train the same tiny model for one epoch with automl's ``fit``.

Growth, and the 2000-trial in-memory figure: the in-memory studies run in lock-step (a raw trial,
then an automl trial, so a change
of load hits both alike); their per-trial times (median of a window of 21 trials) at trial 100
and at the last trial, for both sides. automl must grow as the sampler does, adding nothing
that grows with the study: the figure is automl / raw per-trial time at the last trial
(<= 1.10); the growth factors and the milliseconds automl adds at both ends are beside it.
The same lock-step run gives the total-time ratio over all 2000 trials.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from automl.study.store import SPEC_KEY
from benchmarks._common import load_avg, ratio


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("y", 0, 10)
    return (x - 2) ** 2 + y


def _spec(trials: int) -> dict[str, Any]:
    """A real study spec (the vision plugin's default search) with ``trials`` as its target, so
    that automl reads a spec of realistic size for every claim."""
    from automl.study.spec import StudySpec

    return StudySpec(plugin="vision", dataset="digits", spaces=["cnn"], metric="accuracy", trials=trials,
                     data_fingerprint="0" * 16, space_hash="0" * 16, plugin_version="0.1.0").to_json()


def _storage(kind: str, folder: Path, name: str):
    from automl.study.store import make_storage

    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    return make_storage(f"sqlite:///{folder / (name + '.db')}", create=True)


def _sampler() -> optuna.samplers.BaseSampler:
    from automl.search.objective import make_sampler

    return make_sampler("tpe", 0)


def run_raw(kind: str, trials: int, folder: Path, name: str, objective: Callable = _objective) -> list[float]:
    """Raw ``study.optimize``; returns the wall time of every trial (seconds)."""
    storage = _storage(kind, folder, name)
    study = optuna.create_study(study_name=name, storage=storage, sampler=_sampler(), direction="minimize")
    stamps = [time.perf_counter()]
    study.optimize(objective, n_trials=trials, callbacks=[lambda s, t: stamps.append(time.perf_counter())])
    return [b - a for a, b in zip(stamps, stamps[1:])]


def run_automl(kind: str, trials: int, folder: Path, name: str, objective: Callable = _objective) -> list[float]:
    """automl's worker loop (``Slots.claim`` + ``run_trial``); the wall time of every trial."""
    from automl.backends.local import run_trial
    from automl.study.recovery import Heartbeat, Slots

    storage = _storage(kind, folder, name)
    study = optuna.create_study(study_name=name, storage=storage, sampler=_sampler(), direction="minimize")
    study.set_user_attr(SPEC_KEY, _spec(trials))
    slots, heartbeat = Slots(study, storage, folder / f"{name}.lock"), Heartbeat(storage)
    stamps = [time.perf_counter()]
    while (trial := slots.claim()) is not None:
        run_trial(study, objective, trial, heartbeat)
        stamps.append(time.perf_counter())
    heartbeat.close()
    if len(stamps) - 1 != trials:
        raise RuntimeError(f"automl ran {len(stamps) - 1} trials, not {trials}")
    return [b - a for a, b in zip(stamps, stamps[1:])]


def _window(times: list[float], at: int, half: int = 10) -> float:
    lo, hi = max(0, at - half), min(len(times), at + half + 1)
    return statistics.median(times[lo:hi])


def _compare(raw_fn: Callable[[], list[float]], automl_fn: Callable[[], list[float]], repeats: int,
             trials: int) -> dict[str, Any]:
    """Round-robin runs of both sides. The figure is the ratio of total times (median over the
    repeats); the ratio of median per-trial times, robust to load spikes, is given beside it."""
    raw_runs, auto_runs = [], []
    for _ in range(repeats):
        raw_runs.append(raw_fn())
        auto_runs.append(automl_fn())
    raw = statistics.median(sum(r) for r in raw_runs)
    auto = statistics.median(sum(r) for r in auto_runs)
    med_raw = statistics.median(t for r in raw_runs for t in r)
    med_auto = statistics.median(t for r in auto_runs for t in r)
    early, last = max(10, trials // 10), trials - 11
    growth = {side: round(_window(runs[0], last) / _window(runs[0], early), 3)
              for side, runs in (("raw", raw_runs), ("automl", auto_runs))} if trials > 40 else None
    return {"growth_trials": [early, last + 1] if growth else None, "growth": growth, "trials": trials,
            "repeats": repeats, "raw_ms_per_trial": round(1000 * raw / trials, 3),
            "automl_ms_per_trial": round(1000 * auto / trials, 3), "ratio": ratio(auto, raw),
            "median_trial_ratio": ratio(med_auto, med_raw), "goal": "<= 1.10", "met": auto / raw <= 1.10,
            "load_avg_1m": load_avg()}


def _overhead(kind: str, trials: int, repeats: int, folder: Path) -> dict[str, Any]:
    counter = iter(range(10**6))
    run_raw(kind, 5, folder, "warm-raw")  # imports, engines and caches: not per trial
    run_automl(kind, 5, folder, "warm-automl")
    return {"storage": kind, **_compare(lambda: run_raw(kind, trials, folder, f"raw{next(counter)}"),
                                        lambda: run_automl(kind, trials, folder, f"automl{next(counter)}"),
                                        repeats, trials)}


def _lockstep(trials: int, folder: Path) -> tuple[list[float], list[float]]:
    """Both in-memory studies side by side, one raw trial (``optimize(n_trials=1)``) then one
    automl trial, so that trial k of both sides meets the same machine load."""
    from automl.backends.local import run_trial
    from automl.study.recovery import Heartbeat, Slots

    raw_study = optuna.create_study(study_name="lock-raw", storage=optuna.storages.InMemoryStorage(),
                                    sampler=_sampler(),
                                    direction="minimize")
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="lock-automl", storage=storage, sampler=_sampler(), direction="minimize")
    study.set_user_attr(SPEC_KEY, _spec(trials))
    slots, heartbeat = Slots(study, storage, folder / "lock.lock"), Heartbeat(storage)
    raw, auto = [], []
    for _ in range(trials):
        t0 = time.perf_counter()
        raw_study.optimize(_objective, n_trials=1)
        t1 = time.perf_counter()
        run_trial(study, _objective, slots.claim(), heartbeat)
        auto.append(time.perf_counter() - t1)
        raw.append(t1 - t0)
    return raw, auto


def _growth(trials: int, folder: Path) -> dict[str, Any]:
    raw, auto = _lockstep(trials, folder)
    early = min(100, trials // 2)
    last = trials - 11
    g_raw = _window(raw, last) / _window(raw, early)
    g_auto = _window(auto, last) / _window(auto, early)
    at_end = _window(auto, last) / _window(raw, last)
    total = sum(auto) / sum(raw)
    return {"storage": "memory", "trials": trials, "at": [early, trials],
            "total": {"raw_ms_per_trial": round(1000 * sum(raw) / trials, 3),
                      "automl_ms_per_trial": round(1000 * sum(auto) / trials, 3),
                      "ratio": round(total, 3), "goal": "<= 1.10", "met": total <= 1.10},
            "raw_ms": [round(1000 * _window(raw, early), 3), round(1000 * _window(raw, last), 3)],
            "automl_ms": [round(1000 * _window(auto, early), 3), round(1000 * _window(auto, last), 3)],
            "added_ms": [round(1000 * (_window(auto, early) - _window(raw, early)), 3),
                         round(1000 * (_window(auto, last) - _window(raw, last)), 3)],
            "raw_growth": round(g_raw, 3), "automl_growth": round(g_auto, 3),
            "ratio": round(at_end, 3), "goal": "automl / raw per-trial time at the last trial <= 1.10 "
            "(nothing added that grows with the study)", "met": at_end <= 1.10, "load_avg_1m": load_avg()}


def _objective_row(trials: int, repeats: int, folder: Path) -> dict[str, Any]:
    """automl's full ``Objective`` (attrs, hooks, weights) vs raw Optuna doing the same sample,
    build and one-epoch ``fit`` of the vision ``mlp`` on 64 digits rows."""
    import torch

    from automl.search.objective import Objective
    from automl.training import build_model, fit
    from automl.types import DataBundle, Split
    from benchmarks._common import plan

    session = plan(plugin="vision", spaces=["mlp"], max_epochs=1)
    b = session.bundle

    def cut(s: Split) -> Split:
        return Split(s.inputs[:64], s.targets[:64])

    bundle = DataBundle(cut(b.train), cut(b.val), cut(b.test), b.info, b.state, b.summary)
    space = session.resolved.spaces[0]
    device = torch.device("cpu")

    def raw_objective(trial: optuna.Trial) -> float:
        train = space.train(trial, bundle.info)
        train["epochs"] = 1
        model = build_model(space, space.define(trial, bundle.info), bundle.info)
        return fit(model, bundle, train, session.metric, device, step=space.step, seed=trial.number).best_value

    counter = iter(range(10**6))

    def automl_side() -> list[float]:
        name = f"obj{next(counter)}"
        objective = Objective(registry=session.registry, spec=session.spec, spaces=[space], metric=session.metric,
                              bundle=bundle, study_name=name, study_dir=folder / name, device=device)
        return run_automl("sqlite", trials, folder, name, objective)

    def raw_side() -> list[float]:
        return run_raw("sqlite", trials, folder, f"objraw{next(counter)}", raw_objective)

    return {"storage": "sqlite", "objective": "vision mlp, 1 epoch on 64 rows",
            **_compare(raw_side, automl_side, repeats, trials)}


def run(quick: bool = False) -> dict[str, Any]:
    """Overhead on SQLite and in memory, the full-objective row, and per-trial growth."""
    import torch

    from automl.study.store import quiet_optuna

    quiet_optuna()
    torch.set_num_threads(1)  # one thread, as each of two workers gets on two cores
    n_sqlite, n_memory, repeats = (20, 60, 1) if quick else (200, 2000, 3)
    # An in-memory trial costs ~2 ms: five repeats are cheap and steady the median.
    with tempfile.TemporaryDirectory(prefix="automl-bench-engine-") as tmp:
        folder = Path(tmp)
        rows = [_overhead("sqlite", n_sqlite, repeats, folder),
                _overhead("memory", 200 if not quick else 40, 5 if not quick else 1, folder)]
        objective = _objective_row(10 if quick else 40, repeats, folder)
        growth = _growth(n_memory, folder)
    return {"name": "engine overhead per trial", "rows": rows, "objective": objective, "growth": growth}
