"""Reading a user's table (CSV or TSV) into named columns of strings, and typing them.

Everything here is about the file, not about learning: no statistic is computed here, so
nothing can leak from the validation or test rows (see :mod:`._prep` for what is fitted).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from automl import UserError

#: Cell values read as missing (case-insensitive, surrounding blanks ignored).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
_DELIMITERS = ",;\t|"


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


def read_table(path: str | Path) -> dict[str, list[str]]:
    """Read a CSV or TSV file with a header row into ``{column: [cell, ...]}``.

    The delimiter is a tab for ``.tsv``/``.tab`` files and sniffed otherwise (comma,
    semicolon, tab or pipe). Raises :class:`automl.UserError` for an empty or unreadable
    file, a duplicate column name or a row with the wrong number of fields.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a UTF-8 text file") from None
    if not text.strip():
        raise UserError(f"{p}: the file is empty")
    if p.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=_DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise UserError(f"{p}: not a valid CSV file ({exc})") from None
    seen: set[str] = set()
    for name in header:
        if not name:
            raise UserError(f"{p}: the header has an empty column name")
        if name in seen:
            raise UserError(f"{p}: the header names column {name!r} twice")
        seen.add(name)
    columns: dict[str, list[str]] = {name: [] for name in header}
    for line, row in rows:
        if len(row) != len(header):
            raise UserError(f"{p}: line {line} has {len(row)} fields, the header has {len(header)}")
        for name, cell in zip(header, row):
            columns[name].append(cell)
    if not rows:
        raise UserError(f"{p}: the file has a header but no rows")
    return columns
