"""Every first-party plugin passes the conformance kit (automl.testing).

The plugins are the installed entry points of the ``automl.plugins`` group whose module is in
``automl_plugins``: a plugin added to pyproject.toml is checked without editing this file.
Datasets that need ``--data`` are skipped (no sample data here); one config per space keeps
it fast.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from automl.testing import check_plugin

FIRST_PARTY = sorted({ep.name for ep in entry_points(group="automl.plugins") if ep.value.startswith("automl_plugins.")})


def test_first_party_plugins_are_found():
    assert {"vision", "csv", "tensorboard"} <= set(FIRST_PARTY)


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_first_party_plugin_conforms(name):
    results = check_plugin(name, n_configs=1, batch_size=4)
    failed = [str(r) for r in results if r.status == "fail"]
    assert not failed, "\n".join(failed)
    assert results[0].check == "load" and results[0].status == "pass"
    checked = {r.check for r in results if r.status == "pass"}
    if any(r.check == "dataset" and r.status == "pass" for r in results):
        assert {"splits", "define", "model", "metric", "order", "pickle"} <= checked, checked
    else:  # a logger: its lifecycle hooks ran on sample events
        assert "hook" in checked or "pickle" in checked
