"""The leaderboard as users read it: one line per trial, the model's parameters first, every
validation metric the plugin registers, in a terminal, through a pipe, as JSON and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from automl.output.render import fmt

TINY = str(Path(__file__).parent / "data" / "tinyplug.py")
#: What the vision plugin registers for a 10-class dataset (top5 applies from 10 classes).
VISION_METRICS = ["accuracy", "top5_accuracy", "macro_f1", "balanced_accuracy"]
TRIALS = 8  # the 20-trial study, made smaller to keep the suite fast


def _parse(out: str) -> tuple[list[str], list[dict[str, str]]]:
    """The piped table split on whitespace: its header and one dict per trial line."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:3] == ["rank", "trial", "state"])
    header = lines[at].split()
    rows = []
    for line in lines[at + 1:]:
        cells = line.split()
        if len(cells) < 3 or cells[2] not in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"):
            continue
        rows.append(dict(zip(header, cells)))
    return header, rows


def test_vision_leaderboard_piped_shows_model_and_every_metric(cli, studies, monkeypatch):
    r = cli("search", "--plugin", "vision", "--space", "mlp", "--trials", TRIALS, "--max-epochs", "1",
            "--sampler", "random", "--pruner", "none", "--ensemble", "0", "--study", "v")
    assert r.code == 0, r.err
    done = f"{TRIALS}/{TRIALS}"
    assert done in r.err and done not in r.out, "progress goes to stderr, not into the results"
    monkeypatch.delenv("COLUMNS", raising=False)
    rows = cli("leaderboard", "v", "--format", "json").json()
    assert len(rows) == TRIALS
    model_params = sorted({k for row in rows for k in row["params"] if k.startswith("mlp.")})
    assert model_params, rows[0]["params"]
    for row in rows:
        assert list(row["metrics"]) == VISION_METRICS, row["metrics"]
        assert row["metrics"]["accuracy"] == round(row["value"], 6)
        assert all(0.0 <= v <= 1.0 for v in row["metrics"].values())

    piped = cli("leaderboard", "v")  # captured output: not a terminal, no COLUMNS
    assert piped.code == 0, piped.err
    assert "\x1b[" not in piped.out, "no colour codes in piped output"
    header, lines = _parse(piped.out)
    assert len(lines) == TRIALS, piped.out
    assert header[3:7] == VISION_METRICS, header
    by_number = {int(line["trial"]): line for line in lines}
    varying = [k for k in model_params if len({str(row["params"].get(k)) for row in rows}) > 1]
    shown = [k.split(".", 1)[1] for k in varying]
    assert set(shown) <= set(header), (shown, header)
    first_training = min(header.index(k) for k in header if k in rows[0]["params"] and "." not in k)
    assert all(header.index(k) < first_training for k in shown), "the model's parameters come first"
    for row in rows:
        line = by_number[row["number"]]
        assert float(line["accuracy"]) == round(row["metrics"]["accuracy"], 4)
        assert float(line["macro_f1"]) == round(row["metrics"]["macro_f1"], 4)
        for key in varying:
            assert line[key.split(".", 1)[1]] == fmt(row["params"][key], 3)

    table = cli("leaderboard", "v", "--columns", "lr", "--metrics", "macro_f1")
    header, _ = _parse(table.out)
    assert header[:8] == ["rank", "trial", "state", "accuracy", "macro_f1", "test", "s", "lr"], header
    assert header[8:] in ([], ["note"]), header  # the note: the baselines' descriptions
    assert cli("leaderboard", "v", "--columns", "nope").code == 2
    assert "unknown metric" in cli("leaderboard", "v", "--metrics", "nope").err

    monkeypatch.setenv("COLUMNS", "120")
    narrow = cli("leaderboard", "v")
    _, lines = _parse(narrow.out)
    assert len(lines) == TRIALS and max(len(line) for line in narrow.out.splitlines()) <= 120

    data = list(csv.DictReader(io.StringIO(cli("leaderboard", "v", "--format", "csv").out)))
    assert len(data) == TRIALS
    for record in data:
        assert all(record[f"val_{m}"] for m in VISION_METRICS)
        assert all(k in record for k in model_params)


def test_failed_trials_show_their_reason_and_every_param_with_all(cli, studies):
    r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--dataset", "blobs", "--metric", "accuracy",
            "--space", "linear", "--space", "late", "--trials", "4", "--sampler", "random", "--max-failures", "20",
            "--study", "mixed")
    assert r.code == 0, r.err
    out = cli("leaderboard", "mixed", "--columns", "all").out
    header, lines = _parse(out)
    assert header[:4] == ["rank", "trial", "state", "accuracy"] and "space" in header and "note" in header
    assert header.index("space") < header.index("lr")
    failed = [line for line in lines if line["state"] == "FAIL"]
    assert all("boom" in line for line in out.splitlines() if " FAIL " in line)
    assert len(failed) == sum(row["state"] == "FAIL" for row in cli("leaderboard", "mixed", "--format", "json").json())
