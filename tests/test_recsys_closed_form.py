"""The closed-form recsys spaces (EASE, ItemKNN): the maths against an independent NumPy /
scikit-learn computation, fitting and ranking through core's path for modules with ``fit``,
a CLI search that mixes them with a gradient-trained space, and export + predict."""

from __future__ import annotations

import csv
import json

import numpy as np
import optuna
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from automl import DataBundle, DataInfo, Split
from automl.study.sampling import sample_config
from automl.training import build_model, fit, load_model, save_model
from automl_plugins.recsys import _closed, _data, _rank, register_spaces

SPACES = {}
register_spaces(lambda s: SPACES.__setitem__(s.name, s))

# 6 users x 5 items (index 0 of both is the unknown id, left empty)
X = np.array([[1, 1, 0, 0, 1],
              [0, 1, 1, 0, 0],
              [1, 0, 1, 1, 0],
              [1, 1, 1, 0, 0],
              [0, 0, 1, 1, 1],
              [1, 0, 0, 1, 1]], dtype=float)


def _train_split(x: np.ndarray) -> Split:
    u, i = np.nonzero(x)
    return Split({"user": torch.from_numpy(u + 1), "item": torch.from_numpy(i + 1)}, torch.ones(len(u)))


def test_ease_matches_the_closed_form_computed_with_numpy():
    lam = 2.0
    model = _closed.EASE(X.shape[0] + 1, X.shape[1] + 1, lam)
    model.fit(_train_split(X), None, DataInfo("ranking"))
    p = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    b = np.eye(X.shape[1]) - p / np.diag(p)[None, :]  # B = I - P / diag(P), column-wise
    w = model.weights.double().numpy()
    assert np.allclose(w[1:, 1:], b, atol=1e-6)
    assert np.all(np.diag(w) == 0.0) and not w[0].any() and not w[:, 0].any()
    # and it is what EASE is defined as: column j is the ridge regression of item j on the
    # other items (the constrained least squares of Steck 2019, solved column by column)
    for j in range(X.shape[1]):
        others = np.delete(np.arange(X.shape[1]), j)
        xo = X[:, others]
        ridge = np.linalg.solve(xo.T @ xo + lam * np.eye(len(others)), xo.T @ X[:, j])
        assert np.allclose(w[1:, 1:][others, j], ridge, atol=1e-5)
    # scores are X @ B, by both entry points
    users = torch.arange(1, X.shape[0] + 1)
    full = model.score_all(users, torch.arange(X.shape[1] + 1)).double().numpy()
    assert np.allclose(full[:, 1:], X @ b, atol=1e-5)
    pairs = model(user=users, item=torch.tensor([1, 2, 3, 4, 5, 1]))
    assert np.allclose(pairs.numpy(), (X @ b)[np.arange(6), [0, 1, 2, 3, 4, 0]], atol=1e-5)
    assert not model.score_all(torch.tensor([0]), torch.arange(6)).any()  # unknown user: no history


@pytest.mark.parametrize("shrink", [0.0, 3.0])
def test_itemknn_keeps_the_k_most_similar_items_per_column(shrink):
    rng = np.random.default_rng(0)
    x = (rng.random((30, 12)) < 0.3).astype(float)
    k = 3
    model = _closed.ItemKNN(31, 13, k, shrink)
    model.fit(_train_split(x), None, DataInfo("ranking"))
    w = model.weights.double().numpy()[1:, 1:]
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / (np.outer(norms, norms) + shrink)
    if shrink == 0.0:
        assert np.allclose(sim, cosine_similarity(x.T))
    np.fill_diagonal(sim, 0.0)
    assert np.all(np.diag(w) == 0.0)
    for j in range(12):
        kept = np.flatnonzero(w[:, j])
        assert len(kept) == k
        assert np.allclose(w[kept, j], sim[kept, j], atol=1e-6)
        assert sim[kept, j].min() >= np.delete(sim[:, j], kept).max() - 1e-9  # the k largest
    big = _closed.ItemKNN(31, 13, 500, shrink)  # k beyond the catalogue keeps every other item
    big.fit(_train_split(x), None, DataInfo("ranking"))
    assert np.allclose(big.weights.double().numpy()[1:, 1:], sim, atol=1e-6)


@pytest.fixture(scope="module")
def synthetic():
    data = _data.synthetic_interactions()
    return _data.build_bundle(data, implicit=True, split="leave_last_out", k=10, seed=0, source="synthetic")


@pytest.mark.parametrize("name, cfg", [("ease", {"lambda": 50.0}), ("itemknn", {"k": 40, "shrink": 5.0})])
def test_each_space_fits_ranks_and_reloads(synthetic, name, cfg, tmp_path):
    """Through core's fit (one call of the module's fit), the catalogue ranking, the weights
    saved and loaded into a fresh build; on the synthetic data's documented low-rank signal
    each beats most-popular by far."""
    model = build_model(SPACES[name], cfg, synthetic.info)
    result = fit(model, synthetic, {}, _rank.NDCG, torch.device("cpu"))
    assert result.epochs_run == 1 and result.best_epoch == 0
    y_true, y_pred = synthetic.evaluate(model, "val", torch.device("cpu"))
    assert y_pred.shape == (600, 10)
    assert result.best_value == pytest.approx(_rank.ndcg(y_true, y_pred))
    popular = _rank.fit_most_popular(synthetic, _rank.NDCG)
    assert result.best_value > 2 * popular["val"]
    # forward (pairs) agrees with score_all, seen items included
    users, items = torch.tensor([1, 7]), torch.arange(synthetic.info.extra["n_items"])
    full = model.score_all(users, items)
    pairs = model(user=users.repeat_interleave(len(items)), item=items.repeat(2))
    assert torch.allclose(full.reshape(-1), pairs, atol=1e-5)
    save_model(model, tmp_path / "m.pt")
    fresh = load_model(build_model(SPACES[name], cfg, synthetic.info), tmp_path / "m.pt")
    assert torch.equal(fresh.score_all(users, items), full)


def test_ease_baseline_chooses_lambda_on_validation(synthetic):
    row = _closed.fit_ease_baseline(synthetic, _rank.NDCG)
    ev = synthetic.evaluate
    vals = {}
    for lam in _closed.EASE_GRID:
        m = _closed.EASE(synthetic.info.extra["n_users"], synthetic.info.extra["n_items"], lam)
        m.fit(synthetic.train, synthetic.val, synthetic.info)
        vals[lam] = (_rank.ndcg(*ev(m, "val", "cpu")), _rank.ndcg(*ev(m, "test", "cpu")))
    best = max(vals, key=lambda lam: vals[lam][0])
    assert row == pytest.approx({"val": vals[best][0], "test": vals[best][1]})


def test_tiny_dataset_fits_and_ranks():
    """A catalogue smaller than ItemKNN's smallest k, users with a single train item."""
    train = Split({"user": torch.tensor([1, 1, 2, 3]), "item": torch.tensor([1, 2, 2, 3])}, torch.ones(4))
    val = Split({"user": torch.tensor([1, 2]), "item": torch.tensor([3, 1])}, torch.ones(2))
    test = Split({"user": torch.tensor([3]), "item": torch.tensor([1])}, torch.ones(1))
    info = DataInfo("ranking", extra={"n_users": 4, "n_items": 4, "k": 2})
    ev = _rank.RankingEval(4, (train.inputs["user"], train.inputs["item"]), (val.inputs["user"], val.inputs["item"]),
                           (test.inputs["user"], test.inputs["item"]), k=2)
    bundle = DataBundle(train, val, test, info, evaluate=ev)
    for name in ("ease", "itemknn"):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        cfg = sample_config({name: SPACES[name]}, study.ask(), info)
        model = build_model(SPACES[name], cfg["model"], info)
        fit(model, bundle, cfg["train"], _rank.NDCG, torch.device("cpu"))
        y_true, y_pred = ev(model, "val", torch.device("cpu"))
        assert y_pred.shape == (2, 2) and (y_pred > 0).all()


def test_cli_search_mixes_closed_form_and_gradient_spaces(cli, studies, tmp_path):
    r = cli("search", "--plugin", "recsys", "--space", "ease", "--space", "itemknn", "--space", "mf",
            "--trials", "4", "--max-epochs", "1", "--study", "cf")
    assert r.code == 0, r.err
    assert "FAIL" not in r.out
    rows = cli("leaderboard", "cf", "--format", "json").json()
    trials = [row for row in rows if row["state"] != "BASELINE"]
    assert len(trials) == 4 and all(row["state"] == "COMPLETE" for row in trials), rows
    assert {row["params"]["space"] for row in trials} == {"ease", "itemknn", "mf"}
    keys = {k for row in trials for k in row["params"]}
    assert {"ease.lambda", "itemknn.k", "itemknn.shrink", "mf.dim"} <= keys
    assert "lambda" not in keys and "k" not in keys  # model parameters are namespaced
    study = optuna.load_study(study_name="cf", storage=f"sqlite:///{studies / 'cf' / 'study.db'}")
    base = study.user_attrs["automl:baselines"]
    assert base["ease"]["val"] > 2 * base["most_popular"]["val"]

    # export + predict of the EASE trial: its history and item-item matrix travel in the weights
    ease = next(row for row in trials if row["params"]["space"] == "ease")
    out = tmp_path / "ease-export"
    r = cli("export", "cf", "--trial", ease["number"], "--out", out)
    assert r.code == 0, r.err
    assert (out / "model.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["space"] == "ease"
    (tmp_path / "users.txt").write_text("user\nu0\nu1\nnobody\n")
    r = cli("predict", out, "--data", tmp_path / "users.txt", "--option", "k=3")
    assert r.code == 0, r.err
    got = list(csv.DictReader(r.out.splitlines()))
    assert [(x["id"], x["rank"]) for x in got] == [("u0", "1"), ("u0", "2"), ("u0", "3"),
                                                  ("u1", "1"), ("u1", "2"), ("u1", "3")]
    assert float(got[0]["score"]) >= float(got[1]["score"]) >= float(got[2]["score"])
    # the exported EASE serves the model the trial fitted: refitted here from the same split
    # and lambda, its top 3 for u0 (seen items not excluded, as predict documents) are the same
    bundle = _data.load_synthetic(None, {"implicit": True, "split": "leave_last_out", "k": 10}, 0)
    again = _closed.EASE(bundle.info.extra["n_users"], bundle.info.extra["n_items"], ease["params"]["ease.lambda"])
    again.fit(bundle.train, bundle.val, bundle.info)
    u0 = bundle.state["users"].index("u0") + 1
    scores = again.score_all(torch.tensor([u0]), torch.arange(bundle.info.extra["n_items"]))[0]
    scores[0] = -torch.inf
    top = [bundle.state["items"][i - 1] for i in scores.topk(3).indices.tolist()]
    assert [x["item"] for x in got[:3]] == top
    # the portable program export writes (torch.export, or TorchScript) serves it too: the
    # history is read with sizes from tensors, so any batch size works
    if (out / "model.pt2").exists():
        portable = torch.export.load(str(out / "model.pt2")).module()
    else:
        portable = torch.jit.load(str(out / "model.torchscript.pt"))
    idx = torch.tensor([bundle.state["items"].index(t) + 1 for t in top])
    assert torch.allclose(portable(torch.full((3,), u0), idx), scores[idx], atol=1e-5)


def test_time_budget_with_a_closed_form_space_first(cli, studies):
    """A time budget times one epoch of the first space before the search: for a module that
    fits itself that is its one fit, and its config is sampled for that space."""
    r = cli("search", "--plugin", "recsys", "--space", "ease", "--space", "mf", "--timeout", "60", "--dry-run")
    assert r.code == 0, r.err
    assert "one epoch takes about" in r.out


def test_synthetic_seed_redraws_only_the_held_out_items():
    """The study seed draws the synthetic data's consumption order: the same interactions,
    other items held out by leave_last_out, so results over seeds are over other test sets."""
    base, a, b = (_data.synthetic_interactions(order_seed=s) for s in (None, 0, 1))
    for x in (a, b):
        assert np.array_equal(x.users, base.users) and np.array_equal(x.items, base.items)
        assert np.array_equal(x.ratings, base.ratings)
        for u in ("u0", "u17"):  # each user keeps its own time stamps, in another order
            mine = x.users == u
            assert sorted(x.times[mine]) == sorted(base.times[mine])
    assert np.array_equal(a.times, _data.synthetic_interactions(order_seed=0).times)
    test_a, test_b = _data.leave_last_out(a.users, a.times)[2], _data.leave_last_out(b.users, b.times)[2]
    assert len(test_a) == len(test_b) == 600
    assert len(np.intersect1d(test_a, test_b)) < 100  # mostly other held-out rows


def test_a_catalogue_too_large_for_a_dense_item_matrix_is_refused():
    from automl import UserError

    _closed.check(DataInfo("ranking", extra={"n_items": _closed.MAX_ITEMS}))
    with pytest.raises(UserError, match="use mf, ncf or two_tower"):
        _closed.check(DataInfo("ranking", extra={"n_items": _closed.MAX_ITEMS + 1}))
