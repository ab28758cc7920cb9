"""Which storage holds under parallel workers? SQLite (rollback journal), SQLite in WAL mode
with a busy timeout (automl's default), Optuna's JournalFileBackend, and PostgreSQL.

N processes (8; 4 with ``--quick``) run trivial trials on one study at once, each with its own
storage object, the way automl's workers do. We count the errors that reach the worker
(``database is locked`` and friends), the trials that landed, and the throughput: the clock
starts once every process has started, imported Optuna and opened the study (a barrier), so
process start-up is not counted. All kinds run one after the other in the same run, so their
ratios to plain SQLite compare like with like; each row records the 1-minute load average
before and after it. Run: ``python -m benchmarks --only storage`` (or ``python -m
benchmarks.bench_storage``).

PostgreSQL is a throw-away local server (tests/postgres.py: ``initdb`` + ``pg_ctl`` in a temporary
folder, 127.0.0.1 only, PostgreSQL's durable defaults, fsync on) reached through psycopg 3 with
Optuna's plain ``RDBStorage``; without the server tools or the driver its row says why it was skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import optuna

KINDS = ("sqlite", "sqlite-wal", "journal", "postgresql")
#: The throw-away server of the test suite, shared rather than copied (tests/ is not a package).
POSTGRES_HELPER = Path(__file__).resolve().parents[1] / "tests" / "postgres.py"


def _postgres() -> ModuleType:
    """tests/postgres.py, loaded by path under a private name (no tests/ on sys.path)."""
    name = "_automl_tests_postgres"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, POSTGRES_HELPER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@contextlib.contextmanager
def _place(kind: str) -> Iterator[str]:
    """Where a run's study lives: a file path in a temporary folder, or a fresh PostgreSQL server's URL."""
    if kind == "postgresql":
        with _postgres().postgres_server() as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield str(Path(tmp) / "bench.db")


def _storage(kind: str, where: str):
    if kind == "postgresql":
        # As Optuna users get it: the URL and nothing else.
        return optuna.storages.RDBStorage(where)
    path = Path(where)
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


def _worker(kind: str, where: str, n_trials: int, out, ready) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    errors, done = 0, 0
    try:
        study = optuna.load_study(study_name="bench", storage=_storage(kind, where),
                                  sampler=optuna.samplers.RandomSampler())
    except Exception as exc:  # noqa: BLE001 - counted: this is what a user would see
        ready.wait(timeout=600)
        out.put({"errors": n_trials, "done": 0, "first_error": str(exc)[:200]})
        return
    ready.wait(timeout=600)  # all start together, once every process has imported and connected
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
    """One row: ``workers`` spawned processes each run ``trials_each`` trials on one study of ``kind``."""
    if kind == "postgresql":
        pg = _postgres()
        reason = pg.postgres_available() or pg.psycopg_available()
        if reason:
            return {"storage": kind, "workers": workers, "skipped": reason}
    extra: dict = {}
    with _place(kind) as where:
        first = _storage(kind, where)
        optuna.create_study(study_name="bench", storage=first)
        if kind == "postgresql":
            from sqlalchemy import text

            with first.engine.connect() as con:
                extra["server"] = "PostgreSQL " + con.execute(text("SHOW server_version")).scalar().split()[0]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        ready = ctx.Barrier(workers + 1)
        procs = [ctx.Process(target=_worker, args=(kind, where, trials_each, out, ready)) for _ in range(workers)]
        for p in procs:
            p.start()
        ready.wait(timeout=600)  # the clock starts when every worker has started and opened the study
        load = os.getloadavg()[0]
        start = time.perf_counter()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        last = _storage(kind, where)
        study = optuna.load_study(study_name="bench", storage=last)
        landed = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        for storage in (first, last):  # no session left open on a server about to stop
            if isinstance(storage, optuna.storages.RDBStorage):
                storage.engine.dispose()
    return {
        "storage": kind, "workers": workers, "trials_asked": workers * trials_each,
        "complete": landed, "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "trials_per_s": round(landed / elapsed, 1), "seconds": round(elapsed, 2),
        "load_avg_1m": [round(load, 2), round(os.getloadavg()[0], 2)], **extra,
    }


def run(quick: bool = False) -> dict:
    workers, each = (4, 25) if quick else (8, 75)
    rows = [measure(kind, workers, each) for kind in KINDS]
    return {"name": "storage under parallel workers", "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
