"""Typing the cells of a user's table (read by :func:`automl.read_table`).

Everything here is about the file, not about learning: no statistic is computed here, so
nothing can leak from the validation or test rows (see :mod:`._prep` for what is fitted).
"""

from __future__ import annotations

import math
from typing import Any

#: Cell values read as missing (case-insensitive, surrounding blanks ignored).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


def is_missing(value: Any) -> bool:
    """Whether a cell is missing: ``None``, a float NaN or one of :data:`MISSING`."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING


def to_float(value: Any) -> float | None:
    """A cell as a finite float, or ``None`` when it is missing, not a number or infinite."""
    if is_missing(value):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def is_numeric(values: list[Any]) -> bool:
    """A column is numeric when it has a value and every value that is not missing parses."""
    present = [v for v in values if not is_missing(v)]
    return bool(present) and all(to_float(v) is not None for v in present)
