"""automl's storage on a real PostgreSQL server (tests/postgres.py; skipped without one).

The ``postgres_url`` fixture starts one throw-away server per session; ``postgres_db`` gives
each test its own database on it.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import optuna
import pytest
from postgres import create_database, postgres_server

from automl.study.store import FINISHED, make_storage, quiet_optuna, validate_storage_url

WORKERS, TRIALS_EACH = 3, 10


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def test_optuna_study_on_the_server(postgres_db):
    """Plain Optuna creates, writes and reloads a study by URL; the server is PostgreSQL on loopback."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_db)
    try:
        with engine.connect() as con:
            version = con.execute(text("SELECT version()")).scalar()
            listen = con.execute(text("SHOW listen_addresses")).scalar()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL") and listen == "127.0.0.1"
    quiet_optuna()
    study = optuna.create_study(study_name="plain", storage=postgres_db, sampler=optuna.samplers.RandomSampler(0))
    study.optimize(_objective, n_trials=5)
    loaded = optuna.load_study(study_name="plain", storage=postgres_db)
    trials = loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert loaded.best_value == pytest.approx(min(t.value for t in study.trials))


def _worker(url: str, n_trials: int) -> tuple[int, int, str | None]:
    """One worker process: automl's storage, ``n_trials`` ask/tell trials; (done, errors, first error)."""
    quiet_optuna()
    study = optuna.load_study(study_name="parallel", storage=make_storage(url),
                              sampler=optuna.samplers.RandomSampler())
    done, errors, first = 0, 0, None
    for _ in range(n_trials):
        try:
            trial = study.ask()
            trial.set_user_attr("pid", mp.current_process().pid)
            study.tell(trial, _objective(trial))
            done += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported, not raised
            errors += 1
            first = first or f"{type(exc).__name__}: {exc}"
    return done, errors, first


def test_make_storage_with_parallel_workers(postgres_db):
    """automl's storage factory makes the schema; three spawned processes write one study at
    once, and every one of their trials lands, with distinct numbers and no error."""
    assert validate_storage_url(postgres_db) == postgres_db
    quiet_optuna()
    storage = make_storage(postgres_db, create=True)
    optuna.create_study(study_name="parallel", storage=storage)
    with mp.get_context("spawn").Pool(WORKERS) as pool:
        results = pool.starmap(_worker, [(postgres_db, TRIALS_EACH)] * WORKERS, chunksize=1)
    assert [(done, errors) for done, errors, _ in results] == [(TRIALS_EACH, 0)] * WORKERS, results
    trials = optuna.load_study(study_name="parallel", storage=make_storage(postgres_db)).get_trials(states=FINISHED)
    assert len(trials) == WORKERS * TRIALS_EACH
    assert sorted(t.number for t in trials) == list(range(WORKERS * TRIALS_EACH))
    assert len({t.user_attrs["pid"] for t in trials}) == WORKERS
    storage.engine.dispose()


def test_extra_database_is_separate(postgres_url):
    """create_database gives a second, empty database on the same server."""
    quiet_optuna()
    one = create_database(postgres_url, "extra_one")
    two = create_database(postgres_url, "extra_two")
    optuna.create_study(study_name="only-in-one", storage=one)
    assert [s.study_name for s in optuna.get_all_study_summaries(one)] == ["only-in-one"]
    assert optuna.get_all_study_summaries(two) == []


def test_server_is_stopped_and_deleted_on_error(postgres_url):
    """Leaving postgres_server by an exception still stops the server and deletes its folder."""
    import psycopg
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    with pytest.raises(RuntimeError, match="boom"):
        with postgres_server(durable=False) as url:
            engine = create_engine(url)
            with engine.connect() as con:
                data = Path(con.execute(text("SHOW data_directory")).scalar())
            engine.dispose()
            assert data.is_dir() and url != postgres_url
            raise RuntimeError("boom")
    assert not data.parent.exists()
    u = make_url(url)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, connect_timeout=2)
