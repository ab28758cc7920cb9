"""The plugin manager: validation of what is registered, and isolation of broken plugins."""

from pathlib import Path

import pytest

from automl import Dataset, Metric, SearchSpace, UserError
from automl.plugins import LoadedPlugin, PluginError, _register_into, load_registry

DATA = Path(__file__).parent / "data"


def test_entry_point_plugins_found():
    reg = load_registry()
    assert "vision" in reg.plugins and reg.plugins["vision"].ok
    vision = reg.get("vision")
    assert {"digits"} <= set(vision.datasets) and {"mlp", "cnn"} <= set(vision.spaces)
    assert vision.info.default_dataset == "digits"


def test_path_plugin_and_broken_plugin_isolated():
    reg = load_registry([str(DATA / "tinyplug.py"), str(DATA / "badplug.py")])
    assert reg.get("tinyplug").datasets["line"].task == "regression"
    bad = reg.plugins["badplug"]
    assert not bad.ok and "direction" in bad.error and "upwards" in bad.error
    with pytest.raises(UserError, match="badplug.*broken"):
        reg.get("badplug")
    assert reg.get("vision").ok  # others unaffected


def test_unknown_plugin_names_the_valid_ones():
    reg = load_registry()
    with pytest.raises(UserError, match="unknown plugin 'nosuch'; plugins found: .*vision"):
        reg.get("nosuch")


@pytest.mark.parametrize("obj, message", [
    ("not a dataset", "expected Dataset"),
    (Dataset("Bad Name", "classification", lambda *a: None), "lowercase identifier"),
    (Dataset("ok", "clustering", lambda *a: None), "declares tasks"),
    (Dataset("ok2", "classification", "not callable"), "not callable"),
])
def test_register_validation(obj, message):
    register = _register_into(LoadedPlugin("p", "1", "test"), "datasets")
    with pytest.raises(PluginError, match=message):
        register(obj)


def test_register_twice_rejected():
    plugin = LoadedPlugin("p", "1", "test")
    register = _register_into(plugin, "spaces")
    space = SearchSpace("s", ("classification",), lambda t, i: {}, lambda c, i: None)
    register(space)
    with pytest.raises(PluginError, match="registered twice"):
        register(space)


def test_metric_direction_validated():
    register = _register_into(LoadedPlugin("p", "1", "test"), "metrics")
    register(Metric("good", "minimize", ("regression",), lambda y, p: 0.0))
    with pytest.raises(PluginError, match="tasks"):
        register(Metric("bad", "minimize", "regression", lambda y, p: 0.0))


def test_raising_hook_marks_plugin_broken(tmp_path):
    f = tmp_path / "raiser.py"
    f.write_text("from automl import hookimpl\n\n@hookimpl\ndef register_datasets(register):\n"
                 "    raise ValueError('disk on fire')\n")
    reg = load_registry([str(f)])
    assert "disk on fire" in reg.plugins["raiser"].error
    assert reg.get("vision").ok


def test_default_spaces_are_those_that_fit_the_task():
    """``PluginInfo.default_spaces``: searched together without --space, filtered by task."""
    from automl.plugins import load_registry
    from automl.study.resolve import resolve

    registry = load_registry(only={"recsys"})
    assert [s.name for s in resolve(registry, "recsys").spaces] == ["mf", "ease", "itemknn"]
    assert [s.name for s in resolve(registry, "recsys", "ratings").spaces] == ["mf"]  # regression
    assert [s.name for s in resolve(registry, "recsys", spaces=["ncf"]).spaces] == ["ncf"]


def test_deployment_spaces_replace_the_defaults_only_for_deployment_aware_searches(tmp_path):
    """``PluginInfo.deployment_spaces``: a search with a figure among its objectives or
    constraints and no --space spans several families (vision: cnn, mlp, linear); any other search,
    and any --space, is unchanged. A name that is not registered breaks the plugin."""
    from automl.plugins import load_registry
    from automl.study.resolve import resolve
    from automl.study.spec import StudySpec

    registry = load_registry(only={"vision"})
    assert [s.name for s in resolve(registry, "vision").spaces] == ["cnn"]
    assert [s.name for s in resolve(registry, "vision", deployment=True).spaces] == ["cnn", "mlp", "linear"]
    assert [s.name for s in resolve(registry, "vision", spaces=["resnet"], deployment=True).spaces] == ["resnet"]
    assert StudySpec(plugin="vision", objectives=["accuracy", "latency_ms"]).deployment_aware
    assert StudySpec(plugin="vision", constraints=["size_mb<=1"]).deployment_aware
    assert not StudySpec(plugin="vision", objectives=["accuracy", "f1_macro"]).deployment_aware
    assert not StudySpec(plugin="vision", constraints=["accuracy>=0.9"]).deployment_aware

    f = tmp_path / "wrongdeploy.py"
    f.write_text("from automl import PluginInfo, SearchSpace, hookimpl\n\n@hookimpl\ndef plugin_info():\n"
                 "    return PluginInfo(name='wrongdeploy', deployment_spaces=('nope',))\n")
    assert "deployment_spaces 'nope' is not registered" in load_registry([str(f)]).plugins["wrongdeploy"].error
