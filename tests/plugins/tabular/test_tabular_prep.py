"""Tabular loading and preprocessing: column typing, imputation, task inference, and that
everything fitted comes from the train split only."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from automl import UserError
from automl.data import read_table, three_way_split
from automl_plugins.tabular._data import load_csv, load_sklearn
from automl_plugins.tabular._prep import TablePrep, encode_labels, infer_task, split_columns


def write_table(path, n=120, seed=0, *, target="y", regression=False, header_extra=()):
    """A table with numeric, categorical and missing cells; y depends on x1 and color."""
    rng = np.random.default_rng(seed)
    colors = ["red", "green", "blue"]
    rows = []
    for i in range(n):
        x1 = rng.normal()
        color = colors[i % 3]
        y = x1 * 3 + (2 if color == "red" else 0) if regression else ("yes" if x1 + (color == "red") > 0.3 else "no")
        rows.append({"x1": "" if i % 10 == 0 else f"{x1:.4f}", "x2": f"{rng.integers(0, 50)}",
                     "color": "NA" if i % 7 == 0 else color, target: f"{y:.4f}" if regression else y})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) + list(header_extra))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_read_table_types_and_missing(tmp_path):
    cols = read_table(write_table(tmp_path / "t.csv"))
    num, cat, num_names, cat_names = split_columns({k: v for k, v in cols.items() if k != "y"})
    assert num_names == ["x1", "x2"] and cat_names == ["color"]
    assert np.isnan(num[0, 0]) and cat[0, 0] is None  # "" and "NA" are missing


def test_read_table_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(UserError, match="line 3 has 3 fields"):
        read_table(tmp_path / "ragged.csv")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(UserError, match="twice"):
        read_table(tmp_path / "dup.csv")


def test_infer_task_and_override():
    assert infer_task(["a", "b", "a"]) == "classification"
    assert infer_task([str(i % 3) for i in range(60)]) == "classification"
    assert infer_task([f"{i * 0.37:.2f}" for i in range(60)]) == "regression"
    assert infer_task([str(i % 3) for i in range(60)], "regression") == "regression"
    with pytest.raises(UserError, match="numeric target"):
        infer_task(["a", "b"], "regression")


def test_encode_labels_sorts_numbers_numerically():
    ids, names = encode_labels(["10", "2", "2.0", "10"])
    assert names == ["2", "10"] and ids.tolist() == [1, 0, 0, 1]


def test_prep_imputes_and_standardises_from_train_only():
    num = np.array([[1.0], [np.nan], [3.0], [100.0]])
    cat = np.array([["a"], [None], ["a"], ["zzz"]], dtype=object)
    prep = TablePrep.fit(num[:3], cat[:3], ["x"], ["c"])
    assert prep.medians == [2.0] and prep.fill == ["a"] and prep.categories == [["a"]]
    x_num, x_cat = prep.transform(num, cat)
    assert x_num[:3].mean() == pytest.approx(0.0, abs=1e-6)  # train rows: mean 0
    assert x_cat.tolist() == [[1], [1], [1], [0]]  # missing -> most frequent; unseen -> 0


def test_csv_state_unchanged_when_test_rows_change(tmp_path):
    """Leakage check: rewrite every test-split row with wild values; the fitted train
    statistics (medians, means, stds, categories) must not move."""
    path = write_table(tmp_path / "t.csv", n=150)
    opts = {"target": "y", "task": "auto"}
    before = load_csv(path, opts, seed=3)
    cols = read_table(path)
    _, labels = np.unique(cols["y"], return_inverse=True)
    _, _, test_idx = three_way_split(len(labels), 3, stratify=labels)
    rows = [dict(zip(cols, vals)) for vals in zip(*cols.values())]
    for i in test_idx:
        rows[i].update(x1="99999", x2="-5000", color="purple")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(cols))
        writer.writeheader()
        writer.writerows(rows)
    after = load_csv(path, opts, seed=3)
    assert after.state["preprocessing"] == before.state["preprocessing"]
    assert torch.equal(after.train.inputs["num"], before.train.inputs["num"])
    assert (after.test.inputs["cat"] == 0).all()  # "purple" was never seen in train
    assert not torch.equal(after.test.inputs["num"], before.test.inputs["num"])


def test_csv_bundle_shapes_and_summary(tmp_path):
    bundle = load_csv(write_table(tmp_path / "t.csv", n=100), {"target": "y", "task": "auto"}, 0)
    assert bundle.info.task == "classification" and bundle.info.class_names == ["no", "yes"]
    assert bundle.info.extra["cat_cardinalities"] == [4]  # blue, green, red + unseen
    assert bundle.train.inputs["num"].dtype == torch.float32 and bundle.train.inputs["cat"].shape[1] == 1
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 100
    reg = load_csv(write_table(tmp_path / "r.csv", n=100, regression=True), {"target": "y", "task": "auto"}, 0)
    assert reg.info.task == "regression" and reg.train.targets.dtype == torch.float32


def test_csv_target_errors_name_the_columns(tmp_path):
    path = write_table(tmp_path / "t.csv")
    with pytest.raises(UserError, match="needs --option target=COLUMN.*x1, x2, color, y"):
        load_csv(path, {"target": None, "task": "auto"}, 0)
    with pytest.raises(UserError, match="'price' is not in the file.*x1, x2, color, y"):
        load_csv(path, {"target": "price", "task": "auto"}, 0)


def test_sklearn_tables_load():
    for name, task, classes in (("breast_cancer", "classification", 2), ("iris", "classification", 3),
                                ("wine", "classification", 3), ("diabetes", "regression", None)):
        b = load_sklearn(name, 0)
        assert b.info.task == task and b.info.num_classes == classes
        assert b.train.inputs["cat"].shape[1] == 0
        mean = b.train.inputs["num"].mean(0)
        assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)  # standardised on train
