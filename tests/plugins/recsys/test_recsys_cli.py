"""recsys through the CLI: implicit ranking on a u.data file with the most-popular baseline row,
and one-line errors for bad files."""

from __future__ import annotations

import optuna
from test_recsys_data import write_udata


def test_implicit_udata_search_with_baseline(cli, studies, tmp_path):
    path = write_udata(tmp_path / "u.data", n_users=40, n_items=30, per_user=6)
    r = cli("search", "--plugin", "recsys", "--dataset", "ratings", "--data", path, "--option", "implicit=true",
            "--option", "split=leave_last_out", "--option", "k=5", "--space", "ncf", "--trials", "1",
            "--max-epochs", "2", "--study", "rs")
    assert r.code == 0, r.err
    assert "BASELINE" in r.out and "most_popular" in r.out and "ranked test users: 40" in r.out
    study = optuna.load_study(study_name="rs", storage=f"sqlite:///{studies / 'rs' / 'study.db'}")
    base = study.user_attrs["automl:baselines"]["most_popular"]
    assert 0.0 <= base["val"] <= 1.0 and 0.0 <= base["test"] <= 1.0
    assert study.user_attrs["automl:best"]["metric"] == "ndcg"


def test_bad_files_are_one_line_exit_2(cli, tmp_path):
    (tmp_path / "cols.tsv").write_text("1\t2\t3\t4\n5\t6\n")
    (tmp_path / "empty.tsv").write_text("")
    cases = [
        ("cols.tsv", [], "line 2 has 2 columns; expected 3 or 4"),
        ("empty.tsv", [], "the file is empty"),
        ("missing.tsv", [], "not found"),
        ("cols.tsv", ["--option", "split=daily"], "option 'split' must be one of"),
    ]
    for name, extra, message in cases:
        r = cli("search", "--plugin", "recsys", "--dataset", "ratings", "--data", tmp_path / name, *extra,
                "--trials", "1")
        assert r.code == 2, r.err
        assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
