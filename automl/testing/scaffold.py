"""``automl plugins new NAME``: write an installable plugin project from templates.

The templates live in ``automl/testing/templates/plugin/`` (package data). In their paths,
``PACKAGE`` and ``NAME`` are replaced by the package and plugin names and a ``.tmpl`` suffix
is dropped (``dot-`` becomes ``.``); in their text, ``{{name}}``, ``{{package}}``,
``{{dist}}`` and ``{{automl_version}}`` are replaced. The project is written to a temporary
folder next to the target and renamed into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

from automl._version import __version__
from automl.errors import UserError
from automl.plugins import ENTRY_POINT_GROUP

TEMPLATES = Path(__file__).parent / "templates" / "plugin"
NAME_OK = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def names(name: str) -> dict[str, str]:
    """The names a plugin project uses: plugin (entry point), import package, distribution."""
    return {"name": name, "package": f"automl_{name}", "dist": f"automl-{name.replace('_', '-')}",
            "automl_version": __version__}


def validate(name: str) -> None:
    """Raise :class:`UserError` unless ``name`` can be a new plugin's name."""
    if not NAME_OK.match(name) or name.endswith("_") or "__" in name:
        raise UserError(f"invalid plugin name {name!r}: use 1 to 40 lowercase letters, digits and single "
                        "underscores, starting with a letter (e.g. acme or acme_images)")
    taken = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in taken:
        raise UserError(f"plugin name {name!r} is already used by an installed plugin ({taken[name]}); "
                        "choose another name")


def render(text: str, values: dict[str, str]) -> str:
    """Fill ``{{key}}`` placeholders."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def scaffold(name: str, directory: str | Path = ".") -> Path:
    """Create ``DIRECTORY/NAME``, an installable plugin project, and return its path.

    It holds a ``pyproject.toml`` with the ``automl.plugins`` entry point, a package with a
    generated dataset, a search space and a metric, a README, and tests that use the
    conformance kit. Raises :class:`UserError` for an invalid name or an existing folder.
    """
    validate(name)
    parent = Path(directory).expanduser()
    target = parent / name
    if target.exists():
        raise UserError(f"{target} already exists; choose another name or --dir")
    if parent.exists() and not parent.is_dir():
        raise UserError(f"--dir {str(directory)!r} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --dir {str(directory)!r}: {exc.strerror or exc}") from None
    values = names(name)
    templates = sorted(p for p in TEMPLATES.rglob("*.tmpl") if p.is_file())
    if not templates:  # pragma: no cover - a broken installation
        raise UserError(f"automl's plugin templates are missing from {TEMPLATES}; reinstall automl")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        for src in templates:
            rel = src.relative_to(TEMPLATES).as_posix()[: -len(".tmpl")]
            rel = rel.replace("PACKAGE", values["package"]).replace("NAME", name).replace("dot-", ".")
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(render(src.read_text(), values))
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
