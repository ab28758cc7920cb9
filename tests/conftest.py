"""Shared fixtures: an isolated study store, and the CLI run in-process or as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# One OpenMP thread per process (torch, scikit-learn) unless the caller chose otherwise: the
# tests start many processes at once (workers, fork servers, Ray, PostgreSQL) on small CI
# machines, where threads of tiny models only contend (automl.backends.devices.threads_per_worker
# reads it too). Set before any test module imports torch; inherited by every subprocess.
if not os.environ.get("OMP_NUM_THREADS", "").strip():
    os.environ["OMP_NUM_THREADS"] = "1"

# Commands run by the tests print what a pipe gets, whatever runs the suite: pytest-xdist's
# workers set COLUMNS=80 and LINES=24, which would make tables fit 80 columns in the in-process
# CLI and in every subprocess. Tests that want a width set COLUMNS themselves.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

#: ``AUTOML_REPEAT_CRASH=20 pytest`` runs the whole suite in its usual order with every test of
#: tests/test_crash.py (kills, signals, concurrent workers) run 20 times in its place, to show
#: that they do not depend on what ran before them.
REPEAT = int(os.environ.get("AUTOML_REPEAT_CRASH", "0") or 0)


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``pytest -n 2``, the README's default through pyproject's addopts):
    the Ray tests run one after another in one worker (each starts a Ray instance or a
    two-node cluster that wants both cores), and so do the PostgreSQL tests (one server per
    worker process, started once for all of them); everything else is spread over the
    workers. ``--dist loadgroup`` reads these groups; without xdist they are ignored."""
    for item in items:
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif {"postgres_url", "postgres_db"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("postgres"))


def pytest_generate_tests(metafunc):
    if REPEAT > 1 and metafunc.module.__name__.rsplit(".", 1)[-1] == "test_crash":
        metafunc.fixturenames.append("repeat_index")
        metafunc.parametrize("repeat_index", range(REPEAT), ids=lambda i: f"repeat{i}")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def studies(automl_studies) -> Path:
    """A fresh study store for the test (the kit's ``automl_studies``; AUTOML_STUDIES points at
    it and is inherited by workers)."""
    return automl_studies


@pytest.fixture
def cli(automl_cli):
    """Run ``automl ARGS`` in this process (the kit's ``automl_cli``; workers are still real
    processes)."""
    return automl_cli


@pytest.fixture
def cli_proc(studies):
    """Run ``automl ARGS`` as a real subprocess (for signals, kills and entry points)."""

    def run(*args: str, timeout: float = 300, env: dict | None = None) -> Result:
        proc = subprocess.run([sys.executable, "-m", "automl", *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def postgres_url():
    """The URL (``postgresql+psycopg://...``) of a throw-away PostgreSQL server started once per
    test session by tests/postgres.py, stopped and deleted at its end. Skips the test, saying
    what to install, when the server tools or the psycopg driver are missing."""
    from postgres import postgres_available, postgres_server, psycopg_available

    reason = postgres_available() or psycopg_available()
    if reason:
        pytest.skip(reason)
    with postgres_server(durable=False) as url:
        yield url


@pytest.fixture
def postgres_db(postgres_url, request):
    """A fresh, empty database for this test on the session's PostgreSQL server: its URL."""
    import re
    import uuid

    from postgres import create_database, drop_database

    name = (re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]).strip("_")
    url = create_database(postgres_url, name)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory) -> Path:
    """tests/fixtures/fixture_dist installed as a real distribution (with its entry points)
    into a folder of its own, from a copy so that the build leaves no files in tests/."""
    import shutil

    root = tmp_path_factory.mktemp("fixture-dist")
    src = root / "src"
    shutil.copytree(Path(__file__).parent / "fixtures" / "fixture_dist", src)
    target = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("automl_fixture_plugin-1.2.3.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def installed(dist_dir, monkeypatch) -> Path:
    """The fixture distribution importable here and in worker processes."""
    monkeypatch.syspath_prepend(str(dist_dir))
    monkeypatch.setenv("PYTHONPATH", str(dist_dir))
    return dist_dir
