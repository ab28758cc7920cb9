"""Execution backends beyond the local worker processes, and device assignment.

- :func:`run_ray` runs a study's trials as Ray Tune trials, with Ray's ``OptunaSearch`` bound
  to the study's own Optuna storage, so both backends write the same study.
- :func:`assign_devices` deals the local backend's worker processes over the GPUs
  (``--gpus``, ``--gpus-per-trial``); :func:`threads_per_worker` splits the CPU cores.

Ray is imported only when the Ray backend runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automl.backends._gpus import assign_devices, cuda_count, cpu_cores, parse_gpus, slots_per_gpu, threads_per_worker

if TYPE_CHECKING:
    from automl._engine import Outcome, Session


def run_ray(session: "Session", **kwargs: Any) -> "Outcome":
    """Run the session's remaining trials on Ray Tune (see :mod:`automl.backends._ray`)."""
    from automl.backends._ray import run_ray as _run

    return _run(session, **kwargs)


__all__ = ["assign_devices", "cpu_cores", "cuda_count", "parse_gpus", "run_ray", "slots_per_gpu",
           "threads_per_worker"]
