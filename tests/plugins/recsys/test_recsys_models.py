"""recsys metrics (hand-computed), every space's forward and backward pass, and the baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automl import TrainContext, metrics
from automl.training import build_model
from automl_plugins.recsys import _data, _rank, _spaces, register_spaces

Y_TRUE = np.array([[3, -1], [5, 7], [4, -1]])
Y_PRED = np.array([[1, 3, 2], [7, 9, 5], [1, 2, 3]])  # K = 3


def test_ranking_metrics_by_hand():
    assert _rank.hit_rate(Y_TRUE, Y_PRED) == pytest.approx(2 / 3)
    assert _rank.recall(Y_TRUE, Y_PRED) == pytest.approx((1 + 1 + 0) / 3)
    user1 = (1 / math.log2(3)) / 1.0  # a hit at rank 2, one relevant item
    user2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))  # hits at ranks 1 and 3, two relevant
    assert _rank.ndcg(Y_TRUE, Y_PRED) == pytest.approx((user1 + user2 + 0) / 3)
    # recall counts every relevant item, NDCG's ideal is capped at K
    assert _rank.recall(np.array([[1, 2, 3]]), np.array([[1]])) == pytest.approx(1 / 3)
    assert _rank.ndcg(np.array([[1, 2, 3]]), np.array([[1]])) == pytest.approx(1.0)
    assert _rank.ndcg(np.zeros((0, 1), int), np.zeros((0, 3), int)) == 0.0


def test_rating_metrics_by_hand():
    y, p = np.array([4.0, 2.0, 5.0]), np.array([3.0, 2.0, 3.0])
    assert metrics.rmse(y, p) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert metrics.mae(y, p) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def bundles():
    data = _data.synthetic_interactions(n_users=40, n_items=30, rank=4)
    return {kind: _data.build_bundle(data, implicit=kind == "ranking", split="leave_last_out", k=5,
                                     seed=0, source="synthetic") for kind in ("ranking", "regression")}


SPACES = {}
register_spaces(lambda s: SPACES.__setitem__(s.name, s))
CONFIGS = {"mf": {"dim": 8}, "ncf": {"dim": 8, "layers": 2, "dropout": 0.1},
           "two_tower": {"dim": 8, "hidden": 16, "layers": 1, "dropout": 0.1}}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("task, loss", [("ranking", "bpr"), ("ranking", "bce"), ("regression", "mse")])
def test_space_forward_backward(bundles, name, task, loss):
    bundle = bundles[task]
    info = bundle.info
    if task == "regression":
        y = bundle.train.targets.double()
        info = info.replace(target_mean=float(y.mean()), target_std=float(y.std()))
    space = SPACES[name]
    model = build_model(space, CONFIGS[name], info)
    inputs, targets = bundle.train.take(torch.arange(32))
    out = model(**inputs)
    assert out.shape == (32,)
    cfg = {"loss": loss, "neg_ratio": 3, "reg": 1e-3}
    mse = lambda o, t: torch.nn.functional.mse_loss(o, t) / info.target_std ** 2
    ctx = TrainContext(cfg, info, bundle.train, bundle.val, torch.device("cpu"), mse,
                       torch.Generator().manual_seed(0))
    step_loss = space.step(model, inputs, targets, ctx)
    step_loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(step_loss) and grads and all(torch.isfinite(g).all() for g in grads)
    core = getattr(model, "inner", model)
    for emb in core.modules():  # index 0 (cold start) stays a zero vector
        if isinstance(emb, torch.nn.Embedding):
            assert not emb.weight.grad[0].any() and not emb.weight[0].any()
    if task == "ranking":  # scoring the catalogue (fast path or pairwise) agrees with forward
        y_true, y_pred = bundle.evaluate(model, "val", torch.device("cpu"))
        assert y_pred.shape == (bundle.evaluate.n_users("val"), 5)
        if hasattr(model, "score_all"):
            model.eval()
            users = torch.tensor([1, 2])
            full = model.score_all(users, torch.arange(info.extra["n_items"]))
            pairs = model(user=users.repeat_interleave(info.extra["n_items"]),
                          item=torch.arange(info.extra["n_items"]).repeat(2))
            assert torch.allclose(full.reshape(-1), pairs, atol=1e-5)


def test_ranking_losses_by_hand():
    pos, neg = torch.tensor([2.0]), torch.tensor([[0.0, 1.0]])
    bpr = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(-1)))) / 2
    assert _spaces.ranking_loss(pos, neg, "bpr").item() == pytest.approx(bpr)
    bce = (math.log(1 + math.exp(-2)) + math.log(2) + math.log(1 + math.e)) / 3
    assert _spaces.ranking_loss(pos, neg, "bce").item() == pytest.approx(bce, rel=1e-5)


def test_most_popular_baseline_by_hand():
    pair = lambda u, i: (torch.tensor(u), torch.tensor(i))
    from automl import DataBundle, DataInfo, Split

    def split(u, i):
        return Split({"user": torch.tensor(u), "item": torch.tensor(i)}, torch.ones(len(u)))

    # item 3 is the most popular, then 2, then 1; user 1 has seen 3 already
    train = split([1, 2, 3, 2, 3, 3], [3, 3, 3, 2, 2, 1])
    val, test = split([1, 2], [2, 1]), split([1, 2], [4, 4])
    info = DataInfo(task="ranking", extra={"n_users": 4, "n_items": 5, "k": 1})
    bundle = DataBundle(train, val, test, info)
    scores = _rank.fit_most_popular(bundle, _rank.HR)
    # val: user 1 gets item 2 (hit), user 2 (saw 3, 2) gets item 1 (hit); test: user 1 (saw 3, 2)
    # gets item 1 (miss), user 2 (saw 3, 2, 1) gets the only item left, 4 (hit)
    assert scores == {"val": 1.0, "test": 0.5}
    ev = _rank.RankingEval(5, pair([1, 2, 3, 2, 3, 3], [3, 3, 3, 2, 2, 1]), pair([1, 2], [2, 1]),
                           pair([1, 2], [4, 4]), k=1)
    assert ev.n_users("val") == 2


def test_item_mean_baseline_by_hand(bundles):
    from automl import DataBundle, DataInfo, Split

    def split(i, r):
        return Split({"user": torch.ones(len(i), dtype=torch.long), "item": torch.tensor(i)}, torch.tensor(r))

    train = split([1, 1, 2], [5.0, 5.0, 2.0])  # global mean 4; item 1: (10 + 20) / 7, item 2: (2 + 20) / 6
    bundle = DataBundle(train, split([1], [5.0]), split([0], [3.0]), DataInfo("regression", extra={"n_items": 3}))
    scores = _rank.fit_item_mean(bundle, metrics.MAE)
    assert scores["val"] == pytest.approx(5 - 30 / 7) and scores["test"] == pytest.approx(1.0)
