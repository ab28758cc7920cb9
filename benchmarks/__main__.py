"""Run the benchmark suite: ``python -m benchmarks [--quick] [--only NAME ...]``.

Each section's ``run(quick)`` returns a dict; the runner adds the machine and timings, writes
everything to ``benchmarks/results/latest.json`` (or ``--out``) and prints a markdown table
whose every figure is a ratio to a baseline measured in the same run. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

#: Section name -> module; cheap ones first, the long time-to-accuracy race last.
SECTIONS = {
    "cli": "benchmarks.bench_cli",
    "engine": "benchmarks.bench_engine",
    "trainer": "benchmarks.bench_trainer",
    "storage": "benchmarks.bench_storage",
    "scaling": "benchmarks.bench_scaling",
    "pruning": "benchmarks.bench_pruning",
    "ray": "benchmarks.bench_ray",
    "chaos": "benchmarks.bench_chaos",
    "accuracy": "benchmarks.bench_accuracy",
    "quality": "benchmarks.bench_quality",
    "budget": "benchmarks.bench_budget",
}
NEEDS_RAY = {"ray"}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds, for the smoke test)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these sections (repeat or comma-separate): {', '.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    p.add_argument("--show", type=Path, metavar="JSON", help="print the table of an earlier run's JSON and exit")
    args = p.parse_args(argv)
    args.only = [s.strip() for item in args.only for s in item.split(",") if s.strip()]
    unknown = [s for s in args.only if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choices: {', '.join(SECTIONS)}")
    return args


def _run_section(name: str, quick: bool) -> dict[str, Any]:
    if name in NEEDS_RAY:
        try:
            import ray  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - Ray is an optional extra
            return {"skipped": f"ray cannot be imported ({type(exc).__name__}: {exc})"}
    start = time.perf_counter()
    try:
        result = importlib.import_module(SECTIONS[name]).run(quick=quick)
    except Exception as exc:  # noqa: BLE001 - one broken section does not lose the others
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300],
                "seconds": round(time.perf_counter() - start, 1)}
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, write the JSON, print the table; exit 1 if a section failed."""
    args = _parse(argv)
    if args.show is not None:
        from benchmarks._report import table

        print(table(json.loads(args.show.read_text())))
        return 0
    from automl.study.store import quiet_optuna
    from benchmarks._common import machine
    from benchmarks._report import table

    quiet_optuna()
    names = args.only or list(SECTIONS)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "sections": {}}
    start = time.perf_counter()
    for name in names:
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        results["sections"][name] = _run_section(name, args.quick)
        print(f"[benchmarks] {name} done in {results['sections'][name].get('seconds', 0)} s", file=sys.stderr,
              flush=True)
    results["total_s"] = round(time.perf_counter() - start, 1)
    results["machine"]["load_avg_1m_end"] = machine()["load_avg_1m"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    print(f"machine: {m['nproc']} x {m['cpu']}, torch {m['torch']}, load {m['load_avg_1m']} -> "
          f"{m['load_avg_1m_end']}; total {results['total_s']} s{' (quick)' if args.quick else ''}\n")
    print(table(results))
    print(f"\nJSON: {args.out}")
    return 1 if any("error" in r for r in results["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
