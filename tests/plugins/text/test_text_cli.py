"""The text plugin through the CLI: a real search on a generated CSV, and one-line errors."""

from __future__ import annotations

import optuna
from test_text_tokens import write_reviews


def baselines(studies, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name / 'study.db'}")
    return study.user_attrs["automl:baselines"]


def test_search_on_a_generated_csv(cli, studies, tmp_path):
    path = write_reviews(tmp_path / "reviews.csv", n=160, blanks=3)
    r = cli("search", "--plugin", "text", "--dataset", "csv", "--data", path, "--trials", "3",
            "--max-epochs", "2", "--study", "reviews")
    assert r.code == 0, r.err
    assert "skipped rows (missing text or label): 3" in r.out and "BASELINE" in r.out
    assert set(baselines(studies, "reviews")["unigram_logreg"]) >= {"val", "test"}
    rows = cli("leaderboard", "reviews", "--format", "json").json()
    assert len(rows) == 3 and all(row["state"] in ("COMPLETE", "PRUNED") for row in rows)


def test_user_errors_are_one_line_exit_2(cli, tmp_path):
    path = write_reviews(tmp_path / "reviews.csv", n=40, text_col="review")
    cases = [
        (["--data", path], "no column 'text'; the file has columns: review, label"),
        (["--data", path, "--option", "text_column=review", "--option", "colour=red"], "unknown option 'colour'"),
        (["--data", tmp_path / "nope.csv"], "nope.csv"),
    ]
    for extra, message in cases:
        r = cli("search", "--plugin", "text", "--dataset", "csv", *extra, "--trials", "1")
        assert r.code == 2, r.err
        assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
