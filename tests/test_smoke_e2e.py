import optuna


def test_vision_search_resume_leaderboard(cli, studies):
    r = cli("search", "--plugin", "vision", "--space", "mlp", "--trials", "3", "--max-epochs", "3",
            "--study", "s1")
    assert r.code == 0, r.err
    r = cli("resume", "s1", "--trials", "2")
    assert r.code == 0, r.err
    rows = cli("leaderboard", "s1", "--format", "json").json()
    assert len(rows) == 5
    study = optuna.load_study(study_name="s1", storage=f"sqlite:///{studies / 's1' / 'study.db'}")
    assert len(study.trials) == 5
