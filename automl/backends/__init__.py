"""Execution backends: how a study's trials run. Local worker processes and Ray Tune are
peers behind one protocol (:class:`automl.backends.base.Backend`), looked up by name.

- ``local`` (:mod:`automl.backends.local`): ``--workers N`` processes on this machine.
- ``ray`` (:mod:`automl.backends.ray`): Ray Tune trials, locally or on a cluster.
- :mod:`automl.backends.devices`: which GPU or how many CPU threads each trial gets.

A backend module is imported only when a search uses it (Ray is heavy).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from automl.errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from automl.backends.base import Backend

#: ``--backend`` name -> the class implementing it, as ``module:Class``.
BACKENDS = {"local": "automl.backends.local:LocalBackend", "ray": "automl.backends.ray:RayBackend"}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a :class:`UserError` naming the choices otherwise."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choices: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(import_module(module), cls)()
