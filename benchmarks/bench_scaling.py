"""Local backend scaling on the CPU: ``--workers 2`` against ``--workers 1`` on 10 digits trials.

Each side is a fresh study of the vision plugin on digits with the ``cnn`` space, the random
sampler, seed 0 and no pruning, so both run the same configs; each worker gets
one torch thread (``OMP_NUM_THREADS=1``), so that two workers have twice the cores of one: the
figure is the engine's own scaling, and the goal is a speed-up of at least 1.7 on two cores.
The same pair with the default threads (``cores // workers``: one worker runs two threads) is
reported beside it; there two workers gain little on a model whose ops already use both
cores. The wall time covers the whole ``run`` (worker start-up included), as a user sees it.

The ``mlp`` space was too small for this: its 10 trials took 8 s in all, about half of it the
workers' start-up (a process, torch, the plugins and the data), which does not shrink with
more workers, so the figure measured start-up (1.08x on an idle machine), not scaling.

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
    from automl.search import session as search_session
    from benchmarks._common import plan

    req = dict(plugin="vision", spaces=["cnn"], sampler="random", pruner="none", seed=0,
                                trials=trials, workers=workers, study=name, max_epochs=max_epochs, gpus="none")
    session = plan(**req)
    search_session.create_study(session)
    start = time.perf_counter()
    outcome = search_session.run(session)
    return time.perf_counter() - start, outcome.snapshot.finished


def _pair(trials: int, max_epochs: int, threads: str | None, tag: str) -> dict[str, Any]:
    """One worker, then two, with ``OMP_NUM_THREADS`` set to ``threads`` (None: unset)."""
    old = os.environ.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = threads
    try:
        one_s, one_n = _search(1, trials, max_epochs, f"{tag}-w1")
        two_s, two_n = _search(2, trials, max_epochs, f"{tag}-w2")
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        if old is not None:
            os.environ["OMP_NUM_THREADS"] = old
    return {"threads_per_worker": threads or "cores // workers", "workers_1_s": round(one_s, 2),
            "workers_2_s": round(two_s, 2), "finished": [one_n, two_n], "speedup": round(one_s / two_s, 3)}


def run(quick: bool = False) -> dict[str, Any]:
    """14 trials with one worker, then with two: first with one torch thread per worker (the
    engine's own scaling: the figure with the goal), then with the default threads (what a
    user gets without setting anything: one worker already runs two threads)."""
    from automl.backends.devices import cpu_cores

    trials, max_epochs = (10, 2) if quick else (14, 6)
    old = os.environ.get("AUTOML_STUDIES")
    os.environ["AUTOML_STUDIES"] = tempfile.mkdtemp(prefix="automl-bench-scaling-")
    try:
        fixed = _pair(trials, max_epochs, "1", "t1")
        default = _pair(trials, max_epochs, None, "td")
    finally:
        if old is None:
            os.environ.pop("AUTOML_STUDIES", None)
        else:
            os.environ["AUTOML_STUDIES"] = old
    return {"benchmark": "local_scaling", "trials": trials, "max_epochs": max_epochs, "cores": cpu_cores(),
            "load_avg_1m": round(os.getloadavg()[0], 2), **fixed, "default_threads": default, "goal": ">= 1.7"}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
