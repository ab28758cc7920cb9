"""Which storage holds under parallel workers? SQLite (rollback journal), SQLite in WAL mode
with a busy timeout (automl's default), and Optuna's JournalFileBackend.

N processes run trivial trials on one study at once, each with its own storage object, the
way automl's workers do. We count the errors that reach the worker (``database is locked``
and friends), the trials that landed, and the throughput. Run: ``python -m benchmarks.bench_storage``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import optuna


def _storage(kind: str, path: Path):
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path.with_suffix(".log"))))
    url = f"sqlite:///{path}"
    if kind == "sqlite-wal":
        with sqlite3.connect(path, timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    # Plain SQLite as Optuna users get it: default 5 s busy timeout, rollback journal.
    return optuna.storages.RDBStorage(url)


def _worker(kind: str, path: str, n_trials: int, out) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    errors, done = 0, 0
    try:
        study = optuna.load_study(study_name="bench", storage=_storage(kind, Path(path)),
                                  sampler=optuna.samplers.RandomSampler())
    except Exception as exc:  # noqa: BLE001 - counted: this is what a user would see
        out.put({"errors": n_trials, "done": 0, "first_error": str(exc)[:200]})
        return
    first = None
    for _ in range(n_trials):
        try:
            trial = study.ask()
            x = trial.suggest_float("x", -10, 10)
            trial.set_user_attr("note", "x" * 64)
            study.tell(trial, (x - 2) ** 2)
            done += 1
        except Exception as exc:  # noqa: BLE001
            errors += 1
            first = first or f"{type(exc).__name__}: {str(exc)[:160]}"
    out.put({"errors": errors, "done": done, "first_error": first})


def measure(kind: str, workers: int, trials_each: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        optuna.create_study(study_name="bench", storage=_storage(kind, path))
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(kind, str(path), trials_each, out)) for _ in range(workers)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        study = optuna.load_study(study_name="bench", storage=_storage(kind, path))
        landed = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    return {
        "storage": kind, "workers": workers, "trials_asked": workers * trials_each,
        "complete": landed, "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "trials_per_s": round(landed / elapsed, 1), "seconds": round(elapsed, 2),
    }


def run(quick: bool = False) -> dict:
    workers, each = (4, 25) if quick else (8, 75)
    rows = [measure(kind, workers, each) for kind in ("sqlite", "sqlite-wal", "journal")]
    return {"name": "storage under parallel workers", "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
