"""The conformance kit and plugin selection: an out-of-tree distribution installed for real,
a deliberately broken plugin, the allow-list, duplicate names and `automl plugins check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automl import UserError
from automl.testing import CheckResult, assert_conforms, check_plugin

FIXTURES = Path(__file__).parent / "fixtures"
BROKEN = str(FIXTURES / "broken_plugin.py")
DUP = str(FIXTURES / "dup" / "fixture.py")


def _by(results: list[CheckResult]) -> dict[tuple[str, str], CheckResult]:
    return {(r.check, r.target): r for r in results}


def test_broken_plugin_fails_with_each_reason_named():
    results = _by(check_plugin("broken_plugin", plugin_paths=[BROKEN], n_configs=1))
    expected = {
        ("overlap", "dataset leaky"): "20 of 20 test rows (100.0%) are also train rows",
        ("splits", "dataset badlabels"): "labels span 0..2, outside 0..1",
        ("define", "space notjson on leaky"): "not JSON-able",
        ("model", "space wrongshape on leaky"): "classification needs (8, 2) logits",
        ("order", "metric upside"): "wrong order for direction 'maximize'",
        ("pickle", "plugin broken_plugin"): "metric anonymous",
    }
    for key, reason in expected.items():
        assert results[key].status == "fail" and reason in results[key].reason, (key, results[key])
    failed = {k for k, r in results.items() if r.status == "fail"}
    assert failed == set(expected), failed - set(expected)
    # What is fine in the broken plugin passes: the kit does not fail everything.
    assert results[("model", "space ok on leaky")].status == "pass"
    assert results[("order", "metric accuracy")].status == "pass"
    # Inconsistent data is not used for model checks (no cascade of errors).
    assert ("model", "space ok on badlabels") not in results
    with pytest.raises(AssertionError, match=r"fails 6 conformance check\(s\)"):
        assert_conforms("broken_plugin", plugin_paths=[BROKEN], n_configs=1)


def test_check_command_exit_codes_and_reasons(cli):
    r = cli("plugins", "check", "broken_plugin", "--plugin-path", BROKEN)
    assert r.code == 1, r.err
    assert "FAILED" in r.out and "6 failed" in r.out
    r = cli("plugins", "check", "broken_plugin", "--plugin-path", BROKEN, "--format", "json")
    assert r.code == 1
    rows = json.loads(r.out)
    assert any(row["status"] == "fail" and "wrong order" in row["reason"] for row in rows)
    r = cli("plugins", "check", "nosuch")
    assert r.code == 2 and "unknown plugin 'nosuch'" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("plugins", "check", "broken_plugin", "--plugin-path", BROKEN, "--data", "nosuch=/tmp")
    assert r.code == 2 and "has no dataset 'nosuch'" in r.err
    r = cli("plugins", "check", "broken_plugin", "--plugin-path", BROKEN, "--data", "leaky")
    assert r.code == 2 and "expected DATASET=PATH" in r.err


def test_installed_distribution_is_listed_checked_and_searched(cli, installed):
    items = {p["name"]: p for p in cli("plugins", "--format", "json").json()}
    fixture = items["fixture"]
    assert fixture["status"] == "ok" and fixture["version"] == "1.2.3"
    assert "automl-fixture-plugin" in fixture["source"] and fixture["datasets"] == ["waves"]
    assert "register_commands" in fixture["hooks"]
    broken = items["fixture_broken"]
    assert broken["status"] == "broken" and "fails on import on purpose" in broken["error"]
    assert items["vision"]["status"] == "ok"  # a broken plugin breaks no other

    r = cli("plugins", "check", "fixture")
    assert r.code == 0, r.out
    assert "OK" in r.out and "0 failed" in r.out

    r = cli("search", "--plugin", "fixture", "--trials", "2", "--max-epochs", "2", "--study", "fx")
    assert r.code == 0, r.err
    rows = cli("leaderboard", "fx", "--format", "json").json()
    assert len(rows) == 2 and all(row["state"] == "COMPLETE" for row in rows)


def test_plugin_adds_a_cli_command(cli, installed):
    r = cli("fixture-hello", "--name", "kit")
    assert r.code == 0, r.err
    assert "hello kit from the fixture plugin" in r.out


def test_allow_list_blocks_others_and_all_shows_them(cli, installed, monkeypatch):
    monkeypatch.setenv("AUTOML_PLUGINS", "vision,fixture_broken")
    shown = {p["name"]: p for p in cli("plugins", "--format", "json").json()}
    assert set(shown) == {"vision", "fixture_broken"}
    assert shown["fixture_broken"]["status"] == "broken" and "on purpose" in shown["fixture_broken"]["error"]
    everything = {p["name"]: p["status"] for p in cli("plugins", "--all", "--format", "json").json()}
    assert everything["fixture"] == "blocked" and everything["text"] == "blocked"
    r = cli("search", "--plugin", "fixture", "--trials", "1")
    assert r.code == 2 and "not in AUTOML_PLUGINS" in r.err
    r = cli("plugins", "check", "fixture")
    assert r.code == 2 and "not in AUTOML_PLUGINS" in r.err
    # A --plugin-path plugin is asked for explicitly: the allow-list does not block it.
    listed = {p["name"]: p["status"] for p in cli("plugins", "--plugin-path", BROKEN, "--format", "json").json()}
    assert listed["broken_plugin"] == "ok"


def test_two_plugins_with_one_name_are_both_named_and_neither_used(cli, installed):
    items = {p["name"]: p for p in cli("plugins", "--plugin-path", DUP, "--format", "json").json()}
    error = items["fixture"]["error"]
    assert items["fixture"]["status"] == "broken"
    assert "automl-fixture-plugin" in error and "dup/fixture.py" in error
    assert items["fixture"]["datasets"] == []  # neither one's datasets are used
    r = cli("search", "--plugin", "fixture", "--plugin-path", DUP, "--trials", "1")
    assert r.code == 2 and "claimed by both" in r.err and "dup/fixture.py" in r.err


def test_autoload_disabled_loads_only_plugin_paths(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOML_DISABLE_PLUGIN_AUTOLOAD", "1")
    names = [p["name"] for p in cli("plugins", "--plugin-path", BROKEN, "--format", "json").json()]
    assert names == ["broken_plugin"]
    bad = tmp_path / "crashing.py"
    bad.write_text("import automl\nraise ValueError('cannot start')\n")
    items = cli("plugins", "--plugin-path", str(bad), "--format", "json").json()
    assert items[0]["status"] == "broken" and "ValueError: cannot start" in items[0]["error"]
    r = cli("plugins", "--plugin-path", str(tmp_path / "missing.py"))
    assert r.code == 2 and "does not exist" in r.err
    r = cli("plugins", "--plugin-path", "no_such_module_anywhere")
    assert r.code == 2 and "neither a .py file nor an importable module" in r.err


def test_unknown_plugin_is_a_user_error():
    with pytest.raises(UserError, match="unknown plugin 'nosuch'"):
        check_plugin("nosuch")


def test_author_fixtures(automl_cli, automl_studies):
    r = automl_cli("plugins", "--format", "json")
    assert r.code == 0 and "vision" in {p["name"] for p in json.loads(r.out)}
    assert automl_cli("leaderboard", "ghost").code == 2
    assert not automl_studies.exists()  # a failed command writes nothing


FILE_PLUGIN = '''
import numpy as np
import torch
from torch import nn
from automl import DataBundle, DataInfo, Dataset, PluginInfo, SearchSpace, Split, UserError, hookimpl, metrics
from automl.data import three_way_split


def load_table(path, options, seed):
    """Rows of 'x1,x2,y' numbers from --data PATH; y is the regression target."""
    try:
        data = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise UserError(f"{path}: not a table of numbers ({exc})") from None
    x, y = torch.from_numpy(data[:, :2].copy()), torch.from_numpy(data[:, 2].copy())
    parts = [torch.from_numpy(i) for i in three_way_split(len(y), seed)]
    return DataBundle(*(Split(x[i], y[i]) for i in parts), DataInfo(task="regression", input_shape=(2,)))


def define(trial, info):
    return {"width": trial.suggest_int("width", 2, 4)}


def build(config, info):
    return nn.Sequential(nn.Linear(2, config["width"]), nn.Tanh(), nn.Linear(config["width"], 1))


@hookimpl
def plugin_info():
    return PluginInfo(name="tables", default_dataset="table", default_space="tiny", default_metric="rmse")


@hookimpl
def register_datasets(register):
    register(Dataset("table", "regression", load_table, needs_path=True))


@hookimpl
def register_spaces(register):
    register(SearchSpace("tiny", ("regression",), define, build))


@hookimpl
def register_metrics(register):
    register(metrics.RMSE)
'''


def test_datasets_needing_data_are_checked_with_sample_data(cli, tmp_path):
    plugin = tmp_path / "tables.py"
    plugin.write_text(FILE_PLUGIN)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    sample = tmp_path / "sample.csv"
    np.savetxt(sample, np.c_[x, x[:, 0] - x[:, 1]], delimiter=",")
    without = _by(check_plugin("tables", plugin_paths=[str(plugin)], n_configs=1))
    assert without[("dataset", "dataset table")].status == "skip"
    assert "needs --data PATH" in without[("dataset", "dataset table")].reason
    assert without[("order", "metric rmse")].status == "pass"  # a toy regression example instead
    r = cli("plugins", "check", "tables", "--plugin-path", plugin, "--data", f"table={sample}", "--format", "json")
    assert r.code == 0, r.out
    rows = {(row["check"], row["target"]): row for row in json.loads(r.out)}
    assert rows[("model", "space tiny on table")]["status"] == "pass"
    assert "targets of table" in rows[("order", "metric rmse")]["reason"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n")
    r = cli("plugins", "check", "tables", "--plugin-path", plugin, "--data", f"table={bad}", "--format", "json")
    assert r.code == 1
    row = next(row for row in json.loads(r.out) if row["check"] == "dataset")
    assert row["status"] == "fail" and "not a table of numbers" in row["reason"]


def test_the_kit_samples_all_spaces_into_one_study(tmp_path):
    """Two spaces whose training functions give one parameter different choices cannot share a
    study (Optuna refuses it mid-search); the kit says so. Model parameters may clash: they are
    stored per space."""
    plugin = tmp_path / "clash.py"
    plugin.write_text(Path(FIXTURES.parent / "data" / "tinyplug.py").read_text().replace(
        'register(SearchSpace("boom", ALL, define_linear, build_boom, train=train_small))',
        'register(SearchSpace("wide", ALL, lambda t, i: {"hidden": t.suggest_categorical("hidden", [64, 128])},\n'
        '                         build_linear, train=train_wide))\n'
        '    register(SearchSpace("boom", ALL, define_linear, build_boom, train=train_small))').replace(
        "def build_boom(cfg, info):",
        "def train_wide(trial, info):\n"
        "    return suggest_training(trial, info, epochs=(3, 5), batch_sizes=(64, 128), optimizers=('adam',))\n\n\n"
        "def build_boom(cfg, info):"))
    results = _by(check_plugin("clash", plugin_paths=[str(plugin)], n_configs=1))
    shared = results[("study", "spaces on blobs")]
    assert shared.status == "fail" and "batch_size" in shared.reason and "training parameters" in shared.reason
    assert results[("define", "space wide on blobs")].status == "pass"  # fine on its own


ARRAY_PLUGIN = '''
import json
import pickle
from pathlib import Path

import numpy as np
import torch
from automl import DataBundle, DataInfo, Dataset, PluginInfo, SearchSpace, Split, UserError, hookimpl, metrics
from automl.data import predict_rows, three_way_split


def load_blobs(path, options, seed):
    """Two classes of 3 features: class 1 is centred at (2, 2, 2), class 0 at the origin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    x = (rng.normal(size=(300, 3)) + 2.0 * y[:, None]).astype(np.float32)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    parts = [torch.from_numpy(i) for i in three_way_split(300, seed, stratify=y)]
    return DataBundle(*(Split(X[i], Y[i]) for i in parts),
                      DataInfo("classification", num_classes=2, input_shape=(3,), class_names=["low", "high"]))


def predict_blobs(model, path, ctx):
    try:
        x = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise UserError(f"{path}: not rows of 3 numbers ({exc})") from None
    return predict_rows(model, torch.from_numpy(x), range(len(x)), ctx)


class Centroids:
    """Nearest centroid: class probabilities are a softmax of minus the squared distances."""

    def __init__(self, cfg, info):
        self.temperature, self.centroids = float(cfg["temperature"]), None

    def fit(self, train, val, info):
        x, y = train.inputs.numpy(), train.targets.numpy()
        self.centroids = np.stack([x[y == c].mean(0) for c in range(info.num_classes)])

    def predict(self, inputs):
        d = ((inputs.numpy()[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        z = np.exp(-(d - d.min(1, keepdims=True)) / self.temperature)
        return z / z.sum(1, keepdims=True)

    def save(self, folder):
        np.save(Path(folder) / "centroids.npy", self.centroids, allow_pickle=False)

    def load(self, folder):
        self.centroids = np.load(Path(folder) / "centroids.npy", allow_pickle=False)


class Forgetful(Centroids):
    """Broken on purpose: save keeps the config but loses the fitted centroids."""

    def save(self, folder):
        (Path(folder) / "config.json").write_text(json.dumps({"temperature": self.temperature}))

    def load(self, folder):
        self.temperature = json.loads((Path(folder) / "config.json").read_text())["temperature"]
        self.centroids = np.zeros((2, 3))


class Pickler(Centroids):
    """Broken on purpose: save pickles (under a name that does not say so)."""

    def save(self, folder):
        (Path(folder) / "state.bin").write_bytes(pickle.dumps(self.centroids))

    def load(self, folder):
        self.centroids = pickle.loads((Path(folder) / "state.bin").read_bytes())


def define(trial, info):
    return {"temperature": trial.suggest_float("temperature", 0.5, 2.0)}


def build_centroids(config, info):
    return Centroids(config, info)


def build_forgetful(config, info):
    return Forgetful(config, info)


def build_pickler(config, info):
    return Pickler(config, info)


@hookimpl
def plugin_info():
    return PluginInfo(name="arrays", default_dataset="blobs", default_space="centroids", default_metric="accuracy")


@hookimpl
def register_datasets(register):
    register(Dataset("blobs", "classification", load_blobs, predict_new=predict_blobs))


@hookimpl
def register_spaces(register):
    register(SearchSpace("centroids", ("classification",), define, build_centroids))
    register(SearchSpace("forgetful", ("classification",), define, build_forgetful))
    register(SearchSpace("pickler", ("classification",), define, build_pickler))


@hookimpl
def register_metrics(register):
    register(metrics.ACCURACY)
'''


def test_kit_checks_the_array_model_protocol_and_predict_new(tmp_path):
    """Models that are not torch modules: a nearest-centroid ArrayModel passes; one whose save
    loses its fitted state, and one that saves a pickle, fail with the reason named. The
    dataset's predict_new runs with the passing model on new rows."""
    from automl.plugins import load_registry

    plugin = tmp_path / "arrays.py"
    plugin.write_text(ARRAY_PLUGIN)
    registry = load_registry([str(plugin)], only={"arrays"})  # this plugin only, loaded once for three runs
    rows = tmp_path / "new.csv"
    np.savetxt(rows, [[0.1, -0.2, 0.0], [2.1, 1.9, 2.2], [1.8, 2.3, 2.0]], delimiter=",")
    results = _by(check_plugin("arrays", registry=registry, n_configs=1, new_data={"blobs": rows}))
    good = results[("model", "space centroids on blobs")]
    assert good.status == "pass" and "load gives identical predictions" in good.reason, good
    assert "save wrote centroids.npy (no pickle)" in good.reason
    forgetful = results[("model", "space forgetful on blobs")]
    assert forgetful.status == "fail", forgetful
    assert "predicts differently" in forgetful.reason and "save() must keep everything predict() needs" \
        in forgetful.reason
    pickler = results[("model", "space pickler on blobs")]
    assert pickler.status == "fail" and "wrote pickle" in pickler.reason and "state.bin: a pickle stream" \
        in pickler.reason, pickler
    predicted = results[("predict", "space centroids on blobs")]
    assert predicted.status == "pass" and "3 rows from new.csv" in predicted.reason, predicted
    assert {k for k, r in results.items() if r.status == "fail"} == {("model", "space forgetful on blobs"),
                                                                      ("model", "space pickler on blobs")}
    # without new data the predict check is skipped, saying what to give; refused new data fails
    skipped = _by(check_plugin("arrays", registry=registry, n_configs=1))[("predict", "dataset blobs")]
    assert skipped.status == "skip" and "new_data={'blobs': PATH}" in skipped.reason
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n")
    refused = _by(check_plugin("arrays", registry=registry, n_configs=1, new_data={"blobs": bad}))
    assert refused[("predict", "space centroids on blobs")].status == "fail"
    assert "not rows of 3 numbers" in refused[("predict", "space centroids on blobs")].reason


def test_find_pickles_sees_pickle_streams_object_arrays_and_zips(tmp_path):
    import pickle
    import zipfile

    import torch

    from automl.testing import find_pickles

    (tmp_path / "ok.npy").write_bytes(b"")
    np.save(tmp_path / "ok.npy", np.arange(3), allow_pickle=False)
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert find_pickles(tmp_path) == []
    (tmp_path / "blob").write_bytes(pickle.dumps({"a": 1}))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as z:
        z.writestr("inner/model.pkl", b"not even a pickle")
    found = "\n".join(find_pickles(tmp_path))
    assert "blob: a pickle stream" in found
    assert "objects.npy: a numpy array of Python objects" in found
    assert "weights.pt!" in found and "data.pkl" in found
    assert "outer.zip!inner/model.pkl: a pickle file (by its name)" in found
