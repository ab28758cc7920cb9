"""Shared fixtures: an isolated study store, and the CLI run in-process or as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def studies(tmp_path, monkeypatch) -> Path:
    """A fresh study store for the test; AUTOML_STUDIES points at it (inherited by workers)."""
    root = tmp_path / "studies"
    monkeypatch.setenv("AUTOML_STUDIES", str(root))
    return root


@pytest.fixture
def cli(studies, capsys):
    """Run ``automl ARGS`` in this process (workers are still real processes)."""
    from automl.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_proc(studies):
    """Run ``automl ARGS`` as a real subprocess (for signals, kills and entry points)."""

    def run(*args: str, timeout: float = 300, env: dict | None = None) -> Result:
        proc = subprocess.run([sys.executable, "-m", "automl", *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
