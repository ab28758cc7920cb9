"""The tabular plugin through the CLI: regression with a minimised metric and baselines, a
generated CSV with categorical columns and missing values, and one-line errors."""

from __future__ import annotations

import optuna
from test_tabular_prep import write_table


def baselines(studies, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name / 'study.db'}")
    return study.user_attrs["automl:baselines"]


def test_diabetes_rmse_sorts_ascending_with_baselines(cli, studies):
    r = cli("search", "--plugin", "tabular", "--dataset", "diabetes", "--metric", "rmse", "--trials", "2",
            "--max-epochs", "2", "--study", "diab")
    assert r.code == 0, r.err
    assert "lower is better" in r.out and "BASELINE" in r.out
    base = baselines(studies, "diab")
    assert set(base) == {"gradient_boosting", "linear"} and 30 < base["gradient_boosting"]["test"] < 90
    rows = [row for row in cli("leaderboard", "diab", "--format", "json").json() if row["state"] == "COMPLETE"]
    values = [row["value"] for row in sorted(rows, key=lambda row: row["rank"])]
    assert values == sorted(values) and len(values) >= 2
    assert "BASELINE" in cli("leaderboard", "diab").out


def test_csv_with_categoricals_and_missing_values(cli, tmp_path):
    path = write_table(tmp_path / "t.csv", n=150)
    r = cli("search", "--plugin", "tabular", "--dataset", "csv", "--data", path, "--option", "target=y",
            "--trials", "2", "--max-epochs", "2", "--study", "tcsv")
    assert r.code == 0, r.err
    assert "categorical columns: 1" in r.out and "accuracy" in r.out


def test_user_errors_are_one_line_exit_2(cli, tmp_path):
    path = write_table(tmp_path / "t.csv")
    cases = [
        ([], "needs --option target=COLUMN; the file has columns: x1, x2, color, y"),
        (["--option", "target=price"], "target column 'price' is not in the file; it has columns: x1, x2, color, y"),
        (["--option", "target=y", "--option", "depth=3"], "unknown option 'depth'"),
        (["--option", "target=y", "--option", "task=ranking"], "option 'task' must be one of"),
    ]
    for extra, message in cases:
        r = cli("search", "--plugin", "tabular", "--dataset", "csv", "--data", path, *extra, "--trials", "1")
        assert r.code == 2, r.err
        assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
