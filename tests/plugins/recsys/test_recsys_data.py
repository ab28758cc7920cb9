"""recsys loading: MovieLens formats, bad files, the leave-last-out split, cold start, ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automl import UserError
from automl_plugins.recsys import _data, _rank, _spaces


def write_udata(path, n_users=30, n_items=25, per_user=8, seed=0, header=False, sep="\t"):
    """MovieLens u.data style: user, item, rating, timestamp (random times)."""
    rng = np.random.default_rng(seed)
    lines = ["userId,movieId,rating,timestamp"] if header else []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1), size=per_user, replace=False):
            lines.append(sep.join(map(str, (u, i, int(rng.integers(1, 6)), int(rng.integers(8e8, 9e8))))))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_udata_and_ratings_csv(tmp_path):
    a = _data.read_interactions(write_udata(tmp_path / "u.data"))
    b = _data.read_interactions(write_udata(tmp_path / "ratings.csv", header=True, sep=","))
    assert len(a) == len(b) == 240 and a.has_time
    assert list(a.users[:1]) == list(b.users[:1]) and np.array_equal(a.ratings, b.ratings)


@pytest.mark.parametrize("content, message", [
    ("1\t2\t3\n4\t5\n", "line 2 has 2 columns; expected 3 or 4"),
    ("1,2,3,4,5\n", "line 1 has 5 columns"),
    ("1\t2\t3\n1\t2\t4\t99\n", "line 2 has 4 columns, earlier lines have 3"),
    ("1\t2\t3\t5\n1\t2\tgood\t5\n", "line 2: rating and timestamp must be numbers"),
    ("user\titem\trating\n", "no interactions after the header"),
    ("", "the file is empty"),
    ("\n\n", "the file is empty"),
])
def test_bad_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        _data.read_interactions(path)


def test_leave_last_out_leaks_nothing(tmp_path):
    data = _data.read_interactions(write_udata(tmp_path / "u.data", n_users=40, per_user=6, seed=3))
    train, val, test = _data.leave_last_out(data.users, data.times)
    assert len(set(train) | set(val) | set(test)) == len(data)
    assert not (set(train) & set(test)) and not (set(train) & set(val)) and not (set(val) & set(test))
    for user in np.unique(data.users):
        rows = np.nonzero(data.users == user)[0]
        (t,) = [r for r in rows if r in set(test)]
        (v,) = [r for r in rows if r in set(val)]
        # the test item is the user's latest interaction, validation the one before
        assert data.times[t] == data.times[rows].max()
        assert data.times[v] == np.sort(data.times[rows])[-2]
        assert all(data.times[r] <= data.times[v] for r in rows if r in set(train))
    # and after id encoding, no (user, item) test pair is in train
    bundle = _data.build_bundle(data, implicit=True, split="leave_last_out", k=5, seed=0, source="u.data")
    pairs = lambda s: set(zip(s.inputs["user"].tolist(), s.inputs["item"].tolist()))
    assert not pairs(bundle.train) & pairs(bundle.test)
    assert len(bundle.test) == 40 and bundle.info.task == "ranking"


def test_leave_last_out_keeps_short_histories_in_train():
    users = np.array(["a", "a", "b", "b", "b"])
    times = np.array([5.0, 1.0, 3.0, 1.0, 2.0])
    train, val, test = _data.leave_last_out(users, times)
    assert train.tolist() == [0, 1, 3] and val.tolist() == [4] and test.tolist() == [2]


def test_cold_start_is_counted_and_predicted(tmp_path):
    path = write_udata(tmp_path / "u.data", n_users=30, per_user=3, seed=1)
    with path.open("a") as fh:  # a user and an item that only the random split's holdout can hold
        fh.write("\n".join(f"999\t{900 + j}\t4\t{j}" for j in range(1)) + "\n")
    bundle = _data.build_bundle(_data.read_interactions(path), implicit=False, split="random", k=10,
                                seed=0, source="u.data")
    cold = sum(int(((s.inputs["user"] == 0) | (s.inputs["item"] == 0)).sum()) for s in (bundle.val, bundle.test))
    counted = sum(int(bundle.summary[f"cold-start {n} rows"].split()[0]) for n in ("val", "test"))
    assert cold == counted and cold > 0
    implicit = _data.build_bundle(_data.read_interactions(path), implicit=True, split="random", k=10,
                                  seed=0, source="u.data")
    model = _spaces.build_mf({"dim": 4}, implicit.info)
    y_true, y_pred = implicit.evaluate(model, "test", torch.device("cpu"))
    ranked = implicit.evaluate.n_users("test")
    assert y_true.shape[0] == y_pred.shape[0] == ranked and y_pred.shape[1] == 10
    assert ranked < len(torch.unique(implicit.test.inputs["user"]))  # cold-start users skipped
    assert (y_pred > 0).all()


class Prefer(torch.nn.Module):
    """Scores item i with a fixed preference, whatever the user."""

    def __init__(self, prefs):
        super().__init__()
        self.prefs = torch.tensor(prefs, dtype=torch.float)

    def forward(self, user, item):
        return self.prefs[item]


def test_ranking_excludes_seen_items_and_unknown_index():
    pair = lambda u, i: (torch.tensor(u), torch.tensor(i))
    train = pair([1, 1, 2], [1, 2, 1])
    val = pair([1, 2, 0], [3, 4, 2])  # user 0 is a cold-start user: skipped
    test = pair([1, 2], [4, 3])
    ev = _rank.RankingEval(5, train, val, test, k=2)
    model = Prefer([100.0, 10.0, 9.0, 1.0, 2.0])  # index 0 scores highest but is never ranked
    y_true, y_pred = ev(model, "val", torch.device("cpu"))
    assert y_true.tolist() == [[3], [4]]
    assert y_pred.tolist() == [[4, 3], [2, 4]]  # user 1 saw 1, 2; user 2 saw 1
    y_true, y_pred = ev(model, "test", torch.device("cpu"))  # train + val items are seen now
    assert y_true.tolist() == [[4], [3]]
    assert y_pred[0, 0] == 4 and y_pred[1].tolist() == [2, 3]
    assert _rank.hit_rate(*ev(model, "val", torch.device("cpu"))) == 1.0
