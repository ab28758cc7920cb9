"""The study spec: what a search is, as plain JSON-able data stored with the study.

A :class:`StudySpec` is made once from what the user typed (the CLI fills only the fields
the user gave; every default lives here), checked by :meth:`StudySpec.check`, completed by
the search session (dataset, spaces, metric and direction resolved through the plugin,
fingerprints, versions), and stored as JSON in the study's user attrs. Worker processes,
Ray trials, resume, export and report all read it back with :meth:`StudySpec.from_json`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from automl._version import __version__
from automl.errors import UserError

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc", "nsga2")
PRUNERS = ("auto", "median", "asha", "hyperband", "none")
#: ``--refit``: train the handed-back models again on train + validation (automl.search.refit).
REFITS = ("auto", "on", "off")
MAX_SEED = 2**31
#: Finished trials to reach without ``--trials``; with ``--timeout`` and no ``--trials`` the
#: budget decides (as many as fit).
DEFAULT_TRIALS, AS_MANY_AS_FIT = 20, 100_000
#: Share of a time budget kept for finalize, and its bounds in seconds.
RESERVE_SHARE, RESERVE_MIN_S, RESERVE_MAX_S = 0.08, 3.0, 60.0
#: Under a time budget each trial gets at most this share of the workers' time: at least this
#: many trials run, and Hyperband starts many more short ones.
BUDGET_TRIALS = 8
#: The deployment figures each trial records (:mod:`automl.search.deploy`), by name, with the
#: direction each is better in: what ``--objective`` and ``--constraint`` accept besides the
#: plugin's metrics.
FIGURES = {"params": "minimize", "size_mb": "minimize", "size_bytes": "minimize", "latency_ms": "minimize",
           "latency_p95_ms": "minimize", "latency_cpu_ms": "minimize", "throughput": "maximize"}
#: The comparison operators of ``--constraint``.
CONSTRAINT_OPS = ("<=", ">=", "<", ">")
LATENCY_DEVICES = ("cpu", "cuda")
#: The default of ``--latency-seconds`` and of :func:`automl.search.deploy.measure`.
LATENCY_SECONDS = 2.0


@dataclass
class StudySpec:
    """Everything that defines a study. ``None`` for dataset, metric or an empty ``spaces``
    means "the plugin's default" until the session resolves them."""

    plugin: str
    dataset: str | None = None
    spaces: list[str] = field(default_factory=list)
    metric: str | None = None
    direction: str = "maximize"
    data_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    pruner: str = "auto"
    seed: int = 0
    trials: int = DEFAULT_TRIALS
    timeout: float | None = None
    trial_timeout: float | None = None
    budget_aware: bool = True
    epoch_s: float | None = None
    space_max_epochs: int | None = None
    workers: int = 1
    max_failures: int | None = None
    max_retries: int = 2
    max_epochs: int | None = None
    ensemble: int = 20
    refit: str = "off"
    backend: str = "local"
    address: str | None = None
    artifacts: str | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    gpus: str = "auto"
    loggers: list[str] = field(default_factory=list)
    plugin_paths: list[str] = field(default_factory=list)
    #: ``--objective``: two or more names (metrics or :data:`FIGURES`) make a multi-objective
    #: study, the first the primary; empty: the study optimises ``metric`` alone.
    objectives: list[str] = field(default_factory=list)
    #: The direction of each objective (filled by the session).
    directions: list[str] = field(default_factory=list)
    #: ``--constraint`` texts (``"latency_ms<=2"``): a trial that does not meet them all is
    #: infeasible, and never selected while a feasible one exists.
    constraints: list[str] = field(default_factory=list)
    latency_device: str = "cpu"
    latency_threads: int = 1
    #: How long each model's latency is timed when a figure is an objective or constraint.
    latency_seconds: float = LATENCY_SECONDS
    checkpoint_every_s: float = 10.0
    data_fingerprint: str = ""
    space_hash: str = ""
    automl_version: str = __version__
    plugin_version: str = ""
    created: float = field(default_factory=time.time)
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data (what is stored under the study's ``automl:spec`` attr)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudySpec:
        """A spec from stored JSON; fields a newer or older automl wrote are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def failure_limit(self) -> int:
        """Failed trials after which the search stops: ``--max-failures``, by default the
        target or 3, whichever is more."""
        return self.max_failures or max(3, self.trials)

    def reserve_s(self) -> float:
        """Seconds of a ``--timeout`` kept for finalize (the test score, the best model,
        ensembles): 8 % of it, at least 3 s and at most a minute."""
        return min(RESERVE_MAX_S, max(RESERVE_MIN_S, RESERVE_SHARE * (self.timeout or 0.0)))

    def trial_budget_s(self) -> float | None:
        """Under a time budget, the most seconds one trial may train: the budget left after
        finalize's reserve, times the workers, over ``BUDGET_TRIALS``; a trial that reaches it
        is cut (it keeps its best epoch). ``None`` without a budget or with ``budget_aware``
        off; a smaller ``--trial-timeout`` wins."""
        if not self.timeout or not self.budget_aware:
            return None
        return (self.timeout - self.reserve_s()) * max(1, self.workers) / BUDGET_TRIALS

    def budget_epochs(self) -> int | None:
        """The epochs every trial may run under a time budget: as many as one trial's share of
        the budget (:meth:`trial_budget_s`) trains at the seconds per epoch the search measured
        (``epoch_s``), at least 2 and at most the most the space itself searches
        (``space_max_epochs``). Slower configurations are cut by their time share; pruning and
        early stopping end the poor ones sooner. ``None`` without a budget or a measurement."""
        share = self.trial_budget_s()
        if share is None or not self.epoch_s:
            return None
        cap = self.space_max_epochs or 100  # never more than the space itself would search
        return int(min(cap, max(2, share / self.epoch_s)))

    def fixed_epochs(self) -> int | None:
        """The epochs a search gives every trial instead of searching them: ``--max-epochs``,
        the budget's (:meth:`budget_epochs`), or the smaller of both; ``None``: searched."""
        caps = [c for c in (self.max_epochs, self.budget_epochs()) if c]
        return min(caps) if caps else None

    def resolved_pruner(self) -> str:
        """``auto``: Hyperband (epochs as the resource) under a time budget, else median."""
        if self.pruner != "auto":
            return self.pruner
        return "hyperband" if self.timeout and self.budget_aware else "median"

    @property
    def multi_objective(self) -> bool:
        """Whether the study has several objectives (a Pareto front rather than one best)."""
        return len(self.objectives) > 1

    @property
    def latency_window(self) -> float | None:
        """How long to time each model's latency: ``latency_seconds`` when the search optimises
        or constrains a figure, else ``None`` (a brief, informative measurement)."""
        return self.latency_seconds if self.deployment_aware else None

    @property
    def deployment_aware(self) -> bool:
        """Whether a deployment figure (:data:`FIGURES`) is among the objectives or constraints
        (a search without ``--space`` then runs the plugin's ``deployment_spaces``)."""
        names = [*self.objectives, *(parse_constraint(c)[0] for c in self.constraints)]
        return any(n in FIGURES for n in names)

    def check(self) -> StudySpec:
        """Raise :class:`UserError` for a number or name the user got wrong; returns self."""
        check_counts(self.trials, self.workers, self.seed)
        for text in self.constraints:
            parse_constraint(text)
        if len(set(self.objectives)) != len(self.objectives):
            raise UserError(f"--objective names {', '.join(self.objectives)}: each objective once")
        if len(self.objectives) == 1 and self.objectives[0] in FIGURES:
            raise UserError(f"--objective {self.objectives[0]} alone: a deployment figure is an objective beside a "
                            f"metric (--objective accuracy --objective {self.objectives[0]}); to bound it, use "
                            f"--constraint \"{self.objectives[0]}<=...\"")
        if self.multi_objective and self.sampler == "cmaes":
            raise UserError("--sampler cmaes optimises one objective; with several --objective use tpe (default), "
                            "nsga2, gp, random or qmc")
        if self.latency_device not in LATENCY_DEVICES:
            raise UserError(f"--latency-device must be one of {', '.join(LATENCY_DEVICES)}, "
                            f"not {self.latency_device!r}")
        if not 1 <= self.latency_threads <= 256:
            raise UserError(f"--latency-threads must be between 1 and 256, not {self.latency_threads}")
        if not (math.isfinite(self.latency_seconds) and 0.05 <= self.latency_seconds <= 600):
            raise UserError(f"--latency-seconds must be between 0.05 and 600, not {self.latency_seconds}")
        for flag, value in (("--timeout", self.timeout), ("--trial-timeout", self.trial_timeout)):
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise UserError(f"{flag} must be a positive number of seconds, not {value}")
        if self.max_failures is not None and self.max_failures <= 0:
            raise UserError(f"--max-failures must be at least 1, not {self.max_failures}")
        if self.ensemble < 0 or self.ensemble > 1000:
            raise UserError(f"--ensemble must be between 0 (none) and 1000, not {self.ensemble}")
        if self.max_retries < 0 or self.max_retries > 100:
            raise UserError(f"--max-retries must be between 0 and 100, not {self.max_retries}")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise UserError(f"--max-epochs must be at least 1, not {self.max_epochs}")
        if not math.isfinite(self.checkpoint_every_s) or self.checkpoint_every_s < 0:
            raise UserError(f"--checkpoint-every must be a number of seconds >= 0, not {self.checkpoint_every_s}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; choices: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise UserError(f"unknown pruner {self.pruner!r}; choices: {', '.join(PRUNERS)}")
        if self.refit not in REFITS:
            raise UserError(f"unknown --refit {self.refit!r}; choices: {', '.join(REFITS)}")
        for name, value in (("--cpus-per-trial", self.cpus_per_trial), ("--gpus-per-trial", self.gpus_per_trial)):
            if value is not None and (not math.isfinite(value) or value < 0 or value > 1024):
                raise UserError(f"{name} must be a number between 0 and 1024, not {value}")
        return self


def check_counts(trials: int | None, workers: int | None, seed: int = 0) -> None:
    """The numbers ``search``, ``resume`` and ``worker`` share: trials, workers and seed."""
    if trials is not None and trials <= 0:
        raise UserError(f"--trials must be at least 1, not {trials}")
    if workers is not None and (workers <= 0 or workers > 256):
        raise UserError(f"--workers must be between 1 and 256, not {workers}")
    if seed < 0 or seed >= MAX_SEED:
        raise UserError(f"--seed must be between 0 and {MAX_SEED - 1}, not {seed}")


def parse_constraint(text: str) -> tuple[str, str, float]:
    """``"latency_ms<=2"`` as ``("latency_ms", "<=", 2.0)``; a :class:`UserError` naming the
    expected form for anything else. Whether the name is a figure or a metric of the plugin
    is checked once the plugin is loaded."""
    raw = text.replace(" ", "")
    for op in CONSTRAINT_OPS:  # two-character operators first
        name, sep, bound = raw.partition(op)
        if not sep:
            continue
        try:
            value = float(bound)
        except ValueError:
            value = math.nan
        if not name or not math.isfinite(value) or any(o in bound for o in CONSTRAINT_OPS):
            break
        return name, op, value
    raise UserError(f"bad --constraint {text!r}: expected NAME<=NUMBER (or <, >=, >), e.g. \"latency_ms<=2\"; "
                    f"NAME is a metric or one of {', '.join(FIGURES)}")


def trial_seed(study_seed: int, number: int) -> int:
    """The seed of trial ``number``: a function of the study seed and the trial number only,
    so a trial trains the same whichever process or machine runs it."""
    return (int(study_seed) * 1_000_003 + number * 7919) % MAX_SEED
