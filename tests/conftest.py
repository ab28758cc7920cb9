"""Shared fixtures: an isolated study store, and the CLI run in-process or as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

#: ``AUTOML_REPEAT_CRASH=20 pytest`` runs the whole suite in its usual order with every test of
#: tests/test_crash.py (kills, signals, concurrent workers) run 20 times in its place, to show
#: that they do not depend on what ran before them.
REPEAT = int(os.environ.get("AUTOML_REPEAT_CRASH", "0") or 0)


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
