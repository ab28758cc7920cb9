"""Output anywhere: the listing commands' ``--format json|csv`` is the data alone on standard
output (no colour, no progress), and piped tables are not wrapped at 80 columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

TINY = str(Path(__file__).parent / "data" / "tinyplug.py")


def test_listing_commands_are_machine_clean(cli, studies, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    empty = cli("studies", "--format", "csv")
    assert empty.code == 0 and empty.out.splitlines() == [
        "name,plugin,dataset,metric,direction,complete,finished,target,failed,best_value,storage,error"]
    for study in ("a", "b"):
        r = cli("search", "--plugin-path", TINY, "--plugin", "tinyplug", "--trials", "2", "--max-epochs", "1",
                "--study", study, "--ensemble", "0")
        assert r.code == 0, r.err
    outputs = {}
    for args in (["studies"], ["plugins", "--plugin-path", TINY], ["compare", "a", "b"]):
        for fmt in ("json", "csv"):
            r = cli(*args, "--format", fmt)
            assert r.code == 0, (args, fmt, r.err)
            assert "\x1b[" not in r.out and "━" not in r.out, (args, fmt)
            outputs[(args[0], fmt)] = r.out
    assert [s["name"] for s in json.loads(outputs[("studies", "json")])] == ["a", "b"]
    listed = list(csv.DictReader(io.StringIO(outputs[("studies", "csv")])))
    assert [s["name"] for s in listed] == ["a", "b"] and listed[0]["finished"] == "2"
    plugins = {p["name"]: p for p in csv.DictReader(io.StringIO(outputs[("plugins", "csv")]))}
    assert plugins["tinyplug"]["status"] == "ok" and "linear" in plugins["tinyplug"]["spaces"].split(";")
    compared = list(csv.DictReader(io.StringIO(outputs[("compare", "csv")])))
    assert [c["name"] for c in compared] == ["a", "b"]

    # a piped table is as wide as it needs: no row of the leaderboard is broken over lines
    table = cli("leaderboard", "a", "--columns", "all").out.splitlines()
    header = next(i for i, line in enumerate(table) if line.split()[:2] == ["rank", "trial"])
    assert len(table[header + 1:header + 3]) == 2 and all("COMPLETE" in line for line in table[header + 1:header + 3])
    assert max(map(len, table)) > 80
