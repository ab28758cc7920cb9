"""Smoke test of the benchmark runner on tiny sizes: it runs, writes its JSON, prints the table.

Only the cheap in-process section runs here (``--quick --only trainer``, in this process),
plus the table formatting and the runner's argument checking; the benchmarks themselves are outside
pytest's default run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))


def test_runner_quick_trainer(tmp_path, capsys):
    from benchmarks.__main__ import main

    out = tmp_path / "latest.json"
    assert main(["--quick", "--only", "trainer", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["machine"]["nproc"] >= 1
    rows = data["sections"]["trainer"]["rows"]
    assert [r["case"].split(" /")[0] for r in rows] == ["vision cnn", "tabular mlp"]
    for row in rows:
        sps = row["samples_per_s"]
        assert set(sps) == {"automl", "minimal", "dataloader"} and all(v > 0 for v in sps.values())
        assert row["vs_minimal"] == pytest.approx(sps["automl"] / sps["minimal"], rel=1e-2)
    assert "| trainer | vision cnn / digits: vs minimal loop |" in printed


def test_report_table_formats_every_section():
    from benchmarks.__main__ import SECTIONS
    from benchmarks._report import FORMATTERS, table

    assert set(FORMATTERS) == set(SECTIONS)
    text = table({"sections": {"engine": {"error": "RuntimeError: boom"},
                               "ray": {"skipped": "ray cannot be imported"},
                               "scaling": {"trials": 10, "max_epochs": 2, "speedup": 1.8, "workers_1_s": 9.0,
                                           "workers_2_s": 5.0, "cores": 2, "load_avg_1m": 1.0,
                                           "default_threads": {"speedup": 1.1, "workers_1_s": 6.0,
                                                               "workers_2_s": 5.5}}}})
    assert "| engine | failed | - | RuntimeError: boom |" in text
    assert "| ray | skipped |" in text
    assert "| scaling | --workers 2 vs 1, 1 thread each (10 cnn trials, 2 epochs) | 1.8x |" in text
    assert "| yes |" in text and "| scaling | --workers 2 vs 1, default threads (cores // workers) | 1.1x |" in text


def test_runner_rejects_unknown_section():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown section(s) nope" in proc.stderr


def test_quality_summary_judges_the_search_against_the_strong_baseline():
    from benchmarks._report import table
    from benchmarks.bench_quality import CASES, _summary

    def run(seed, best, ens, svc):
        return {"seed": seed, "metric": "accuracy", "direction": "maximize", "best": best, "ensemble": ens,
                "baselines": {"svc": svc, "linear": 0.9}, "members": 3, "trials": 20, "wall_s": 100.0}

    digits = CASES[0]
    row = _summary(digits, [run(0, 0.990, 0.994, 0.989), run(1, 0.992, 0.996, 0.990), run(2, 0.991, 0.995, 0.996)])
    assert row["final"]["mean"] == 0.995 and row["ensemble_at_least_best"] and row["meets_goal_mean"]
    assert row["beats_strong_final"] and not row["every_seed"]  # seed 2: 0.995 < svc 0.996
    reg = _summary({"plugin": "tabular", "dataset": "diabetes", "strong": "gradient_boosting"},
                   [dict(run(0, 55.0, 53.0, 0), direction="minimize", metric="rmse",
                         baselines={"gradient_boosting": 54.0})])
    assert reg["beats_strong_final"] and reg["ensemble_at_least_best"]
    text = table({"sections": {"quality": {"seeds": [0, 1, 2], "timeout_s": 120, "workers": 2, "load_avg_1m": 1.0,
                                           "rows": [row, reg]}}})
    assert "| quality | vision/digits: what the search hands back vs svc | 0.9950 (0.9940..0.9960) |" in text
    assert "above it on every seed | **no** |" in text
    # A run that refit its models also reports what the same models scored as trained (paired).
    refit = _summary(digits, [dict(run(0, 0.990, 0.994, 0.989), best_trial_model=0.985, ensemble_trial_models=0.992)])
    assert refit["before_refit"]["mean"] == 0.992
    assert "before refit 0.9920" in table({"sections": {"quality": {
        "seeds": [0], "timeout_s": 120, "workers": 2, "load_avg_1m": 1.0, "rows": [refit]}}})
