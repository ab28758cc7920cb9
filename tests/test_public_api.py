"""First-party plugins are written like third-party ones: they import automl's public API only."""

import ast
from pathlib import Path

import automl

ROOT = Path(__file__).resolve().parents[1]
#: What a plugin may import: the contract and the helper modules.
PUBLIC_MODULES = ("automl", "automl.metrics", "automl.training", "automl.data", "automl.testing", "automl.types",
                  "automl.errors", "automl.hookspecs")


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno


def test_plugins_import_only_public_automl_api():
    offenders = []
    files = list((ROOT / "plugins").rglob("*.py"))
    assert files, "no first-party plugin found"
    for path in files:
        for module, names, line in _imports(path):
            if module == "automl" or module.startswith("automl."):
                parts = module.split(".")
                if any(p.startswith("_") for p in parts[1:]) or any(n.startswith("_") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {module} {names}")
                elif module not in PUBLIC_MODULES:
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {module} is not public")
                for n in names:
                    if module == "automl" and n not in automl.__all__:
                        offenders.append(f"{path.relative_to(ROOT)}:{line}: automl.{n} is not in __all__")
    assert not offenders, "\n".join(offenders)


def test_public_api_names_exist():
    for name in automl.__all__:
        assert hasattr(automl, name), name


def test_no_unsafe_loads_in_source():
    """No pickle load or torch.load without weights_only=True is reachable from stored files."""
    bad = []
    for path in list((ROOT / "automl").rglob("*.py")) + list((ROOT / "plugins").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "pickle.load" in line or ("torch.load(" in line and "weights_only=True" not in line):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)
