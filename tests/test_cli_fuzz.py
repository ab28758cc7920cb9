"""Hostile input across the CLI: every command and option gets random and nasty values.

Whatever arrives, the CLI answers with exit code 0 or 2, never a traceback, and a rejected
command writes nothing. Searches and resumes run with ``--dry-run`` so that valid plans are
checked (data loaded, names resolved) without spending minutes training.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.cli import main

NASTY = st.sampled_from([
    "", " ", "-", "--", "..", "../x", "../../etc/passwd", "/abs/path", "/tmp", "a b c", "with space/dir",
    "ünïcødé", "名前", "🙂", "\t", "x" * 300, "0", "-1", "-0", "1e309", "nan", "inf", "-inf", "999999999999999999999",
    "3.5", "redis://localhost", "sqlite://", "sqlite:///:memory:", "sqlite:////no/such/dir/x.db",
    "postgresql://u:p@[::1", "mysql://", "journal:///tmp/x", "file:///etc", "key=value", "=", "a=", "=b",
    "vision", "digits", "mlp", "cnn", "accuracy", "tpe", "median", "none", "auto", "0,1,3", "ray", "local",
    "json", "csv", "table", "csv;rm -rf", "$(whoami)", "%s%n", "\x00", "NUL",
])
VALUE = st.one_of(NASTY, st.text(max_size=20), st.integers(-10**15, 10**15).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(str))

SEARCH_OPTS = ["--plugin", "--dataset", "--space", "--metric", "--data", "--option", "--trials", "--timeout",
               "--workers", "--sampler", "--pruner", "--study", "--storage", "--seed", "--max-failures",
               "--max-epochs", "--backend", "--address", "--cpus-per-trial", "--gpus-per-trial", "--gpus",
               "--log", "--checkpoint-every", "--plugin-path"]


@st.composite
def command(draw):
    which = draw(st.sampled_from(["search", "resume", "leaderboard", "studies", "plugins", "worker", "junk"]))
    if which == "search":
        args = ["search"]
        if draw(st.booleans()):
            args += ["--plugin", draw(st.sampled_from(["vision", "nosuch", ""]))]
        for opt in draw(st.lists(st.sampled_from(SEARCH_OPTS), max_size=4)):
            args += [opt, draw(VALUE)]
        return args + ["--dry-run"]
    if which == "resume":
        return ["resume", draw(VALUE), "--dry-run"] + draw(st.sampled_from([[], ["--trials", draw(VALUE)],
                                                                           ["--workers", draw(VALUE)]]))
    if which == "leaderboard":
        return ["leaderboard", draw(VALUE)] + draw(st.sampled_from([[], ["--top", draw(VALUE)],
                                                                     ["--format", draw(VALUE)]]))
    if which in ("studies", "plugins"):
        return [which] + draw(st.sampled_from([[], ["--format", draw(VALUE)]]))
    if which == "worker":
        return ["worker", draw(VALUE), "--storage", draw(VALUE)]
    return [draw(VALUE), draw(VALUE)]


def _snapshot(root):
    if not os.path.exists(root):
        return set()
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files} | {root}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(args=command())
def test_cli_never_tracebacks_and_rejections_write_nothing(studies, capsys, tmp_path_factory, args):
    before = _snapshot(str(studies))
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.getbasetemp())
    try:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    assert code in (0, 2), (args, code, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out, (args, err[-2000:])
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (args, err)
        assert _snapshot(str(studies)) == before, args
