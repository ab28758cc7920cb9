"""One trial of a search: sampling, seeding, building, training, saving.

:class:`Objective` runs a trial on an Optuna trial claimed by a backend; :func:`make_runner`
builds it in a trial process (a local worker, a Ray trial) from the backend's
:class:`~automl.backends.base.Job`. The samplers and pruners a spec names are made here.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from automl.backends.base import Job, StopRequested, error_reason
from automl.errors import TrialFailed, UserError
from automl.plugins import Registry, listener_names, load_registry
from automl.search.deploy import checkable_before_training, measure, untrained_misses, violations
from automl.study.artifacts import model_path, save_predictions, save_targets
from automl.study.datasets import load_data
from automl.study.resolve import check_task_fit, resolve
from automl.study.results import violations as violations_of
from automl.study.sampling import sample_config
from automl.study.spec import FIGURES, PRUNERS, SAMPLERS, StudySpec, parse_constraint, trial_seed
from automl.study.store import quiet_optuna
from automl.training import CheckError, build_model, check_space, evaluate, fit, save_model, validation_loss
from automl.types import DataBundle, EpochEvent, Metric, SearchSpace, TrialEvent

#: Configurations of each space tried before a search starts (see Objective.preflight).
PREFLIGHT_CONFIGS = 3
#: NSGA-II's generation size (``--sampler nsga2``): Optuna's default of 50 would leave a
#: search of a few dozen trials in its random first generation.
NSGA_POPULATION = 10


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Objective:
    """One trial: sample, prepare data, build, train, save weights, return the val metric.

    The trial's user attributes: ``config`` (written before training, so a crashed trial
    still shows what it ran) and ``run`` (one record at the end: best epoch, epochs run,
    samples/s, the epoch it resumed from, the batch size after an out-of-memory retry). Each
    attribute is its own storage commit, so there are as few as that. ``worker`` (host, pid,
    device) is written by whoever claims the trial (the backend).

    After training, the model's deployment figures (:mod:`automl.search.deploy`) are measured
    and recorded in ``run["deploy"]``; with ``--constraint`` each constraint's violation is set
    with :meth:`optuna.trial.Trial.set_constraint` (what Optuna's constraint-aware samplers and
    ``best_trials`` read); with several ``--objective`` the trial returns one value per
    objective, and reports no intermediate values to Optuna's pruner (multi-objective studies
    are not pruned; the epoch values are still stored for the learning curves).

    It is also the backends' :class:`automl.backends.base.TrialRunner`: besides running a
    trial it gives each process its sampler and pruner, and samples a config without training
    (:meth:`sample`, for Ray's driver).
    """

    def __init__(self, *, registry: Registry, spec: StudySpec, spaces: list[SearchSpace],
                 metric: Metric, bundle: DataBundle, study_name: str, study_dir: Path,
                 device: torch.device, deadline: float | None = None) -> None:
        self.registry, self.spec, self.metric, self.bundle = registry, spec, metric, bundle
        self.spaces = {s.name: s for s in spaces}
        self.study_name, self.study_dir, self.device = study_name, study_dir, device
        self.checkpoint_every_s = spec.checkpoint_every_s
        # The search's time budget ends here (time.time()); a budget-aware search cuts trials at it.
        self.deadline = deadline if spec.budget_aware else None
        self.fixed_epochs = spec.fixed_epochs()

    def sampler(self, index: int = 0, existing: int = 0, salt: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler of process ``index`` of a run that finds ``existing`` trials in the study.

        Its seed comes from the study seed, ``existing``, ``index`` and ``salt``: a resume or a
        joining worker starts its draws where the study is, instead of replaying the first
        search's draws (which proposed the same configurations again). The first run of a
        study with a given seed still draws the same; each trial's own seed depends only on
        the study seed and its number (:func:`automl.study.spec.trial_seed`)."""
        seed = (self.spec.seed * 1_000_003 + existing * 7919 + index * 104_729 + salt * 15_485_863) % 2**31
        return make_sampler(self.spec.sampler, seed, parallel=self.spec.workers > 1)

    def pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.spec.pruner, self.fixed_epochs, constrained=bool(self.spec.constraints))

    def sample(self, trial: optuna.Trial, fix_epochs: bool = True) -> dict[str, Any]:
        """Suggest every parameter of a trial and return its config ``{"space", "model",
        "train"}`` (see :mod:`automl.study.sampling`). ``fix_epochs=False`` samples the space as
        its plugin defines it, ``epochs`` included, whatever this search's budget or
        ``--max-epochs`` (for the space fingerprint)."""
        return sample_config(self.spaces, trial, self.bundle.info, self.fixed_epochs if fix_epochs else None)

    def preflight(self) -> None:
        """Before anything is written: for each space, sample a config, prepare the data, build
        the model, run one training batch forward and backward and the metric on validation
        rows (:func:`automl.training.check_space`). A failure is one :class:`UserError` line
        that names the plugin, the space or metric, the split, and what to fix."""
        study = optuna.create_study(direction=self.spec.direction,
                                    sampler=optuna.samplers.RandomSampler(seed=self.spec.seed))
        plugin, dataset = self.spec.plugin, self.spec.dataset
        for name, space in self.spaces.items():
            first: str | None = None
            # Up to three configs: a space is refused when none of them trains (a failure of
            # one configuration is that trial's, recorded like any trial error).
            for _ in range(PREFLIGHT_CONFIGS):
                if len(self.spaces) > 1:
                    study.enqueue_trial({"space": name})
                trial = study.ask()
                config = self.sample(trial)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                data = space.prepare(self.bundle, config) if space.prepare else self.bundle
                try:
                    check_space(space, data, config, self.metric, torch.device("cpu"), seed=self.spec.seed)
                except CheckError as exc:
                    first = first or _preflight_message(exc, plugin, name, dataset, self.metric.name, data)
                    if exc.stage == "metric":
                        break  # the metric fails whatever the model
                    continue
                first = None
                break
            if first is not None:
                raise UserError(first)

    def distributions(self, samples: int = 24) -> dict[str, optuna.distributions.BaseDistribution]:
        """The searched parameters as Optuna sees them - names, types, ranges, choices - over
        ``samples`` seeded draws of each space (conditional parameters show up when a draw
        takes their branch)."""
        seen: dict[str, optuna.distributions.BaseDistribution] = {}
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for name in self.spaces:
            for _ in range(samples):
                if len(self.spaces) > 1:
                    study.enqueue_trial({"space": name})
                trial = study.ask()
                self.sample(trial, fix_epochs=False)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                seen.update(trial.distributions)
        return seen

    def space_fingerprint(self) -> str:
        """A hash of :meth:`distributions`: a changed choice list anywhere the space's code
        reaches changes it; an edited comment or a renamed helper does not. Resume compares it
        with the stored one."""
        import hashlib

        dists = {k: optuna.distributions.distribution_to_json(v) for k, v in self.distributions().items()}
        return hashlib.sha256(json.dumps(sorted(dists.items())).encode()).hexdigest()[:16]

    def epoch_seconds(self, threads: int, limit_s: float = 10.0) -> tuple[float, str]:
        """How long one training epoch (with its validation) of a config of the first space
        takes on this machine with ``threads`` torch threads, as one worker of the search will
        train it: measured on the first batches (at most ``limit_s`` seconds) and extrapolated
        to the whole train split. Returns the seconds and what was measured, for the user."""
        space = next(iter(self.spaces.values()))
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.spec.seed))
        if len(self.spaces) > 1:  # a config of the space timed, not of whichever is drawn
            study.enqueue_trial({"space": space.name})
        config = self.sample(study.ask())
        data = space.prepare(self.bundle, config) if space.prepare else self.bundle
        train_cfg = dict(config["train"], epochs=1)
        batch = int(train_cfg.get("batch_size", 64))
        total = max(1, -(-len(data.train) // batch))
        model = build_model(space, config["model"], data.info)
        stamps: list[float] = []  # when each batch ended; the first batch (warm-up) is not counted

        class Enough(Exception):
            pass

        def count() -> None:
            stamps.append(time.perf_counter())
            if stamps[-1] - stamps[0] > limit_s and len(stamps) < total:
                raise Enough

        old = torch.get_num_threads()
        torch.set_num_threads(max(1, threads))
        started = time.perf_counter()
        try:
            fit(model, data, train_cfg, self.metric, torch.device("cpu"), step=space.step, after_batch=count)
            validation = time.perf_counter() - stamps[-1] if stamps else None
        except Enough:  # a big epoch: validation at a third of a train step per row
            validation = None
        finally:
            torch.set_num_threads(old)
        if not stamps:  # a model that fits itself (closed form) runs no batches: its fit is its epoch
            return time.perf_counter() - started, f"space {space.name}, one fit, {len(data.train)} train rows"
        per_batch = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0] - started
        if validation is None:
            validation = per_batch * total * len(data.val) / max(1, len(data.train)) / 3
        seconds = per_batch * total + validation
        what = (f"space {space.name}, batch {batch}, {len(data.train)} train rows, "
                f"{threads} thread{'s' if threads > 1 else ''} per worker")
        return seconds, what

    def _event(self, trial: optuna.Trial, **kw: Any) -> TrialEvent:
        return TrialEvent(self.study_name, str(self.study_dir), trial.number, dict(trial.params), **kw)

    def __call__(self, trial: optuna.Trial, on_epoch: Callable[[int, float, float], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> float | list[float]:
        """Run trial ``trial``; ``on_epoch(epoch, value, train_loss)`` is called after each
        epoch (the Ray backend reports to Tune there); when ``should_stop()`` turns true the
        trial stops after its current batch, recorded as interrupted. Returns the study
        metric's value, or for a multi-objective study one value per objective."""
        start = time.perf_counter()
        config: dict[str, Any] | None = None
        try:
            config = self.sample(trial)
            space = self.spaces[config["space"]]
            trial.set_user_attr("config", config)
            self.registry.call("on_trial_start", self.spec.loggers, event=self._event(trial, config=config))
            value = self._train(trial, space, config, on_epoch, should_stop)
        except optuna.TrialPruned as exc:
            if str(exc).startswith(("too slow", "rejected before training")):
                trial.set_user_attr("pruned", str(exc))
            self._end(trial, config, "PRUNED", None, start, None)
            raise
        except (KeyboardInterrupt, StopRequested):
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("error", "interrupted")
            raise
        except Exception as exc:
            reason = error_reason(exc)
            trial.set_user_attr("error", reason)
            self._end(trial, config, "FAIL", None, start, reason)
            raise
        primary = value[0] if isinstance(value, list) else value
        self._end(trial, config, "COMPLETE", primary, start, None)
        return value

    def _end(self, trial, config, state, value, start, error) -> None:
        duration = time.perf_counter() - start
        self.registry.call("on_trial_end", self.spec.loggers, event=self._event(
            trial, config=config, state=state, value=value, duration_s=duration, error=error))

    def _train(self, trial: optuna.Trial, space: SearchSpace, config: dict[str, Any],
               on_epoch: Callable[[int, float, float], None] | None,
               should_stop: Callable[[], bool] | None = None) -> float | list[float]:
        data = space.prepare(self.bundle, config) if space.prepare else self.bundle
        seed = trial_seed(self.spec.seed, trial.number)
        tdir = self.study_dir / "trials" / str(trial.number)
        ckpt = tdir / "checkpoint.pt"
        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is not None:
            old = self.study_dir / "trials" / str(retry_of) / "checkpoint.pt"
            if old.exists() and not ckpt.exists():
                tdir.mkdir(parents=True, exist_ok=True)
                old.replace(ckpt)

        last_epoch = int(config["train"].get("epochs", 1)) - 1

        multi = self.spec.multi_objective

        # A trial can start with a curve: a retry has its dead trial's (automl.study.store.requeue:
        # pruning sees the whole curve), and a Ray trial that Tune runs again after its node was
        # lost has its own first run's. It trains again the epochs after its checkpoint, or all.
        # (Optuna's Trial read the trial when it was made: no second read of the storage here.)
        inherited = set(trial._cached_frozen_trial.intermediate_values)

        def report(epoch: int, value: float, train_loss: float) -> None:
            if multi or epoch in inherited:
                # Optuna refuses Trial.report in a multi-objective study (no pruner works on
                # several values), and Trial.report ignores a step reported before, with a
                # warning: the epoch's own value goes to the storage (the learning curves and
                # the progress display read it there), and, for a retry's re-trained epoch, to
                # the trial's cached curve that the pruner reads.
                trial.storage.set_trial_intermediate_value(trial._trial_id, epoch, float(value))
                if not multi:
                    trial._cached_frozen_trial.intermediate_values[epoch] = float(value)
            else:
                trial.report(value, epoch)
            if on_epoch is not None:
                on_epoch(epoch, value, train_loss)
            self.registry.call("on_epoch_end", self.spec.loggers, event=EpochEvent(
                self.study_name, str(self.study_dir), trial.number, epoch, train_loss, value, self.metric.name))
            # After the last epoch the trial ends anyway: asking the pruner (which reads every
            # trial of the study) would cost a query and gain nothing.
            if not multi and epoch < last_epoch and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        limits = [(self.deadline, "budget")] if self.deadline else []
        if self.spec.trial_timeout:
            limits.append((time.time() + self.spec.trial_timeout, "trial-timeout"))
        share = self.spec.trial_budget_s() if self.deadline else None
        if share:  # one trial's share of the budget
            limits.append((time.time() + share, "budget"))
        deadline, cut_by = min(limits) if limits else (None, None)
        probe = _SpeedProbe(deadline, len(data.train), int(config["train"].get("batch_size", 64))) \
            if share and trial.user_attrs.get("retry_of") is None else None

        def after_batch() -> None:
            if should_stop is not None and should_stop():
                raise StopRequested
            if probe is not None:
                probe.batch_done()

        self._reject_before_training(trial, space, config, data, seed)
        train_cfg = dict(config["train"])
        run: dict[str, Any] = {}
        for attempt in (0, 1):
            seed_everything(seed)
            model = build_model(space, config["model"], data.info)
            try:
                result = fit(model, data, train_cfg, self.metric, self.device, step=space.step,
                             report=report, seed=seed, checkpoint=ckpt,
                             checkpoint_every_s=self.checkpoint_every_s,
                             after_batch=after_batch if should_stop is not None or probe else None,
                             deadline=deadline)
                break
            except torch.OutOfMemoryError:
                # Out of device memory: halve the batch once and retry before failing.
                del model
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if attempt or int(train_cfg.get("batch_size", 1)) < 2:
                    raise TrialFailed("out of memory, also with half the batch size") from None
                train_cfg["batch_size"] = int(train_cfg["batch_size"]) // 2
                run["oom_batch_size"] = train_cfg["batch_size"]
                ckpt.unlink(missing_ok=True)
        tdir.mkdir(parents=True, exist_ok=True)
        save_model(model, model_path(tdir, model))  # fit() left the best epoch's weights in the model
        ckpt.unlink(missing_ok=True)
        run.update(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                   samples_per_s=round(result.samples / max(result.seconds, 1e-9), 1))
        run.update(self._predictions(model, data, tdir, result.best_value))
        if result.resumed_from_epoch:
            run["resumed_from_epoch"] = result.resumed_from_epoch
        if result.cut:
            run["cut"] = cut_by  # kept as finished, with its best epoch so far
        run["deploy"] = self._deploy(model, data, model_path(tdir, model))
        metrics = run.get("metrics") or {}
        for key, gap in violations(self.spec.constraints, run["deploy"], metrics).items():
            trial.set_constraint(key, gap)
        trial.set_user_attr("run", run)
        if not self.spec.multi_objective:
            return result.best_value
        values = []
        for name in self.spec.objectives:
            v = run["deploy"].get(name) if name in FIGURES else metrics.get(name)
            if v is None or not math.isfinite(float(v)):
                why = run["deploy"].get("error") or "not measured"
                raise TrialFailed(f"objective {name} has no value for this trial ({why})")
            values.append(float(v))
        return values

    def _reject_before_training(self, trial: optuna.Trial, space: SearchSpace, config: dict[str, Any],
                                data: DataBundle, seed: int) -> None:
        """Under ``--constraint``, once the study has a complete trial that meets every
        constraint: measure the untrained model's figures that training does not change
        (:func:`automl.search.deploy.untrained_misses`) and, when it clearly misses a
        constraint on one, prune the trial before it trains, with those violations set as its
        constraints (TPE, the default sampler, ranks it with the infeasible trials; samplers that
        read complete trials only, NSGA-II or GP, do not learn from it) and the figures and why
        in its ``run``. Such a trial could never be selected (feasible trials rank first) nor
        help an ensemble (which must meet the constraints, and whose size, parameters and
        latency are at least any member's), so its training would be wasted. While no trial
        meets the constraints every configuration trains, so that the search can still hand
        back the one that misses them least. A model that cannot be measured untrained (lazy
        modules, say) trains and is measured after, as any; so does a retry (``retry_of``, or a
        Ray trial run again), which continues from its dead run's checkpoint and curve."""
        if not self.spec.constraints or not checkable_before_training(self.spec.constraints) \
                or trial.user_attrs.get("retry_of") is not None or trial._cached_frozen_trial.intermediate_values:
            return  # a retry continues what its dead trial started: its curve, its checkpoint
        if not any(t.constraints and not violations_of(t)
                   for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))):
            return
        seed_everything(seed)
        model = build_model(space, config["model"], data.info)
        try:
            figures, misses = untrained_misses(model, data, self.spec.constraints, self.spec.latency_device,
                                               self.spec.latency_threads, self.spec.latency_seconds)
        except Exception:  # noqa: BLE001 - it trains and its trained model is measured, as any
            return
        finally:
            del model
        if not misses:
            return
        for key, gap in misses.items():
            trial.set_constraint(key, gap)
        why = "rejected before training: " + ", ".join(
            f"{parse_constraint(k)[0]} {figures[parse_constraint(k)[0]]:g} misses {k}" for k in misses)
        trial.set_user_attr("run", {"deploy": {**figures, "untrained": True}, "rejected": why})
        raise optuna.TrialPruned(why)

    def _deploy(self, model: Any, data: DataBundle, path: Path) -> dict[str, Any]:
        """The trained model's deployment figures (:func:`automl.search.deploy.measure`), on
        ``--latency-device`` with ``--latency-threads``, timed for ``--latency-seconds`` when
        the search optimises or constrains a figure (else briefly); a model that cannot be timed records
        why (``error``) and, under a constraint on a figure, counts as infeasible."""
        try:
            return measure(model, data, path, self.spec.latency_device, self.spec.latency_threads,
                           seconds=self.spec.latency_window)
        except Exception as exc:  # noqa: BLE001 - the trial still counts; its figures are missing
            return {"error": error_reason(exc)}


    def _predictions(self, model: Any, data: DataBundle, tdir: Path, value: float) -> dict[str, Any]:
        """Store the trained model's validation and test predictions (for ensembles, which are
        chosen on validation only) and return what the trial records of them: every metric
        the plugin registers for the task on validation (``metrics``: name -> value, the
        study's own as trained), and the validation loss, which breaks ties between trials of
        equal validation score."""
        y_val, p_val = evaluate(model, data, "val", self.device)
        y_test, p_test = evaluate(model, data, "test", self.device)
        out: dict[str, Any] = {"metrics": self._all_metrics(data, y_val, p_val, value)}
        if not save_predictions(tdir, p_val, p_test):
            return out
        save_targets(self.study_dir, y_val, y_test)
        loss = validation_loss(data.info.task, y_val, p_val)
        return {**out, "val_loss": round(loss, 6)} if loss is not None else out

    def _all_metrics(self, data: DataBundle, y_val: Any, p_val: Any, value: float) -> dict[str, float | None]:
        """Every metric the study's plugin registers that fits this task, on the validation
        outputs of the trial's model (its best epoch): the study's metric is the value the
        trial reports; one that cannot score these outputs is ``None`` (the trial still
        counts: only the study's metric decides it)."""
        try:
            registered = self.registry.get(self.spec.plugin).metrics
        except UserError:  # the study's plugin is not in this registry (a bare test objective)
            registered = {}
        return plugin_metrics(registered, data.info, y_val, p_val, {self.metric.name: value})


def plugin_metrics(registered: dict[str, Metric], info: Any, y_val: Any, p_val: Any,
                   known: dict[str, float]) -> dict[str, float | None]:
    """``known`` (the study's metric, as the trial or ensemble scored it) and every metric in
    ``registered`` (a plugin's) that fits the task of ``info``, on validation outputs ``p_val``;
    one that cannot score these outputs is ``None``. Values are rounded to 6 decimals."""
    out: dict[str, float | None] = {k: round(float(v), 6) for k, v in known.items()}
    for name, m in registered.items():
        if name in out or info.task not in m.tasks or (m.applies is not None and not m.applies(info)):
            continue
        try:
            v = float(m.fn(y_val, p_val))
            out[name] = round(v, 6) if math.isfinite(v) else None
        except Exception:  # noqa: BLE001 - a metric that does not fit these outputs is recorded as none
            out[name] = None
    return out


class _SpeedProbe:
    """Under a time budget: after a trial's first batches, the time its first epoch will take.
    A configuration that cannot train one epoch before its share of the budget ends is pruned
    at once, as too slow for this budget, rather than cut half-way through an epoch that would
    tell nothing; the sampler then ranks it with the worst and looks elsewhere."""

    BATCHES = 5

    def __init__(self, deadline: float | None, rows: int, batch_size: int) -> None:
        self.deadline, self.batches = deadline, max(1, -(-rows // max(1, batch_size)))
        self.started: float | None = None
        self.done = 0

    def batch_done(self) -> None:
        """The clock starts when the first batch ends: that batch carries the one-off costs
        (the first allocations, lazy initialisation, a loaded machine's start-up), which the
        rest of the epoch does not pay; timed from before it, a trial whose epoch takes 0.6 s
        was once projected at 173 s and pruned."""
        self.done += 1
        if self.done == 1:
            self.started = time.time()
            return
        timed = self.done - 1
        if timed != self.BATCHES or self.deadline is None or self.started is None or \
                self.batches <= self.BATCHES + 1:
            return
        per_batch = (time.time() - self.started) / timed
        epoch_end = self.started + per_batch * (self.batches - 1)
        if epoch_end > self.deadline:
            raise optuna.TrialPruned(f"too slow for the time budget: its first epoch would take about "
                                     f"{per_batch * self.batches:.0f} s, more than its share of the budget")


def make_sampler(name: str, seed: int | None, parallel: bool = False) -> optuna.samplers.BaseSampler:
    """The sampler ``--sampler`` names. Constraints need no argument here: the trials set
    them (:meth:`optuna.trial.Trial.set_constraint`) and the constraint-aware samplers (TPE,
    NSGA-II, GP) read them from the trials. Every sampler but CMA-ES also takes several
    objectives (the spec refuses ``cmaes`` for a multi-objective study)."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA_POPULATION)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel, multivariate=True,
                                          group=True, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise UserError(f"unknown sampler {name!r}; choices: {', '.join(SAMPLERS)}")


def make_pruner(name: str, max_epochs: int | None = None, constrained: bool = False) -> optuna.pruners.BasePruner:
    """The pruner ``--pruner`` names, with epochs as the resource. ``max_epochs``: the epochs
    every trial may run (a time budget or ``--max-epochs`` fixes them), which Hyperband needs
    to lay out its brackets; without it Hyperband infers it from the first trials.
    ``constrained`` (``--constraint``): it compares a trial with feasible trials only
    (:class:`FeasiblePruner`)."""
    pruner = _pruner(name, max_epochs)
    return FeasiblePruner(pruner) if constrained and not isinstance(pruner, optuna.pruners.NopPruner) else pruner


class FeasiblePruner(optuna.pruners.BasePruner):
    """``inner`` (any Optuna pruner) deciding on a study in which the complete trials that
    miss a constraint are left out. Such a trial can never be selected while a feasible one
    exists, so its learning curve is no yardstick: a vision search under ``latency_ms<=0.1``
    pruned most of its feasible MLPs for trailing the curves of CNNs three times over the
    limit, and handed back a weaker model (docs/deployment.md).

    Written by hand because Optuna's pruners do not read constraints. The filter sits in the
    storage the pruner reads (:class:`_FeasibleTrials`), not in a study wrapper: Hyperband
    builds its bracket studies from the storage itself. Only complete trials are judged
    (running ones have no constraints yet): until one meets the constraints the median
    pruner has no complete trial to compare with and prunes nothing, while Successive
    Halving and Hyperband still compare trials at their rungs, as at the start of any study.
    The Ray backend's pruning is Tune's scheduler, which this does not reach."""

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner
        self._views: dict[tuple[str, int], optuna.Study] = {}

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        key = (study.study_name, id(study._storage))
        if key not in self._views:  # one per study: building it reads the storage
            self._views = {key: optuna.Study(study_name=study.study_name, storage=_FeasibleTrials(study._storage),
                                             sampler=study.sampler, pruner=self.inner)}
        return self.inner.prune(self._views[key], trial)


class _FeasibleTrials:
    """A study storage whose trial lists leave out complete trials that miss a constraint
    (:class:`FeasiblePruner`); everything else goes to ``storage``, writes included (the rungs
    Successive Halving records on the trial it decides)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[Any]:
        return [t for t in self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
                if t.state != TrialState.COMPLETE or not violations_of(t)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def _pruner(name: str, max_epochs: int | None) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1 if max_epochs else 2, reduction_factor=3)
    if name == "hyperband":
        if max_epochs:
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, max_epochs), reduction_factor=3)
        return optuna.pruners.HyperbandPruner(min_resource=2, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"unknown pruner {name!r}; choices: {', '.join(PRUNERS)}")


def _preflight_message(exc: CheckError, plugin: str, space: str, dataset: str | None, metric: str,
                       data: DataBundle) -> str:
    """The one line a user sees when a plugin's space, data or metric cannot train."""
    where = f"plugin {plugin!r}, space {space!r}, dataset {dataset!r}"
    if exc.stage == "build":
        return f"{where}: the model cannot be built: {exc}; fix the space's build()"
    if exc.stage in ("batch", "output", "loss", "backward"):
        return (f"{where}: one training batch of the train split fails: {exc}; check the dataset's inputs "
                f"(shape {tuple(data.info.input_shape or ())} per example in DataInfo.input_shape) against what "
                "the model expects")
    if exc.stage == "evaluate":
        return f"{where}: evaluating the validation split fails: {exc}"
    expected = ("what the dataset's evaluate returns" if data.evaluate is not None else
                "(N, C) class probabilities" if data.info.task == "classification" else "(N,) predictions")
    return (f"plugin {plugin!r}: metric {metric!r} fails on the validation split of dataset {dataset!r}: {exc}; "
            f"a metric is fn(y_true, y_pred) -> float, with y_pred {expected}")


def make_runner(job: Job, device: str = "cpu") -> Objective:
    """Build a trial process's :class:`Objective` from its job: load the study's plugin and
    loggers (no other plugin is imported), resolve the spec and load the data. This is the
    factory every backend calls in its trial processes (passed by reference in the job)."""
    quiet_optuna()
    spec = StudySpec.from_json(job.spec)
    registry = load_registry(spec.plugin_paths, only={spec.plugin, *spec.loggers, *listener_names()})
    resolved = resolve(registry, spec.plugin, spec.dataset, spec.spaces, spec.metric, spec.options)
    bundle = load_data(spec.plugin, resolved.dataset, spec.data_path, resolved.options, spec.seed)
    metric = check_task_fit(resolved, bundle.info)
    return Objective(registry=registry, spec=spec, spaces=resolved.spaces, metric=metric, bundle=bundle,
                     study_name=job.study_name, study_dir=Path(job.study_dir), device=torch.device(device),
                     deadline=job.deadline)
