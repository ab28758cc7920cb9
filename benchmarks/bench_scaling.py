"""Local backend scaling on the CPU: ``--workers 2`` against ``--workers 1`` on 10 digits trials.

Each side is a fresh study of the vision plugin's default search (digits, ``mlp``) with the
random sampler, seed 0 and no pruning, so both run comparable trials; each worker gets
``cores // workers`` torch threads. The wall time covers the whole ``run`` (worker start-up
included), as a user sees it. The goal is a speed-up of at least 1.6 on two cores.

Run: ``python benchmarks/bench_scaling.py [--quick]`` (quick caps trials at 2 epochs, the full
run at 6).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any


def _search(workers: int, trials: int, max_epochs: int, name: str) -> tuple[float, int]:
    from automl import _engine

    req = _engine.SearchRequest(plugin="vision", spaces=["mlp"], sampler="random", pruner="none", seed=0,
                                trials=trials, workers=workers, study=name, max_epochs=max_epochs, gpus="none")
    session = _engine.plan_search(req)
    _engine.create_study(session)
    start = time.perf_counter()
    outcome = _engine.run(session)
    return time.perf_counter() - start, outcome.snapshot.finished


def run(quick: bool = False) -> dict[str, Any]:
    """Time 10 trials with one worker, then with two; returns both and the speed-up."""
    from automl.backends import cpu_cores

    trials, max_epochs = 10, (2 if quick else 6)
    old = os.environ.get("AUTOML_STUDIES")
    os.environ["AUTOML_STUDIES"] = tempfile.mkdtemp(prefix="automl-bench-scaling-")
    try:
        one_s, one_n = _search(1, trials, max_epochs, "w1")
        two_s, two_n = _search(2, trials, max_epochs, "w2")
    finally:
        if old is None:
            os.environ.pop("AUTOML_STUDIES", None)
        else:
            os.environ["AUTOML_STUDIES"] = old
    return {"benchmark": "local_scaling", "trials": trials, "max_epochs": max_epochs, "cores": cpu_cores(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "workers_1_s": round(one_s, 2), "workers_2_s": round(two_s, 2),
            "finished": [one_n, two_n], "speedup": round(one_s / two_s, 3), "goal": ">= 1.6"}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
