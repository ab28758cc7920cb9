"""pytest fixtures for plugin authors, loaded through the ``pytest11`` entry point of automl

- ``automl_check(name, **kwargs)``: run the conformance kit on an installed plugin and fail
  the test with every failed check named (see :func:`automl.testing.assert_conforms`).
- ``automl_studies``: a fresh, empty study store for the test (``AUTOML_STUDIES``).
- ``automl_cli(*args)``: run ``automl ARGS`` in the test's process against that store and
  return ``result.code``, ``result.out`` and ``result.err``; searches still start real worker
  processes.

This module imports nothing from automl at import time: pytest loads it in every session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class CliResult:
    """What ``automl_cli`` returns: the exit code and the captured output."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The standard output parsed as JSON (for ``--format json`` commands)."""
        import json

        return json.loads(self.out)


@pytest.fixture
def automl_check() -> Callable[..., Any]:
    """``automl_check("acme")`` asserts that the plugin passes the conformance kit."""
    from automl.testing import assert_conforms

    return assert_conforms


@pytest.fixture
def automl_studies(tmp_path, monkeypatch):
    """An empty study store under the test's temporary folder (inherited by workers)."""
    root = tmp_path / "automl-studies"
    monkeypatch.setenv("AUTOML_STUDIES", str(root))
    return root


@pytest.fixture
def automl_cli(automl_studies, capsys, monkeypatch) -> Callable[..., CliResult]:
    """Run the ``automl`` command line in-process: ``automl_cli("search", "--plugin", "acme")``.

    The output is what a pipe gets (tables as wide as they need, one line per row), whatever
    runs the tests: ``COLUMNS`` and ``LINES`` are unset for the test (pytest-xdist's workers
    set ``COLUMNS=80``); a test that wants a width sets ``COLUMNS`` itself."""
    from automl.cli import main

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)

    def run(*args: Any) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
