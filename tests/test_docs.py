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


#: The helper modules a plugin may import, each with an API page (docs/api/module-*.md);
#: ``automl.metrics`` is also a name of ``automl`` (docs/api/metrics.md).
HELPER_MODULES = ("training", "data", "testing", "types", "errors", "hookspecs", "pytest-plugin")


def api_page(name: str) -> str:
    """The docs/api page of a name of ``automl.__all__`` (without ``.md``)."""
    return "version" if name == "__version__" else name


def test_every_public_name_has_an_api_page_source():
    import automl

    api = ROOT / "docs" / "api"
    missing = [n for n in automl.__all__ if not (api / f"{api_page(n)}.md").is_file()]
    missing += [m for m in HELPER_MODULES if not (api / f"module-{m}.md").is_file()]
    assert not missing, f"no page under docs/api/ for: {missing}"
    nav = (ROOT / "mkdocs.yml").read_text()
    assert all(f"api/{p.name}" in nav for p in api.glob("*.md")), "every API page is in mkdocs.yml's nav"


def test_mkdocs_strict_build_documents_every_public_name(tmp_path):
    """``mkdocs build --strict`` (what CI runs) passes, and the site has a page with the
    docstring of every name in ``automl.__all__`` and of each helper module."""
    import os
    import subprocess
    import sys

    import automl

    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install 'automl[docs]')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (pip install 'automl[docs]')")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]

    def text_of(page: Path) -> str:
        html = page.read_text()
        article = html[html.index("<article"):html.index("</article>")]
        return " ".join(re.sub(r"<[^>]+>", " ", article).split())

    thin = []
    for name in automl.__all__:
        body = text_of(site / "api" / api_page(name) / "index.html")
        if f"automl.{name}" not in body or len(body) < len(f"automl.{name}") + 40:
            thin.append(name)  # a heading and no docstring
    for module in HELPER_MODULES:
        body = text_of(site / "api" / f"module-{module}" / "index.html")
        if len(body) < 200:
            thin.append(module)
    assert not thin, f"API pages without a docstring: {thin}"
    guide = text_of(site / "writing-plugins" / "index.html")
    assert "predict_new" in guide and "three_way_split" in guide and "patience" in guide
