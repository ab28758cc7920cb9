"""Exceptions with a meaning for the CLI and the engine."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: an unknown name, a bad path, a bad number.

    The CLI prints its message as one line and exits with code 2, with no traceback. Plugins
    raise it from dataset loaders for a bad ``--data`` path or bad file contents. The message
    should say what is wrong and, where there is a list, what the valid choices are.
    """


class TrialFailed(Exception):
    """A trial cannot go on (NaN loss, out of memory...). Only that trial is marked failed,
    with this message as its reason; the study goes on."""
