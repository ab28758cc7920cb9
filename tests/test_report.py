"""``automl report``: a self-contained HTML file, rendered in headless Chromium."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from _results_helper import image_folder, make_study

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium(profile: Path, *args: str, timeout: float = 120) -> tuple[str, str]:
    """Run headless Chromium to completion: ``(stdout, stderr)``.

    Chromium starts helper processes (zygotes, renderer, crashpad handlers) that may outlive
    the browser; with pipes, ``subprocess.run`` would wait for the last of them to close its
    copy, and a timeout would kill only the browser and leave its helpers running (one such
    run left a hung renderer that slowed the next). So it runs in its own session with its
    output in files, only the browser is waited for, and the whole session is killed after,
    whatever happened. A browser still running after ``timeout`` fails the test with its
    processes and the end of its stderr."""
    out, err = profile.parent / f"{profile.name}.out", profile.parent / f"{profile.name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], stdout=stdout,
                                stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            tree = subprocess.run(["ps", "-o", "pid,stat,etimes,time,args", "-s", str(proc.pid)],
                                  capture_output=True, text=True).stdout
            pytest.fail(f"chromium still running after {timeout} s:\n{tree}\n{err.read_text()[-3000:]}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return out.read_text(), err.read_text()


def test_report_of_a_10_trial_vision_search_renders_in_chromium(studies, cli, tmp_path):
    data = image_folder(tmp_path / "images")
    make_study("vis10", "vision", trials=10, dataset="imagefolder", data_path=str(data), spaces=["mlp"],
               options=["size=8"], max_epochs=3, pruner="asha", sampler="random")
    out = tmp_path / "report.html"
    r = cli("report", "vis10", "--out", out)
    assert r.code == 0, r.err
    text = out.read_text()
    size = out.stat().st_size
    assert size < 5_000_000, size
    # self-contained: nothing is fetched (no external script, stylesheet or image)
    assert not re.search(r'(src|href)="(https?:)?//', text)
    for section in ("Spec and provenance", "Leaderboard", "Optimization history", "over wall time",
                    "Parameter importances", "Parallel coordinates", "Learning curves", "Best trial",
                    "Confusion matrix", "data fingerprint"):
        assert section in text, section
    assert text.count('<img class="plot"') == 5
    assert text.count("<tr class=") >= 10  # every trial in the leaderboard

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the HTML checks above passed")
    profile = tmp_path / "chromium-profile"
    # --dump-dom prints the DOM once the page has loaded, after the load handler that writes
    # the status (no --virtual-time-budget: nothing on the page waits for time to pass).
    dom, log = chromium(profile, "--dump-dom", out.as_uri())
    status = re.search(r'<div id="report-status"([^>]*)>([^<]*)<', dom)
    assert status, log[-2000:]
    assert status.group(2).startswith("report-ok"), status.group(2)
    assert 'data-plots="5"' in status.group(1) and 'data-drawn="5"' in status.group(1)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium(profile, f"--screenshot={shot}", "--window-size=1200,4000", out.as_uri())
    assert shot.exists() and shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_errors(studies, cli, tmp_path):
    r = cli("report", "nope")
    assert r.code == 2 and "unknown study" in r.err
