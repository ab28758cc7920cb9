"""The core commands: search, resume, worker, leaderboard, studies, plugins.

Each parses, calls one library function, and renders. Heavy modules (the search session,
torch, optuna, the plugins) are imported inside the commands that need them, so ``automl
--help`` and the listing commands start at once.
"""

from __future__ import annotations

import enum
import json
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleDimensions

from automl.backends.base import StopSignals
from automl.errors import UserError
from automl.study.spec import AS_MANY_AS_FIT, DEFAULT_TRIALS, StudySpec

#: Output that is not a terminal (a pipe, a file, a test's capture) is not wrapped at 80
#: columns: tables take the width they need, so each row stays one line for grep and cut.
#: COLUMNS still sets the width where given.
PIPED_WIDTH = 1000


class _Console(Console):
    """A console that decides its width each time it draws, from where its output goes now:
    a terminal's own width, ``COLUMNS`` where set, else (a pipe, a file) no limit
    (``PIPED_WIDTH``). Rich alone would take the width of whichever standard stream is a
    terminal (stdout piped but stderr on a terminal: 80 columns), and only once."""

    def _piped(self) -> bool:
        stream = self.file
        return not os.environ.get("COLUMNS") and not (hasattr(stream, "isatty") and stream.isatty())

    @property
    def size(self) -> ConsoleDimensions:
        """The width and height to draw at now (see the class)."""
        if self._piped():
            return ConsoleDimensions(PIPED_WIDTH, 25)
        return Console.size.fget(self)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)

    @property
    def soft_wrap(self) -> bool:
        """Whether printed text is left unbroken: as set, and always when piped."""
        return self._soft_wrap or self._piped()

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value


def _console(stderr: bool = False) -> Console:
    return _Console(stderr=stderr)


def table_width(target: Console | None = None) -> int | None:
    """The width a table must fit: the terminal's (or ``COLUMNS``); ``None`` (no limit) when
    the output is piped."""
    width = (target or console).width
    return None if width >= PIPED_WIDTH else width


console = _console()
err_console = _console(stderr=True)


class Fmt(str, enum.Enum):
    """``--format`` of ``automl leaderboard``."""

    table = "table"
    json = "json"
    csv = "csv"


class ListFmt(str, enum.Enum):
    """``--format`` of the listing commands (``studies``, ``plugins``, ``compare``, ``plugins check``)."""

    table = "table"
    json = "json"
    csv = "csv"


# Shared options, defined once.
StudyArg = Annotated[str, typer.Argument(help="Study name (a folder under studies/).", show_default=False)]
PluginPathOpt = Annotated[list[str], typer.Option("--plugin-path",
                                                  help="Load a plugin from a module or .py file (development).")]
ListFormatOpt = Annotated[ListFmt, typer.Option("--format", help="table, json or csv (json and csv: only the "
                                                                 "data on standard output, no colour).")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Trials run at once, each in its own process.")]

app = typer.Typer(name="automl", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Plugin-based AutoML and hyperparameter tuning for PyTorch.")
plugins_app = typer.Typer(help="List the plugins found, with their datasets, spaces and metrics.",
                          invoke_without_command=True, rich_markup_mode=None)
app.add_typer(plugins_app, name="plugins")


_D = StudySpec(plugin="")  # the defaults, defined once in StudySpec

#: ``automl search``'s option help, kept apart so the signature stays readable.
HELP = {
    "plugin": "Plugin to search with (see: automl plugins).",
    "dataset": "Dataset of the plugin (default: the plugin's).",
    "space": "Model family; repeat to search several.",
    "metric": "Metric to optimise (default: the plugin's).",
    "data": "Path to the dataset's files.",
    "option": "Dataset option key=value; repeatable.",
    "trials": "Number of finished trials to reach (default 20; with --timeout, as many as fit).",
    "timeout": "Wall-clock budget of the whole search in seconds, finalize included: trials run at the "
               "deadline stop after their current batch and keep their best epoch; every trial's epochs are "
               "set from one epoch timed here, and Hyperband prunes (--pruner auto).",
    "trial_timeout": "Stop any one trial after this many seconds; it keeps its best epoch so far.",
    "sampler": "tpe, random, cmaes, gp, qmc or nsga2 (NSGA-II, for several --objective).",
    "pruner": "auto (hyperband with --timeout, else median), median, asha, hyperband or none.",
    "study": "Study name (default: plugin-dataset-time).",
    "storage": "Optuna storage URL (default: a SQLite file under studies/).",
    "seed": "Seed of the sampler, the splits and every trial.",
    "max_failures": "Stop after this many failed trials (default: the target or 3, whichever is more).",
    "max_retries": "Rerun a configuration whose process died (a crash, the OOM killer) at most this many times; "
                   "then it is recorded FAIL and the search goes on.",
    "max_epochs": "Cap every trial's epochs (quick smoke runs).",
    "backend": "local (worker processes) or ray (Ray Tune).",
    "address": "Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT (needs a PostgreSQL --storage).",
    "artifacts": "Where trial models and predictions and the best model are stored for every machine: a folder all "
                 "machines mount at the same path, or s3://BUCKET (default: the study folder only).",
    "cpus_per_trial": "CPUs reserved per trial (ray).",
    "gpus_per_trial": "GPUs per trial; fractions share a GPU (0.5 = 2 trials).",
    "gpus": "GPUs to use: auto, none, or indices like 0,1,3.",
    "log": "Enable a logger plugin (csv, tensorboard); repeatable.",
    "checkpoint_every": "Checkpoint a running trial at most this often (seconds), so a killed trial continues "
                        "from its last epoch.",
    "dry_run": "Check everything and show the plan; write nothing.",
    "ensemble": "Build a post-hoc ensemble from the best N trials' validation predictions (0: none).",
    "objective": "Optimise this metric or deployment figure (latency_ms, latency_p95_ms, size_mb, params, "
                 "throughput); repeat for a multi-objective search with a Pareto front (the first is the primary; "
                 "pruning is off). See docs/deployment.md.",
    "constraint": "Keep only trials that meet NAME<=NUMBER (or <, >=, >) for selection, e.g. \"latency_ms<=2\", "
                  "\"size_mb<=5\", \"params<=1e6\" or a metric; repeatable. Once a trial meets them, models that "
                  "clearly miss a limit on size, parameters or speed are measured untrained and not trained.",
    "latency_device": "Where each trained model's latency is measured: cpu or cuda.",
    "latency_threads": "Torch threads while latency is measured (recorded with it).",
    "latency_seconds": "How long each model's latency is timed when a figure is an objective or constraint "
                       "(the fastest stretch counts; longer is steadier on a busy machine).",
    "refit": "Train the handed-back models (the best trial, the ensemble's members) again on train + "
             "validation: off (default), auto (small in-memory data, one machine), on.",
}


@app.command()
def search(
    plugin: Annotated[str, typer.Option("--plugin", "-p", help=HELP["plugin"])],
    dataset: Annotated[str | None, typer.Option(help=HELP["dataset"])] = None,
    space: Annotated[list[str] | None, typer.Option("--space", help=HELP["space"])] = None,
    metric: Annotated[str | None, typer.Option(help=HELP["metric"])] = None,
    data: Annotated[str | None, typer.Option("--data", help=HELP["data"])] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help=HELP["option"])] = None,
    trials: Annotated[int | None, typer.Option(help=HELP["trials"], show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option(help=HELP["timeout"])] = None,
    trial_timeout: Annotated[float | None, typer.Option(help=HELP["trial_timeout"])] = None,
    workers: WorkersOpt = _D.workers,
    sampler: Annotated[str, typer.Option(help=HELP["sampler"])] = _D.sampler,
    pruner: Annotated[str, typer.Option(help=HELP["pruner"])] = _D.pruner,
    study: Annotated[str | None, typer.Option(help=HELP["study"])] = None,
    storage: Annotated[str | None, typer.Option(help=HELP["storage"])] = None,
    seed: Annotated[int, typer.Option(help=HELP["seed"])] = _D.seed,
    max_failures: Annotated[int | None, typer.Option(help=HELP["max_failures"])] = None,
    max_retries: Annotated[int, typer.Option(help=HELP["max_retries"])] = _D.max_retries,
    max_epochs: Annotated[int | None, typer.Option(help=HELP["max_epochs"])] = None,
    backend: Annotated[str, typer.Option(help=HELP["backend"])] = _D.backend,
    address: Annotated[str | None, typer.Option(help=HELP["address"])] = None,
    artifacts: Annotated[str | None, typer.Option(help=HELP["artifacts"])] = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help=HELP["cpus_per_trial"])] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help=HELP["gpus_per_trial"])] = None,
    gpus: Annotated[str, typer.Option(help=HELP["gpus"])] = _D.gpus,
    log: Annotated[list[str] | None, typer.Option("--log", help=HELP["log"])] = None,
    checkpoint_every: Annotated[float, typer.Option(help=HELP["checkpoint_every"])] = _D.checkpoint_every_s,
    ensemble: Annotated[int, typer.Option(help=HELP["ensemble"])] = _D.ensemble,
    refit: Annotated[str, typer.Option(help=HELP["refit"])] = _D.refit,
    objective: Annotated[list[str] | None, typer.Option("--objective", help=HELP["objective"])] = None,
    constraint: Annotated[list[str] | None, typer.Option("--constraint", help=HELP["constraint"])] = None,
    latency_device: Annotated[str, typer.Option(help=HELP["latency_device"])] = _D.latency_device,
    latency_threads: Annotated[int, typer.Option(help=HELP["latency_threads"])] = _D.latency_threads,
    latency_seconds: Annotated[float, typer.Option(help=HELP["latency_seconds"])] = _D.latency_seconds,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=HELP["dry_run"])] = False,
    plugin_path: PluginPathOpt = [],
) -> int:
    """Run a search and store it as a study."""
    started = time.time()
    from automl.search import session as search_session
    from automl.study.resolve import option_pairs

    spec = StudySpec(
        plugin=plugin, dataset=dataset, spaces=list(space or []), metric=metric, data_path=data,
        options=option_pairs(option or []), sampler=sampler, pruner=pruner, seed=seed,
        trials=trials if trials is not None else (AS_MANY_AS_FIT if timeout else DEFAULT_TRIALS),
        timeout=timeout, trial_timeout=trial_timeout, workers=workers, max_failures=max_failures,
        max_retries=max_retries, max_epochs=max_epochs, ensemble=ensemble, refit=refit, backend=backend,
        address=address, artifacts=artifacts, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, gpus=gpus,
        loggers=list(log or []), checkpoint_every_s=checkpoint_every, plugin_paths=list(plugin_path),
        objectives=list(objective or []), constraints=list(constraint or []), latency_device=latency_device,
        latency_threads=latency_threads, latency_seconds=latency_seconds)
    # Until the study is created, Ctrl-C raises at once (nothing is written yet); from then on
    # it is recorded and acted on between steps, so it never leaves a half-written study.
    session = search_session.plan_search(spec, study, storage, warm=not dry_run, started=started,
                                         measure=dry_run)
    s = session.spec
    with StopSignals() as stop:
        if not dry_run:
            search_session.create_study(session)
        console.print(f"[bold]automl[/] {'would create' if dry_run else ''} study [cyan]{session.ref.name}[/]: "
                      f"plugin {s.plugin}, dataset {s.dataset}, space {', '.join(s.spaces)}, {s.metric} "
                      f"({s.direction}), {_target(s)}, {s.workers} worker(s), {s.backend} backend, "
                      f"storage {session.ref.url}")
        for key, value in session.bundle.summary.items():
            console.print(f"  data: {key}: {value}")
        _print_goals(s)
        _print_budget(session)
        if dry_run:
            return 0
        return _run_and_report(session, stop)


def _print_goals(spec: StudySpec) -> None:
    """The objectives and constraints of a search, and that a multi-objective one is not pruned."""
    if spec.multi_objective:
        goals = ", ".join(f"{o} ({d})" for o, d in zip(spec.objectives, spec.directions or []))
        console.print(f"  objectives: {goals}; the first is the primary")
        console.print("  pruning is off: Optuna's pruners compare one value per epoch, and this study has several "
                      "objectives")
    if spec.constraints:
        console.print(f"  constraints: {', '.join(spec.constraints)} (figures measured on {spec.latency_device}, "
                      f"{spec.latency_threads} thread{'s' if spec.latency_threads > 1 else ''}, "
                      f"timed {spec.latency_seconds:g} s each)")


def _target(spec: StudySpec) -> str:
    return "as many trials as the budget allows" if spec.trials >= AS_MANY_AS_FIT else f"{spec.trials} trials"


def _print_budget(session: Any) -> None:
    """What one epoch costs here, and what fits in the budget."""
    s = session.spec
    if not s.epoch_s:
        return
    line = f"  time: one epoch takes about {s.epoch_s:.2f} s here ({session.epoch_measure})"
    if s.timeout:
        epochs = s.fixed_epochs()
        line += (f"; budget {s.timeout:g} s, {s.reserve_s():.0f} s of it kept for the end: trials run up to "
                 f"{epochs} epochs, {s.pruner} pruning, about "
                 f"{max(1, int((s.timeout - s.reserve_s()) * s.workers / (s.epoch_s * max(1, epochs or 1))))} "
                 "full-length trials' worth of epochs")
    console.print(line)


def _stopped_code(stop: Any) -> int:
    return 143 if stop.reason == "terminated" else 130


def _run_and_report(session: Any, stop: Any, owner: bool = True) -> int:
    """Run the session, then (as the owner of the search) finalize and show the leaderboard;
    a joining worker (``owner=False``) only reports where the study stands."""
    from automl.output import render
    from automl.search import session as search_session

    for w in session.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    if stop.reason:  # before any trial ran: the study is whole; resume runs it
        err_console.print(f"stopped before any trial ran; continue with: automl resume {session.ref.name}")
        return _stopped_code(stop)
    if session.requeued:
        console.print(f"re-queued trials {', '.join(map(str, session.requeued))} (their runs did not finish)")
    # Progress goes to stderr: standard output keeps only the results (the leaderboard).
    # A multi-objective study's progress shows its primary objective.
    shown = session.spec.objectives[0] if session.spec.multi_objective else session.metric.name
    with render.SearchProgress(err_console, session.spec.trials, shown, started=session.started,
                               budget_s=session.spec.timeout) as progress:
        outcome = search_session.run(session, on_progress=progress.update, stop=stop, owner=owner)
    if outcome.reason == "killed":  # a second Ctrl-C: out at once; resume recovers the trials
        err_console.print(f"stopped at once; rerun the unfinished trials with: automl resume {session.ref.name}")
        return 130
    if not owner:
        snap = outcome.snapshot
        console.print(f"worker done: study {session.ref.name} has {snap.finished} of {snap.target} trials finished; "
                      "the search that owns it (or automl resume) selects and saves the best model")
        for e in outcome.errors:
            err_console.print(f"[red]error:[/] {e}")
        if outcome.reason in ("interrupted", "terminated"):
            return 130 if outcome.reason == "interrupted" else 143
        return 1 if outcome.reason in ("failures", "worker-error") else 0
    best = search_session.finalize(session, reason=outcome.reason)
    _show_result(session, best)
    for e in outcome.errors:
        err_console.print(f"[red]error:[/] {e}")
    name = session.ref.name
    if outcome.reason in ("interrupted", "terminated"):
        err_console.print(f"stopped: running trials are marked and will rerun with: automl resume {name}")
        return 130 if outcome.reason == "interrupted" else 143
    if outcome.reason == "failures":
        err_console.print(f"error: stopped after {outcome.snapshot.counts['FAIL']} failed trials "
                          f"(--max-failures); see the reasons above, then: automl resume {name}")
        return 1
    if outcome.reason == "worker-error":
        return 1
    if session.spec.timeout:
        from automl.study.results import run_summary

        spent = run_summary(session.ref.load(), session.started)
        console.print(f"budget {session.spec.timeout:g} s, used {time.time() - session.started:.0f} s: "
                      f"{spent['started']} trials started, {spent['finished']} finished, {spent['cut']} cut by the "
                      f"budget (kept with their best epoch), {spent['pruned']} pruned, {spent['failed']} failed; "
                      f"{spent['seconds_per_epoch'] or '-'} s per epoch")
    if outcome.reason == "timeout":
        console.print(f"timeout reached; continue with: automl resume {name}")
    return 0


def _show_result(session: Any, best: dict | None) -> None:
    from automl.output import render
    from automl.study import results

    study = session.ref.load()
    rows = results.leaderboard(study)
    shown = rows[:10]
    title = f"leaderboard of {session.ref.name}" + (f" (top 10 of {len(rows)})" if len(rows) > 10 else "")
    console.print(render.leaderboard_table(shown, metric=session.metric.name, direction=session.metric.direction,
                                           baselines=results.baselines(study), title=title,
                                           ensemble=results.ensemble(study), width=table_width(),
                                           figures=goal_figures(session.spec.to_json(), rows)))
    if best is None:
        console.print("[red]no trial completed[/]")
        return
    _show_goals(session.spec, study, rows, best)
    console.print(render.params_table(best["params"], f"best trial {best['number']}"))
    console.print(f"best {best['metric']}: validation [bold green]{render.fmt(best['value'])}[/], "
                  f"test [bold]{render.fmt(best['test_value'])}[/]")
    console.print(f"best model saved to {session.ref.dir / 'best'}")
    ens = results.ensemble(study)
    if ens:
        members = ", ".join(f"#{n} x{float(w):.2f}" for n, w in ens["members"].items())
        console.print(f"ensemble of {len(ens['members'])} trials ({members}): validation "
                      f"[bold green]{render.fmt(ens['val_value'])}[/], test [bold]{render.fmt(ens['test_value'])}[/]"
                      f" - the study's final model (automl export / predict use it)")


def goal_figures(spec: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The deployment figures a study's objectives and constraints name (shown by default)."""
    from automl.output.render import figure_names
    from automl.study.spec import parse_constraint

    named = {*(spec.get("objectives") or []), *(parse_constraint(c)[0] for c in spec.get("constraints") or [])}
    return [f for f in figure_names(rows) if f in named]


def _show_goals(spec: StudySpec, study: Any, rows: list[dict[str, Any]], best: dict[str, Any]) -> None:
    """After a search: whether the selected trial meets the constraints (or, when none does,
    that the least-violating one was selected), the Pareto front, a dropped ensemble."""
    from automl.output.render import fmt
    from automl.search.deploy import DROPPED_KEY

    row = next((r for r in rows if r["number"] == best["number"]), {})
    if spec.constraints and row.get("feasible") is False:
        misses = ", ".join(f"{k} by {fmt(float(v), 3)}" for k, v in (row.get("violations") or {}).items())
        err_console.print(f"[red]no trial meets every --constraint ({', '.join(spec.constraints)})[/]: the selected "
                          f"model is trial {best['number']}, the one that misses them least ({misses}); relax the "
                          "constraint or search other spaces")
    elif spec.constraints:
        feasible = sum(1 for r in rows if r.get("feasible"))
        rejected = sum(1 for r in rows if r.get("rejected"))
        skipped = (f"; {rejected} rejected before training (measured untrained, they clearly miss one)"
                   if rejected else "")
        console.print(f"constraints {', '.join(spec.constraints)}: {feasible} of "
                      f"{sum(r['state'] == 'COMPLETE' for r in rows)} complete trials meet them{skipped}; trial "
                      f"{best['number']} is the best of those")
    if spec.multi_objective:
        front = [r for r in rows if r.get("front")]
        console.print(f"Pareto front of {', '.join(spec.objectives)}: {len(front)} trial(s) "
                      f"({', '.join('#' + str(r['number']) for r in front)}), listed first; the best model is the "
                      f"member best on {spec.objectives[0]}; export or predict any of them with --trial N")
    dropped = study.user_attrs.get(DROPPED_KEY)
    if dropped:
        misses = ", ".join(f"{k} by {fmt(float(v), 3)}" for k, v in (dropped.get("violations") or {}).items())
        console.print(f"the ensemble was not kept: it misses the constraints ({misses})")


@app.command()
def resume(
    name: StudyArg,
    trials: Annotated[int | None, typer.Option(help="Run this many more finished trials (default: up to the "
                                                    "target).")] = None,
    workers: Annotated[int | None, typer.Option(help="Workers (default: as stored).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be rerun, and stop.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Continue even if the search space changed.")] = False,
    backend: Annotated[str | None, typer.Option(help="local or ray (default: as stored).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join, with --backend ray.")] = None,
    max_retries: Annotated[int | None, typer.Option(help=HELP["max_retries"] + " (default: as stored)")] = None,
    timeout: Annotated[float | None, typer.Option(help="A time budget for this run, as for search (default: the "
                                                       "study's, afresh).")] = None,
    plugin_path: PluginPathOpt = [],
) -> int:
    """Continue a stored study after Ctrl-C, a crash or kill -9."""
    started = time.time()
    from automl.backends.base import snapshot
    from automl.search import session as search_session
    from automl.study.recovery import to_recover

    session = search_session.plan_resume(name, trials, force, plugin_path, workers, backend, address,
                                         warm=not dry_run, max_retries=max_retries, timeout=timeout,
                                         started=started)
    study = session.ref.load()
    finished = snapshot(study, session.spec.trials, 0).finished
    if dry_run:
        console.print(f"study {name}: {finished} finished of target {session.spec.trials}; "
                      f"would run {max(0, session.spec.trials - finished)} more; a configuration whose process "
                      f"dies is rerun at most {session.spec.max_retries} times (--max-retries)")
        for trial, why in to_recover(study, session.spec.max_retries):
            verb = "would not rerun" if "not rerun" in why else "would rerun"
            console.print(f"  {verb} trial {trial.number} ({why}) with {trial.params}")
        for trial in study.get_trials(deepcopy=False):
            cut = (trial.user_attrs.get("run") or {}).get("cut")
            if cut and trial.state.name == "COMPLETE":
                by = "the time budget" if cut == "budget" else "--trial-timeout"
                console.print(f"  trial {trial.number} was cut by {by} after "
                              f"{trial.user_attrs['run'].get('epochs_run')} epochs: it counts as finished, "
                              "with its best epoch")
        for w in session.warnings:
            err_console.print(f"[yellow]warning:[/] {w}")
        return 0
    console.print(f"[bold]automl[/] resuming [cyan]{name}[/]: {finished} of {session.spec.trials} trials finished")
    _print_goals(session.spec)
    with StopSignals() as stop:
        return _run_and_report(session, stop)


@app.command()
def worker(
    name: StudyArg,
    storage: Annotated[str | None, typer.Option(help="The study's storage URL, when it is not under studies/ here "
                                                     "(a shared PostgreSQL or MySQL).")] = None,
    workers: WorkersOpt = 1,
    plugin_path: PluginPathOpt = [],
) -> int:
    """Join a study that is running elsewhere and work on its trials until the target is reached."""
    from automl.backends import get_backend
    from automl.search import session as search_session

    session = search_session.plan_resume(name, None, False, plugin_path, workers, storage=storage, warm=True)
    session.spec.backend, session.backend = "local", get_backend("local")
    console.print(f"[bold]automl[/] worker joining [cyan]{name}[/] ({session.ref.url}) with {workers} process(es)")
    with StopSignals() as stop:
        return _run_and_report(session, stop, owner=False)


def _pick(given: str | None, available: list[str], what: str,
          aliases: dict[str, str] | None = None) -> list[str] | None:
    """``--columns`` / ``--metrics``: comma-separated names (``all``: every one) as a list of
    the available names, or ``None`` for the default; an unknown name is a user error."""
    if given is None:
        return None
    names = [n.strip() for n in given.split(",") if n.strip()]
    if names == ["all"]:
        return list(available)
    aliases = aliases or {}
    out = []
    for n in names:
        key = n if n in available else aliases.get(n)
        if key is None:
            choices = ", ".join(sorted({*available, *aliases})) or "none"
            raise UserError(f"unknown {what} {n!r}; choices: all, {choices}")
        out.append(key)
    return out


@app.command()
def leaderboard(
    name: StudyArg,
    top: Annotated[int | None, typer.Option(help="Show only the best K trials.")] = None,
    format: Annotated[Fmt, typer.Option("--format", help="table, json or csv (json and csv carry every "
                                                         "parameter and metric).")] = Fmt.table,
    best: Annotated[bool, typer.Option("--best", help="Show the best trial in detail (params, confusion "
                                                      "matrix).")] = False,
    columns: Annotated[str | None, typer.Option("--columns", help="Parameters and deployment figures to show, "
                                                "comma-separated (e.g. width,depth,lr,latency_ms,size_mb), or all "
                                                "(default: the parameters that vary across the study, the model's "
                                                "first, and the figures its objectives and constraints name).")] = None,
    metrics: Annotated[str | None, typer.Option("--metrics", help="Validation metrics to show, "
                                                "comma-separated, or all (default: all the trials "
                                                "recorded).")] = None,
) -> None:
    """Show a study's trials, best first: one line each, with every validation metric and
    the parameters that vary."""
    from automl.output import render
    from automl.study import results, store

    if top is not None and top <= 0:
        raise UserError(f"--top must be at least 1, not {top}")
    ref = store.open_ref(name)
    study = ref.load()
    spec = store.spec_of(study)
    rows = results.leaderboard(study)
    keys = render.param_order(rows)
    figure_cols = render.figure_names(rows)
    picked = _pick(columns, keys + [f for f in figure_cols if f not in keys], "parameter or figure in --columns",
                   {k.split(".", 1)[1]: k for k in keys if "." in k})
    params = [k for k in picked if k in keys] if picked is not None else None
    figures = [k for k in picked if k not in keys] if picked is not None else goal_figures(spec, rows)
    shown_metrics = _pick(metrics, render.metric_names(rows, spec["metric"]), "metric in --metrics")
    if shown_metrics is not None and spec["metric"] not in shown_metrics:
        shown_metrics.insert(0, spec["metric"])
    rows = rows[:top] if top else rows
    if format == Fmt.json:
        sys.stdout.write(render.dump_json(rows) + "\n")
        return
    if format == Fmt.csv:
        sys.stdout.write(render.rows_csv(rows, spec["metric"]))
        return
    total = len(results.leaderboard(study)) if top else len(rows)
    title = f"leaderboard of {name}" + (f" (top {len(rows)} of {total})" if len(rows) < total else "")
    console.print(render.leaderboard_table(rows, metric=spec["metric"], direction=spec["direction"],
                                           baselines=results.baselines(study), title=title,
                                           ensemble=results.ensemble(study), params=params,
                                           metrics=shown_metrics, width=table_width(), figures=figures))
    detail = study.user_attrs.get(store.BEST_KEY)
    if best and detail:
        console.print(render.params_table(detail["params"], f"best trial {detail['number']}"))
        table = render.confusion_table(detail)
        if table is not None:
            console.print(table)


@app.command()
def studies(format: ListFormatOpt = ListFmt.table) -> None:
    """List the stored studies."""
    from automl.output import render
    from automl.study import results, store

    items = []
    for ref in store.list_refs():
        try:
            items.append(results.summary(ref, ref.load()))
        except UserError as exc:
            items.append({"name": ref.name, "storage": ref.url, "error": str(exc), "finished": 0, "target": 0})
    if format == ListFmt.json:
        sys.stdout.write(render.dump_json(items) + "\n")
    elif format == ListFmt.csv:
        columns = ["name", "plugin", "dataset", "metric", "direction", "complete", "finished", "target", "failed",
                   "best_value", "storage", "error"]
        sys.stdout.write(render.records_csv(items, columns))
    else:
        console.print(render.studies_table(items))


@plugins_app.callback()
def plugins(
    ctx: typer.Context,
    format: ListFormatOpt = ListFmt.table,
    all: Annotated[bool, typer.Option("--all", help="Also show plugins blocked by AUTOML_PLUGINS.")] = False,
    plugin_path: PluginPathOpt = [],
) -> None:
    """List the plugins found, with version, datasets, spaces and metrics; broken ones with the reason."""
    from automl.output import render
    from automl.plugins import load_registry

    if ctx.invoked_subcommand is not None:
        return
    registry = load_registry(plugin_path)
    items = []
    for p in registry.plugins.values():
        status = "ok" if p.ok else ("blocked" if p.blocked else "broken")
        if status == "blocked" and not all:
            continue
        items.append({"name": p.name, "version": p.version, "status": status, "error": p.error,
                      "source": p.source, "description": p.info.description if p.info else "",
                      "datasets": sorted(p.datasets), "spaces": sorted(p.spaces), "metrics": sorted(p.metrics),
                      "baselines": sorted(p.baselines), "hooks": p.hooks(),
                      "defaults": {"dataset": p.info.default_dataset, "space": p.info.default_space,
                                   "spaces": list(p.info.default_spaces),
                                   "metric": p.info.default_metric} if p.info else {}})
    if format == ListFmt.json:
        sys.stdout.write(json.dumps(items, indent=2) + "\n")
    elif format == ListFmt.csv:
        sys.stdout.write(render.records_csv(items))
    else:
        console.print(render.plugins_table(items))
