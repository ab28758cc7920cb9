"""recsys: recommendation from user-item interactions.

Datasets:

- ``synthetic`` (default, no download): a low-rank user-item model with popularity skew and
  noise (see :func:`automl_plugins.recsys._data.synthetic_interactions`); implicit feedback,
  leave-last-out split.
- ``ratings``: ``--data PATH`` to ``user, item, rating[, timestamp]`` CSV / TSV (MovieLens
  ``u.data`` and ``ratings.csv`` read directly).

Options of both: ``implicit`` (true: ranking with sampled negatives; false: rating
regression), ``split`` (``random`` 80/10/10 over interactions, or ``leave_last_out`` by
timestamp per user) and ``k`` (the cut-off of the @K metrics, default 10).

Spaces: ``mf`` (biased matrix factorization), ``ncf`` (NeuMF: GMF + MLP), ``two_tower``, and
for ranking the closed-form item-item models ``ease`` (EASE) and ``itemknn`` (item k-nearest
neighbours), fitted in one step (see :mod:`._closed`).
Metrics: ``ndcg`` (default), ``hr``, ``recall`` at K for implicit feedback, over the full
item catalogue with already-seen items excluded (see :mod:`._rank`); ``rmse``, ``mae`` for
explicit ratings. Baselines: ``most_popular`` and ``ease`` (lambda chosen on validation) for
ranking, ``item_mean`` for ratings.
"""

from __future__ import annotations

from automl import Dataset, Option, PluginInfo, SearchSpace, hookimpl, metrics
from automl_plugins.recsys import _closed, _data, _rank, _spaces
from automl_plugins.recsys._predict import predict_users

TASKS = ("regression", "ranking")


def _options(implicit: bool, split: str) -> tuple[Option, ...]:
    return (
        Option("implicit", bool, implicit, "every interaction is a positive; negatives are sampled (ranking)"),
        Option("split", str, split, "random (80/10/10 of interactions) or leave_last_out (per user, by time)",
               choices=("random", "leave_last_out")),
        Option("k", int, 10, "cut-off K of the hr / ndcg / recall metrics"),
    )


@hookimpl
def plugin_info() -> PluginInfo:
    return PluginInfo(name="recsys", description="Recommendation from user-item interactions (MF, NeuMF, two-tower)",
                      default_dataset="synthetic", default_space="mf", default_metric="ndcg",
                      # closed-form models fit in a second and are strong on small data: a
                      # budget is never spent on MF alone (ratings, a regression, searches mf)
                      default_spaces=("mf", "ease", "itemknn"))


@hookimpl
def register_datasets(register) -> None:
    register(Dataset(predict_new=predict_users, name="synthetic", task="ranking", load=_data.load_synthetic,
                     options=_options(True, "leave_last_out"),
                     description="built-in: 600 users x 300 items from a low-rank model with popularity "
                                 "skew; implicit, leave-last-out (the seed draws the items held out)"))
    register(Dataset(predict_new=predict_users, name="ratings", task="regression", load=_data.load_ratings,
                     needs_path=True,
                     options=_options(False, "random"),
                     description="--data PATH: user,item,rating[,timestamp] CSV/TSV (MovieLens u.data, "
                                 "ratings.csv); --option implicit=true for ranking"))


@hookimpl
def register_spaces(register) -> None:
    common = dict(tasks=TASKS, train=_spaces.train_space, step=_spaces.step)
    register(SearchSpace(name="mf", define=_spaces.define_mf, build=_spaces.build_mf,
                         description="biased matrix factorization", starts=_spaces.MF_STARTS, **common))
    register(SearchSpace(name="ncf", define=_spaces.define_ncf, build=_spaces.build_ncf,
                         description="NeuMF: generalized MF and an MLP over user/item embeddings", **common))
    register(SearchSpace(name="two_tower", define=_spaces.define_two_tower, build=_spaces.build_two_tower,
                         description="user and item towers with dot-product scoring", **common))
    closed = dict(tasks=("ranking",), train=_closed.no_training, check=_closed.check)
    register(SearchSpace(name="ease", define=_closed.define_ease, build=_closed.build_ease,
                         description="EASE: closed-form item-item ridge regression (searched: lambda)",
                         starts=({"lambda": 100.0},), **closed))
    register(SearchSpace(name="itemknn", define=_closed.define_itemknn, build=_closed.build_itemknn,
                         description="item k-nearest neighbours, shrunk cosine (searched: k, shrink)",
                         starts=({"k": 50, "shrink": 10.0},), **closed))


@hookimpl
def register_metrics(register) -> None:
    register(_rank.NDCG)
    register(_rank.HR)
    register(_rank.RECALL)
    register(metrics.RMSE)
    register(metrics.MAE)


@hookimpl
def register_baselines(register) -> None:
    register(_rank.MOST_POPULAR)
    register(_closed.EASE_BASELINE)
    register(_rank.ITEM_MEAN)
