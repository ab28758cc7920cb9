"""``automl compare``: studies of different plugins side by side."""

from __future__ import annotations

import json

from _results_helper import make_study


def test_compare_two_plugins(studies, cli):
    make_study("tab", "tabular", trials=2, dataset="iris", max_epochs=2)
    make_study("txt", "text", trials=1, spaces=["bag"], options=["size=200"], max_epochs=1, seed=3)
    r = cli("compare", "tab", "txt", "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    tab, txt = data["studies"]
    assert (tab["plugin"], txt["plugin"]) == ("tabular", "text")
    assert tab["trials"] == 2 and txt["trials"] == 1
    assert tab["best_value"] is not None and txt["best_test_value"] is not None
    assert tab["wall_time_s"] > 0
    diff = data["differences"]
    assert diff["plugin"] == ["tabular", "text"] and diff["dataset"] == ["iris", "synthetic_reviews"]
    assert diff["seed"] == [0, 3] and "created" not in diff
    assert any("different datasets" in n for n in data["notes"])
    r = cli("compare", "tab", "txt")
    assert r.code == 0 and "spec fields that differ" in r.out and "synthetic_reviews" in r.out


def test_compare_errors(studies, cli):
    assert cli("compare", "only").code == 2
    r = cli("compare", "a", "a")
    assert r.code == 2 and "twice" in r.err
    r = cli("compare", "a", "missing")
    assert r.code == 2 and "unknown study" in r.err
