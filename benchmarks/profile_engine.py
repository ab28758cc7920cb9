"""Profile automl's per-trial engine loop against raw Optuna with pyinstrument.

    pip install pyinstrument
    python -m benchmarks.profile_engine [sqlite|memory] [TRIALS]

Runs the same trivial objective as ``bench_engine`` (raw ``study.optimize``, then automl's
``Slots.claim`` + ``run_trial``), prints both per-trial times and pyinstrument's tree of the
automl side, where the claim (counts, ``worker`` record, lock) and the trial (heartbeat,
objective, ``tell``) show their share. The numbers in benchmarks/README.md came from here.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("error: this needs pyinstrument: pip install pyinstrument", file=sys.stderr)
        return 2
    from automl.study.store import quiet_optuna
    from benchmarks import bench_engine as be

    kind = argv[0] if argv else "sqlite"
    trials = int(argv[1]) if len(argv) > 1 else 200
    if kind not in ("sqlite", "memory"):
        print("error: storage must be sqlite or memory", file=sys.stderr)
        return 2
    quiet_optuna()
    folder = Path(tempfile.mkdtemp(prefix="automl-profile-"))
    be.run_raw(kind, 5, folder, "warm-raw")  # imports and caches are not per trial
    be.run_automl(kind, 5, folder, "warm-automl")
    raw = be.run_raw(kind, trials, folder, "raw")
    profiler = Profiler(interval=0.0005)
    profiler.start()
    auto = be.run_automl(kind, trials, folder, "automl")
    profiler.stop()
    print(f"{kind}, {trials} trials: raw optuna {1000 * sum(raw) / trials:.2f} ms/trial, "
          f"automl {1000 * sum(auto) / trials:.2f} ms/trial (profiled, so inflated)")
    print(profiler.output_text(unicode=False, color=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
