"""Helpers shared by the benchmark sections: timing, load, isolated study stores, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def load_avg() -> float:
    """The 1-minute load average, recorded next to every figure (the machine may be shared)."""
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    """nproc, the CPU model from /proc/cpuinfo, torch's version and threads, and the load."""
    import torch

    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "torch": torch.__version__, "load_avg_1m": load_avg(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Run ``fn`` ``repeats`` times; the median of the wall times and all of them."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Time several contenders round-robin (A B C A B C ...), so a change of the machine's
    load during the run hits all of them alike. Returns every contender's wall times."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def studies_dir(prefix: str) -> Iterator[Path]:
    """A throw-away study store: ``AUTOML_STUDIES`` points at it (worker processes inherit it)."""
    old = os.environ.get("AUTOML_STUDIES")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.environ["AUTOML_STUDIES"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("AUTOML_STUDIES", None)
            else:
                os.environ["AUTOML_STUDIES"] = old


def ratio(a: float, b: float) -> float:
    """``a / b`` rounded to 3 places (``inf`` when ``b`` is 0)."""
    return round(a / b, 3) if b else float("inf")


def first_reach(curve: list[tuple[float, float]], threshold: float) -> float | None:
    """The first time at which a ``(time, value)`` curve reaches ``threshold``, else ``None``."""
    for t, v in curve:
        if v >= threshold - 1e-12:
            return round(t, 2)
    return None


def plan(study: str | None = None, **fields: Any) -> Any:
    """A search session planned as ``automl search`` plans one: ``fields`` are StudySpec fields."""
    from automl.search.session import plan_search
    from automl.study.spec import StudySpec

    return plan_search(StudySpec(**fields), study)
