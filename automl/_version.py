"""The automl version, in a module of its own so that any module can read it without
importing the package's public namespace."""

__version__ = "0.1.0"
"""The installed automl's version (``automl --version`` prints it; a study stores the version
that made it)."""
