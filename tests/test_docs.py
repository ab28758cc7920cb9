"""docs/writing-plugins.md covers every hook, every hook is exercised by a test, and the
complete example plugin in the guide really works (as datasette's test_docs.py does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from automl import hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-plugins.md"
TESTS = Path(__file__).resolve().parent


def hook_names() -> list[str]:
    """Every hook in automl/hookspecs.py (functions pluggy marked as specs)."""
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), f"{hookspecs.PROJECT}_spec"))


def undocumented(hooks: list[str], doc: str) -> list[str]:
    """Hooks without a heading of their own (``### `hook(...)```) in the guide."""
    headings = re.findall(r"^#{2,4} +(.+)$", doc, flags=re.MULTILINE)
    return [h for h in hooks if not any(re.search(rf"`{h}\(", text) for text in headings)]


def untested(hooks: list[str], sources: dict[str, str]) -> list[str]:
    """Hooks that no file under tests/ implements (``def hook(``): an implementation in a
    test plugin is what gets fired by the tests."""
    return [h for h in hooks if not any(re.search(rf"^\s*def {h}\(", text, flags=re.MULTILINE)
                                        for text in sources.values())]


def test_spec_list_is_real():
    hooks = hook_names()
    assert {"plugin_info", "register_datasets", "on_epoch_end", "register_commands"} <= set(hooks)


def test_every_hook_has_a_section_in_the_guide():
    missing = undocumented(hook_names(), GUIDE.read_text())
    assert not missing, f"hooks without a section in {GUIDE.name}: {missing}"


def test_every_hook_is_implemented_by_a_test_plugin():
    sources = {str(p): p.read_text() for p in TESTS.rglob("*.py") if p.name != "test_docs.py"}
    missing = untested(hook_names(), sources)
    assert not missing, f"hooks no test exercises: {missing}"


def test_the_checks_catch_a_new_hook():
    doc = "# Guide\n\n### `plugin_info() -> PluginInfo`\n\ntext mentioning on_new_thing\n"
    assert undocumented(["plugin_info", "on_new_thing"], doc) == ["on_new_thing"]
    assert undocumented(["plugin_info"], doc) == []
    sources = {"a.py": "@hookimpl\ndef plugin_info():\n    pass\n# on_new_thing is only mentioned\n"}
    assert untested(["plugin_info", "on_new_thing"], sources) == ["on_new_thing"]


def test_every_hook_signature_in_the_guide_matches_the_spec():
    import inspect

    doc = GUIDE.read_text()
    for name in hook_names():
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)
        heading = re.search(rf"^#{{2,4}} +`{name}\(([^)]*)\)", doc, flags=re.MULTILINE)
        assert heading, name
        documented = re.findall(r"(?:^|,\s*)(\w+)\s*:", heading.group(1))
        assert documented == params, (name, documented, params)


def example(name: str) -> str:
    doc = GUIDE.read_text()
    match = re.search(rf"<!-- example: {name} -->\s*```python\n(.*?)```", doc, flags=re.DOTALL)
    assert match, f"example {name} not found"
    return match.group(1)


def test_the_complete_example_plugin_passes_the_kit(tmp_path):
    from automl.testing import check_plugin

    code = example("moons")
    assert 30 <= len(code.strip().splitlines()) <= 60
    path = tmp_path / "automl_moons.py"
    path.write_text(code)
    results = check_plugin("automl_moons", plugin_paths=[str(path)], n_configs=1)
    failed = [str(r) for r in results if r.status == "fail"]
    assert not failed, failed
    checked = {(r.check, r.target) for r in results if r.status == "pass"}
    assert {("dataset", "dataset moons"), ("model", "space mlp on moons"), ("order", "metric error_rate")} <= checked


@pytest.mark.parametrize("needle", ["pip install", "automl.plugins", "automl_check", "--plugin-path",
                                    "AUTOML_PLUGINS", "twine upload", "automl plugins new", "--log tensorboard"])
def test_guide_covers_the_journey(needle):
    assert needle in GUIDE.read_text()
