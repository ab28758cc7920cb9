"""Which device each local worker process uses, and how many CPU threads it gets.

``--gpus`` picks the GPUs (``auto``: every visible CUDA device, ``none``: CPU only, or
indices such as ``0,1,3``). Workers are dealt round-robin over the chosen GPUs, so that with
at least as many workers as GPUs every GPU has a worker pulling trials from the shared queue
and none idles while trials wait. ``--gpus-per-trial F`` below 1 lets ``floor(1 / F)``
workers share one GPU (0.5: two per GPU); the worker count is then capped at what the GPUs
hold. Without CUDA every worker runs on the CPU, and the machine's cores are divided among
the workers so that N workers on N cores do not oversubscribe.
"""

from __future__ import annotations

import math
import os

from automl.errors import UserError


def cuda_count() -> int:
    """The number of visible CUDA devices (0 without CUDA)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install means: no GPU
        return 0


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_gpus(value: str | None, available: int) -> list[int]:
    """The GPU indices ``--gpus`` selects among ``available`` CUDA devices.

    ``auto`` (or empty) gives all of them (none without CUDA), ``none`` gives none, and a
    comma-separated list of distinct indices gives those; anything else is a ``UserError``.
    """
    text = (value or "auto").strip().lower()
    if text == "auto":
        return list(range(available))
    if text in ("none", "cpu"):
        return []
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise UserError(f"bad --gpus {value!r}: use auto, none, or GPU indices like 0,1,3")
    indices = [int(p) for p in parts]
    if len(set(indices)) != len(indices):
        raise UserError(f"bad --gpus {value!r}: a GPU index is repeated")
    missing = [i for i in indices if i >= available]
    if missing:
        seen = f"GPUs 0-{available - 1}" if available else "no CUDA GPU"
        raise UserError(f"--gpus {value!r} names GPU {missing[0]}, but this machine has {seen}; "
                        "use --gpus auto or none")
    return indices


def slots_per_gpu(gpus_per_trial: float | None) -> int | None:
    """How many workers share one GPU: ``None`` when not set (round-robin, no cap), 0 for
    CPU-only trials (``--gpus-per-trial 0``)."""
    if gpus_per_trial is None:
        return None
    if not math.isfinite(gpus_per_trial) or gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be a number of at least 0, not {gpus_per_trial}")
    if gpus_per_trial == 0:
        return 0
    if gpus_per_trial > 1:
        raise UserError(f"--gpus-per-trial {gpus_per_trial}: a local trial uses one GPU at most; "
                        "give a fraction like 0.5 to share one, or use --backend ray")
    return max(1, int(math.floor(1 / gpus_per_trial + 1e-9)))


def assign_devices(workers: int, gpus: str | None = "auto", gpus_per_trial: float | None = None,
                   available: int | None = None) -> list[str]:
    """The torch device of each local worker process, e.g. ``["cuda:0", "cuda:1", "cuda:0"]``.

    ``available`` is the number of CUDA devices (detected when ``None``). The list may be
    shorter than ``workers`` when ``gpus_per_trial`` caps how many trials the GPUs hold.
    """
    if workers <= 0:
        raise UserError(f"--workers must be at least 1, not {workers}")
    chosen = parse_gpus(gpus, cuda_count() if available is None else available)
    slots = slots_per_gpu(gpus_per_trial)
    if not chosen or slots == 0:
        return ["cpu"] * workers
    n = workers if slots is None else min(workers, slots * len(chosen))
    return [f"cuda:{chosen[i % len(chosen)]}" for i in range(n)]


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch CPU threads per worker: ``OMP_NUM_THREADS`` when it is set to a positive number
    (PyTorch's usual knob; on a busy shared machine one thread each can be several times
    faster than two), else the cores divided among the workers, at least one."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (cpu_cores() if cores is None else cores) // max(1, workers))


def main_device(gpus: str | None = "auto") -> str:
    """The device the main process evaluates on (the final test score): the first GPU that
    ``--gpus`` selects, or the CPU (``--gpus none``, or no CUDA)."""
    chosen = parse_gpus(gpus, cuda_count())
    return f"cuda:{chosen[0]}" if chosen else "cpu"
