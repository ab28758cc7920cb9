"""Start-up of the command line: how long a user waits for ``automl --help``, ``automl
leaderboard NAME`` and a 1-trial ``--max-epochs 1`` search with tinyplug-sized work.

Each command runs as a real process, median of 5 (3 with ``--quick``), interleaved with the
baselines measured in the same run: the bare interpreter (``python -c pass``) and ``python -c
"import torch"``, so the figures read as multiples of what Python and torch alone cost here.
The goals (issue "One architecture ... a CLI that starts at once") are absolute seconds on 2
cores: --help <= 0.5 s, leaderboard <= 1.5 s, the 1-trial search <= 6 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import load_avg

TINY = str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tinyplug.py")
GOALS = {"help": 0.5, "leaderboard": 1.5, "search_1_trial": 6.0}


def _time(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return took


def run(quick: bool = False) -> dict[str, Any]:
    repeats = 3 if quick else 5
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="automl-bench-cli-") as tmp:
        env = {**os.environ, "AUTOML_STUDIES": str(Path(tmp) / "studies")}
        automl = [py, "-m", "automl"]
        search = [*automl, "search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "1",
                  "--max-epochs", "1"]
        _time([*search, "--study", "board"], env)  # the study the leaderboard reads; warms the disk cache
        commands = {
            "python": [py, "-c", "pass"],
            "import_torch": [py, "-c", "import torch"],
            "help": [*automl, "--help"],
            "leaderboard": [*automl, "leaderboard", "board"],
        }
        times: dict[str, list[float]] = {name: [] for name in [*commands, "search_1_trial"]}
        for i in range(repeats):
            for name, args in commands.items():
                times[name].append(_time(args, env))
            times["search_1_trial"].append(_time([*search, "--study", f"s{i}"], env))
    med = {name: round(statistics.median(ts), 3) for name, ts in times.items()}
    rows = [{"command": name, "median_s": med[name], "runs_s": [round(t, 3) for t in times[name]],
             "vs_python": round(med[name] / med["python"], 2),
             "vs_import_torch": round(med[name] / med["import_torch"], 2),
             "goal_s": GOALS[name], "met": med[name] <= GOALS[name]} for name in GOALS]
    return {"name": "command-line start-up", "repeats": repeats, "python_s": med["python"],
            "import_torch_s": med["import_torch"], "rows": rows, "load_avg_1m": load_avg()}
