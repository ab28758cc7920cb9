"""What every backend shares: the job it runs, the protocol it implements, and the one loop
that shows progress and turns Ctrl-C / SIGTERM into a clean stop.

A backend runs the remaining trials of a study that the search session has created and
recovered. It knows how to start processes (local worker processes, Ray Tune trials) and to
claim and finish Optuna trials; what a trial does comes from the session, as the ``factory``
of the :class:`Job`: a module-level function, pickled by reference, that builds a
:class:`TrialRunner` inside each trial process. So backends never import the search layer.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

    from automl.study.spec import StudySpec


class StopRequested(BaseException):
    """Raised inside a trial process when the search asked it to stop (Ctrl-C or SIGTERM in
    the main process, SIGTERM to the worker): the running trial is recorded as interrupted,
    to be re-run by ``automl resume``. A BaseException, so no ``except Exception`` in trial
    code mistakes it for the trial's own failure."""


def error_reason(exc: BaseException) -> str:
    """An exception as the one-line reason stored with a failed trial."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


class TrialRunner(Protocol):
    """What a trial process runs; built once per process by the job's factory."""

    def sampler(self, index: int = 0, existing: int = 0, salt: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler of the ``index``-th process of a run that finds ``existing`` trials in the
        study (``salt``: what else sets this process apart, e.g. a joining worker's pid)."""

    def pruner(self) -> optuna.pruners.BasePruner:
        """The study's pruner."""

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every parameter of ``trial`` without training (Ray's driver samples)."""

    def __call__(self, trial: optuna.Trial, on_epoch: Callable[[int, float, float], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> float:
        """Run the trial; return its value. Raises ``optuna.TrialPruned`` when pruned and
        :class:`StopRequested` when ``should_stop()`` turns true between batches."""


@dataclass
class Job:
    """Everything a trial process needs to work on a study; picklable, and small.

    ``factory(job, device) -> TrialRunner`` is called once per trial process. ``deadline``
    (a ``time.time()`` value) is when no new trial may start.
    """

    study_name: str
    study_dir: str
    url: str
    spec: dict[str, Any]
    factory: Callable[[Job, str], TrialRunner]
    deadline: float | None = None
    #: Sets this run's sampler seeds apart from another run's that finds as many trials
    #: (a joining ``automl worker`` uses its pid; the owning search 0, to stay reproducible).
    salt: int = 0


@dataclass
class Snapshot:
    """Where a running study stands, read from its storage."""

    counts: dict[str, int]
    finished: int
    target: int
    best_value: float | None
    best_number: int | None
    elapsed_s: float
    last_error: str | None = None
    #: Running trials: number -> epochs reported so far.
    running: dict[int, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """How a backend's run ended: ``reason`` is ``finished``, ``timeout``, ``interrupted``
    (Ctrl-C), ``terminated`` (SIGTERM), ``killed`` (a second signal), ``failures``
    (``--max-failures`` reached) or ``worker-error``; ``errors`` are workers' messages."""

    reason: str
    snapshot: Snapshot
    errors: list[str] = field(default_factory=list)


class Backend(Protocol):
    """A way to run a study's trials. Backends are looked up by name (``--backend``) in
    :data:`automl.backends.BACKENDS`; every one writes the same Optuna study."""

    name: str

    def check(self, spec: StudySpec) -> None:
        """Raise :class:`automl.UserError` for a spec this backend cannot run (bad ``--gpus``,
        a cluster address on a storage the cluster cannot reach...). Writes nothing."""

    def run(self, job: Job, spec: StudySpec, stop: StopSignals,
            on_progress: Callable[[Snapshot], None] | None, poll_s: float) -> Outcome:
        """Run trials until the spec's target is reached, the deadline passes, too many
        fail, or ``stop`` records a signal."""


class StopSignals:
    """Ctrl-C and SIGTERM during a search: recorded by the handlers, acted on by the poll loop.

    Written by hand because no library does this for a multi-process poll loop. Raising from
    the handler (Python's default for SIGINT) lands wherever the main thread happens to be:
    inside SQLAlchemy the exception comes out wrapped in Optuna's StorageInternalError, inside
    a finalizer it is swallowed and the signal is lost. Recording it and checking between polls
    loses neither. Outside the main thread (no handlers can be set there) it records nothing.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def _record(self, signum: int, frame: Any) -> None:
        self.received.append(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._record) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    @property
    def reason(self) -> str | None:
        """``interrupted`` (Ctrl-C, exit 130) or ``terminated`` (SIGTERM, exit 143), by the first."""
        if not self.received:
            return None
        return "terminated" if self.received[0] == signal.SIGTERM else "interrupted"

    @property
    def at_once(self) -> bool:
        """A second signal: stop at once, without waiting for the workers' cleanup."""
        return len(self.received) >= 2


def snapshot(study: optuna.Study, target: int, started: float) -> Snapshot:
    """Count the study's trials by state and find the best so far."""
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name: 0 for s in TrialState}
    best_value = best_number = last_error = None
    running: dict[int, int] = {}
    # A multi-objective study (--objective) has no single direction or value: its first
    # objective (the primary) is shown.
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    for t in trials:
        counts[t.state.name] += 1
        if t.state == TrialState.RUNNING:
            running[t.number] = len(t.intermediate_values)
        value = t.values[0] if t.values else None
        if t.state == TrialState.COMPLETE and value is not None:
            if best_value is None or (value > best_value if maximize else value < best_value):
                best_value, best_number = value, t.number
        if t.state == TrialState.FAIL and t.user_attrs.get("error"):
            last_error = f"trial {t.number}: {t.user_attrs['error']}"
    finished = counts["COMPLETE"] + counts["PRUNED"]
    return Snapshot(counts, finished, target, best_value, best_number, time.time() - started, last_error, running)


def poll(running: Callable[[], bool], wait: Callable[[float], None], study: optuna.Study, target: int,
         started: float, on_progress: Callable[[Snapshot], None] | None, poll_s: float, stop: StopSignals,
         until: float | None = None) -> None:
    """The one progress / stop loop of every backend: report progress while ``running()``,
    calling ``wait(poll_s)`` between reads. Before the first signal it runs until one arrives
    (``until`` is None); after it, until ``until`` passes or a second signal arrives."""

    def go_on() -> bool:
        if until is None:
            return not stop.reason
        return not stop.at_once and time.time() < until

    while running() and go_on():
        if on_progress:
            on_progress(snapshot(study, target, started))
        wait(poll_s)
    if on_progress:
        on_progress(snapshot(study, target, started))


def exit_text(code: int) -> str:
    """How a process ended, for the user: ``was killed by SIGKILL``, ``exited with code 1``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
