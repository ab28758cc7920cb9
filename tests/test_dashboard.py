"""``automl dashboard``: optuna-dashboard serves the study on localhost."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from _results_helper import make_study


def test_dashboard_serves_the_study(studies, tmp_path):
    """``--port 0`` serves on a port the server binds itself and prints its URL: nothing picks a
    port here and releases it for the server to take later, which another process could take
    in between."""
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install "
                                                   "'automl[dashboard]')")
    make_study("dash", "tabular", trials=1, dataset="iris", max_epochs=1)
    log = open(tmp_path / "dashboard.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "automl", "dashboard", "dash", "--port", "0"],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline, body, base = time.time() + 90, None, None
        while time.time() < deadline and proc.poll() is None and body is None:
            log.seek(0)
            found = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard/studies/\d+", log.read())
            if found and found.group(1) != "0":
                base = f"http://127.0.0.1:{found.group(1)}"
                try:
                    with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as resp:
                        body = json.loads(resp.read())
                except OSError:
                    pass
            time.sleep(0.3)
        log.seek(0)
        assert body is not None, f"the dashboard did not answer: {log.read()[-2000:]}"
        listed = body.get("studies", body.get("study_summaries"))  # the key's name varies by version
        assert [s["study_name"] for s in listed] == ["dash"]
        with urllib.request.urlopen(f"{base}/dashboard", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_dashboard_without_the_extra_says_how_to_install(studies, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as if not installed
    r = cli("dashboard", "nodash")
    assert r.code == 2
    assert "pip install 'automl[dashboard]'" in r.err


def test_dashboard_bad_port(studies, cli):
    r = cli("dashboard", "whatever", "--port", "70000")
    assert r.code == 2 and "--port" in r.err
