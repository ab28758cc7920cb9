"""`automl plugins new`: name checks, the files written, and the whole journey of a plugin
author in a fresh virtual environment (install, its tests, a search)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib


@pytest.mark.parametrize("name, needle", [
    ("Acme", "invalid plugin name 'Acme'"),
    ("1acme", "invalid plugin name"),
    ("ac-me", "invalid plugin name"),
    ("acme_", "invalid plugin name"),
    ("a" * 41, "invalid plugin name"),
    ("vision", "already used by an installed plugin"),
])
def test_bad_names_are_refused_in_one_line(cli, tmp_path, name, needle):
    r = cli("plugins", "new", name, "--dir", str(tmp_path))
    assert r.code == 2 and needle in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused(cli, tmp_path):
    (tmp_path / "acme").mkdir()
    r = cli("plugins", "new", "acme", "--dir", str(tmp_path))
    assert r.code == 2 and "already exists" in r.err and len(r.err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["acme"]
    (tmp_path / "file").write_text("x")
    r = cli("plugins", "new", "acme", "--dir", str(tmp_path / "file"))
    assert r.code == 2 and "is not a folder" in r.err


def test_new_writes_an_installable_project(cli, tmp_path):
    r = cli("plugins", "new", "widgets", "--dir", str(tmp_path / "src"))
    assert r.code == 0, r.err
    root = tmp_path / "src" / "widgets"
    assert f"pip install -e {root}" in r.out
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [".gitignore", "README.md", "automl_widgets/__init__.py", "automl_widgets/_data.py",
                     "automl_widgets/_model.py", "pyproject.toml", "tests/test_widgets.py"]
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "automl-widgets"
    assert meta["project"]["entry-points"]["automl.plugins"] == {"widgets": "automl_widgets"}
    assert meta["tool"]["setuptools"]["packages"] == ["automl_widgets"]
    for path in root.rglob("*.py"):
        text = path.read_text()
        compile(text, str(path), "exec")
        assert "{{" not in text and "automl._" not in text  # filled in; public API only
    assert "automl_check(\"widgets\")" in (root / "tests" / "test_widgets.py").read_text()
    assert "automl search --plugin widgets" in (root / "README.md").read_text()


def test_scaffolded_plugin_end_to_end_in_a_venv(cli, tmp_path):
    """The author's journey: new, pip install -e, pytest, automl search (one test: the slowest)."""
    name = "kitdemo"
    assert cli("plugins", "new", name, "--dir", tmp_path / "work").code == 0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOML_PLUGINS",
                                                              "AUTOML_DISABLE_PLUGIN_AUTOLOAD")}
    env["AUTOML_STUDIES"] = str(tmp_path / "studies")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(a) for a in args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    venv = tmp_path / "venv"
    # The author's venv, built from what this interpreter has (whether it is the system Python
    # or a virtual environment): its site folders are added to the new venv by a .pth file, in
    # this interpreter's order, so automl, torch, pytest, pip and setuptools come from here
    # without a network; the plugin itself is installed into the new venv only.
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    [site_dir] = list((venv / "lib").glob("python3*/site-packages"))
    here = [p for p in sys.path if p and Path(p).is_dir() and Path(p).name in ("site-packages", "dist-packages")]
    (site_dir / "_automl_test_parent.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in here) + "\n")
    py = venv / "bin" / "python"
    run(py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "-e", tmp_path / "work" / name)
    assert list((venv / "lib").glob("python3*/site-packages/automl_kitdemo-0.1.0.dist-info"))
    assert not list(Path(sys.prefix).glob("lib/python3*/site-packages/automl_kitdemo-0.1.0.dist-info"))
    tests = run(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", tmp_path / "work" / name)
    assert "3 passed" in tests.stdout
    search = run(py, "-m", "automl", "search", "--plugin", name, "--trials", "3", "--max-epochs", "3",
                 "--study", "demo")
    assert "best error_rate" in search.stdout and "dataset signals" in search.stdout
    assert (tmp_path / "studies" / "demo" / "best" / "model.pt").exists()
