"""Reading a user's table file (CSV, TSV or JSON lines) into named columns.

Shared by every plugin that reads tables (tabular, text, ...), so that they accept the same
files and refuse bad ones with the same one-line errors. The standard library's ``csv`` and
``json`` do the parsing; this module adds the checks a user needs to hear about (an empty
file, a duplicate or empty column name, a row with the wrong number of fields) instead of
rows silently shifted into the wrong columns.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from automl._errors import UserError

_DELIMITERS = ",;\t|"
JSON_LINES = (".jsonl", ".ndjson")


def read_table(path: str | Path, sniff: bool = True) -> dict[str, list[Any]]:
    """Read a table file with named columns into ``{column: [cell, ...]}``, in file order.

    - ``.jsonl`` / ``.ndjson``: one JSON object per line; a key missing from a line is
      ``None`` there. Cells keep their JSON types.
    - ``.tsv`` / ``.tab``: tab-separated with a header row.
    - anything else: a header row, the delimiter sniffed among comma, semicolon, tab and pipe
      (``sniff=False``: a comma; for cells of free text, where a sentence full of semicolons
      can fool the sniffer). Cells are strings.

    Blank lines are skipped (a row of empty cells is kept: its cells are missing). Raises :class:`automl.UserError` (one line, naming the file and
    the line) for a file that is empty, not UTF-8, has no rows, an empty or duplicate column
    name, a CSV row with the wrong number of fields, or a JSON line that is not an object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a UTF-8 text file") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if not text.strip():
        raise UserError(f"{p}: the file is empty")
    if p.suffix.lower() in JSON_LINES:
        return _json_lines(p, text)
    return _delimited(p, text, sniff)


def _json_lines(p: Path, text: str) -> dict[str, list[Any]]:
    rows: list[dict[str, Any]] = []
    names: dict[str, None] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}: line {n} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{p}: line {n} is not a JSON object")
        names.update(dict.fromkeys(str(k) for k in row))
        rows.append({str(k): v for k, v in row.items()})
    return {name: [row.get(name) for row in rows] for name in names}


def _delimited(p: Path, text: str, sniff: bool) -> dict[str, list[Any]]:
    if p.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    elif not sniff:
        delimiter = ","
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=_DELIMITERS).delimiter
        except csv.Error:
            delimiter = ","
    kind = "TSV" if delimiter == "\t" else "CSV"
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long texts in one cell are fine
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        # A blank line is no row; a row of empty cells is one (its cells are missing values).
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise UserError(f"{p}: not a valid {kind} file ({exc})") from None
    seen: set[str] = set()
    for name in header:
        if not name:
            raise UserError(f"{p}: the header has an empty column name")
        if name in seen:
            raise UserError(f"{p}: the header names column {name!r} twice")
        seen.add(name)
    if not rows:
        raise UserError(f"{p}: the file has a header but no rows")
    columns: dict[str, list[Any]] = {name: [] for name in header}
    for line, row in rows:
        if len(row) != len(header):
            raise UserError(f"{p}: line {line} has {len(row)} fields, the header has {len(header)}")
        for name, cell in zip(header, row):
            columns[name].append(cell)
    return columns
