"""Real searches run in this process for the result tests (report, export, predict, compare).

The engine's own path (plan, create, objective, finalize) with the trials run by
``study.optimize`` here instead of spawned worker processes: the same training, the same
store, a few seconds less per study on a loaded machine.
"""

from __future__ import annotations

from typing import Any

import torch


def make_study(name: str, plugin: str, trials: int = 2, **kw: Any) -> str:
    """Search ``trials`` trials of ``plugin`` into study ``name`` (in $AUTOML_STUDIES); returns the name."""
    import optuna

    from automl.search import session as search_session
    from automl.search.objective import Objective
    from automl.study.spec import StudySpec
    from automl.study.store import quiet_optuna

    kw.setdefault("max_epochs", 2)
    session = search_session.plan_search(StudySpec(plugin=plugin, trials=trials, **kw), name)
    search_session.create_study(session)
    quiet_optuna()
    spec = session.spec
    objective = Objective(registry=session.registry, spec=spec, spaces=session.resolved.spaces,
                          metric=session.metric, bundle=session.bundle, study_name=name,
                          study_dir=session.ref.dir, device=torch.device("cpu"))
    study = optuna.load_study(study_name=name, storage=session.ref.url,
                              sampler=objective.sampler(), pruner=objective.pruner())
    torch.set_num_threads(2)
    study.optimize(objective, n_trials=trials, catch=())
    search_session.finalize(session)
    return name


def image_folder(root, per_class: int = 12, size: int = 10, bad: int = 0):
    """Generated RGB images, one sub-folder per class: ``red`` images are bright in the red
    channel with a vertical bar, ``green`` ones in the green channel with a horizontal bar,
    ``blue`` ones in the blue channel with a diagonal (the learnable signal); plus ``bad``
    files that are not images. Returns the folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(("red", "green", "blue")):
        (root / name / "sub").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            img[..., c] = np.clip(img[..., c] + 150, 0, 255)
            if c == 0:
                img[:, size // 2, :] = 255
            elif c == 1:
                img[size // 2, :, :] = 255
            else:
                np.fill_diagonal(img[..., 0], 255)
            where = root / name / ("sub" if i % 3 == 0 else "") / f"{name}{i}.png"
            Image.fromarray(img).save(where)
    for i in range(bad):
        (root / "red" / f"broken{i}.png").write_bytes(b"not a png at all")
    return root


def sklearn_test_csv(path, load) -> list[int]:
    """Write the raw rows of the tabular plugin's test split (seed 0) of a scikit-learn dataset
    (``load``: e.g. ``sklearn.datasets.load_iris``) as a CSV of new data (an ``id`` column, the
    features, no target); returns their row numbers."""
    import csv

    from automl.data import three_way_split

    data = load()
    test_idx = three_way_split(len(data.target), 0, stratify=data.target)[2]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *data.feature_names])
        for i in test_idx:
            w.writerow([f"row{i}", *data.data[i]])
    return list(test_idx)


def iris_test_csv(path) -> list[int]:
    """The iris test rows as new data (:func:`sklearn_test_csv`)."""
    from sklearn.datasets import load_iris

    return sklearn_test_csv(path, load_iris)
