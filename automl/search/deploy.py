"""Deployment figures of a trained model: size, parameters, latency and throughput.

Measured once per trial, after training, in the process that trained it, on the device the
model is meant to run on (``--latency-device``, CPU by default):

- ``params``: the number of parameters of a torch module (the sum of ``numel`` of its
  parameters); ``None`` for an :class:`automl.ArrayModel` (gradient boosting, scikit-learn),
  which has no comparable count.
- ``size_bytes`` / ``size_mb``: the size of the model file (or folder) the trial stores anyway
  (``trials/N/model.pt``, a state_dict; or ``trials/N/model/``, the library's own format),
  not of an extra export. ``size_mb`` is ``size_bytes / 1e6`` (decimal megabytes).
- ``latency_ms``: the wall time of one prediction of **one row** of the validation split,
  as ``automl predict`` and evaluation compute it (:func:`automl.training.batch_outputs`:
  ``inference_mode``, the model's forward, softmax for classification, the copy to numpy;
  an ArrayModel's ``predict``), with the model put in ``eval()`` mode once beforehand, as a
  deployed model is, not before every call. After ``WARMUP`` calls that are not counted, the calls
  are timed in blocks of about ``BLOCK_SECONDS`` each, and the figure is the **fastest block's
  median** (:func:`_quiet`): interference from other processes comes in stretches of tens of
  milliseconds to over a second, and the fastest block is the model's speed outside them. When the
  search optimises or constrains a figure (``StudySpec.deployment_aware``), the calls are
  timed for ``--latency-seconds`` (default ``SECONDS``, also the default of :func:`measure`
  for a check of an exported model; at least ``MIN_CALLS`` calls; a slow model stops at twice
  that with at least ``MIN_SLOW_CALLS`` calls); otherwise briefly (at most ``QUICK_CALLS``
  calls, or ``QUICK_SECONDS``), an informative figure.
- ``latency_p95_ms``: the 95th percentile of all timed calls (the slow stretches show here);
  ``latency_calls``, ``latency_blocks``, ``latency_seconds``: how many calls and blocks were
  timed, over how long.
- ``latency_cpu_ms``: the CPU time of the calling thread, as the fastest block's median (CPU only):
  it leaves out the time the thread waits for a CPU that other processes hold (both figures
  still vary with caches and clock speed); it counts the calling thread only, so it is
  meaningful with one thread (the default).
- ``throughput``: rows per second at a batch of ``BATCH`` rows (or the whole validation split
  when smaller), timed the same way (``THROUGHPUT_*``), from the fastest block's median call.
- ``latency_threads``: torch's intra-op threads during the measurement (``--latency-threads``,
  1 by default: a figure that does not depend on how many workers share the machine), set
  with :func:`torch.set_num_threads` and restored after; ``latency_device``: where it ran.

On a GPU each timed call ends with :func:`torch.cuda.synchronize`. A small model adds
about a second to its trial (a few milliseconds when timed briefly). The figures stay noisy on a
loaded machine; ``docs/deployment.md`` gives the figures of this protocol and describes how to
check them on the target machine.

:func:`violations` turns the figures (and the trial's validation metrics) into Optuna
constraint values, positive when a ``--constraint`` is not met; :func:`ensemble_figures`
measures an ensemble's combined prediction the same way.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from automl.study.spec import FIGURES, LATENCY_SECONDS, parse_constraint
from automl.training import batch_outputs, fits_itself, save_model, split_outputs
from automl.types import DataBundle, Split, StreamSplit

if TYPE_CHECKING:  # pragma: no cover - typing only
    from automl.search.session import Session

#: A timed latency (``SECONDS``: ``--latency-seconds``'s default) takes at least ``MIN_CALLS``
#: calls; a slow model stops after twice its seconds with at least ``MIN_SLOW_CALLS`` calls.
WARMUP, BLOCK_SECONDS, MIN_BLOCKS, MIN_CALLS, SECONDS, MIN_SLOW_CALLS = 10, 0.01, 20, 30, LATENCY_SECONDS, 5
QUICK_MIN_CALLS, QUICK_SECONDS, QUICK_CALLS = 30, 0.3, 200
BATCH, THROUGHPUT_MIN_CALLS, THROUGHPUT_MIN_SECONDS, THROUGHPUT_MAX_SECONDS = 64, 3, 0.15, 1.5
#: The violation recorded for a constraint whose figure could not be measured (infeasible).
UNMEASURED = 1e9


def stored_size(path: Path | None) -> int | None:
    """Bytes of a stored model: the file, or every file under the folder."""
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def count_params(model: Any) -> int | None:
    """Parameters of a torch module; ``None`` for a model that is not one."""
    if isinstance(model, nn.Module):
        return int(sum(p.numel() for p in model.parameters()))
    return None


def _rows(inputs: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a split's inputs: a tensor or array, a mapping or tuple of them,
    or a list (the inputs of an ArrayModel, such as texts)."""
    if isinstance(inputs, Mapping):
        return {k: _rows(v, start, stop) for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(_rows(v, start, stop) for v in inputs)
    return inputs[start:stop]


def sample_split(split: Split | StreamSplit, rows: int) -> Split:
    """The first ``rows`` rows of a split as an in-memory :class:`Split` (a streamed split's
    examples are read and collated as its loader would)."""
    if isinstance(split, Split):
        return Split(_rows(split.inputs, 0, rows), split.targets[:rows])
    items = [split.dataset[i] for i in range(min(rows, len(split)))]
    inputs, targets = torch.utils.data.default_collate(items)
    return Split(inputs, torch.as_tensor(targets))


def _timed(call: Callable[[], Any], sync: Callable[[], None], warmup: int, min_calls: int, min_s: float,
           max_calls: int, max_s: float, min_slow: int) -> tuple[list[list[float]], list[list[float]]]:
    """Wall seconds and calling-thread CPU seconds of each timed call of ``call`` after
    ``warmup`` untimed ones, in blocks of calls that take about ``BLOCK_SECONDS`` each (at
    least ``MIN_BLOCKS`` blocks when ``max_calls`` allows); stops after at least ``min_calls``
    calls and ``min_s`` seconds, or ``max_calls`` calls, or ``max_s`` seconds with at least
    ``min_slow`` calls."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        call()
    sync()
    each = (time.perf_counter() - t0) / max(1, warmup)
    block = max(1, min(round(BLOCK_SECONDS / max(each, 1e-9)), max_calls // MIN_BLOCKS))
    times: list[list[float]] = []
    cpu: list[list[float]] = []
    done = 0
    started = time.perf_counter()
    while True:
        wall_b: list[float] = []
        cpu_b: list[float] = []
        for _ in range(block):
            c0, t0 = time.thread_time(), time.perf_counter()
            call()
            sync()
            wall_b.append(time.perf_counter() - t0)
            cpu_b.append(time.thread_time() - c0)
        times.append(wall_b)
        cpu.append(cpu_b)
        done += block
        spent = time.perf_counter() - started
        if done >= max_calls or (done >= min_calls and spent >= min_s) or (done >= min_slow and spent >= max_s):
            return times, cpu


def _quiet(blocks: list[list[float]]) -> float:
    """The fastest block's median: the model's speed while nothing else slowed the machine.

    Written by hand because no library estimates this: ``timeit`` reports the fastest repeat
    for the same reason ("higher values are typically not caused by variability in Python's
    speed, but by other processes interfering"), and ``torch.utils.benchmark`` medians over
    blocks but keeps the slow ones. Other processes, or other virtual machines on the same
    host, slow every call for tens of milliseconds to over a second at a time: on this
    project's 2-core virtual machine the median of up to 200 calls moved by up to 2x between
    two measurements of the same model, the fastest block's median of 2 s by under 6 % in 16
    of 18 (docs/deployment.md)."""
    return min(statistics.median(b) for b in blocks)


def time_calls(one: Callable[[], Any], many: Callable[[], Any], rows: int, device: torch.device,
               threads: int = 1, seconds: float | None = SECONDS) -> dict[str, Any]:
    """Latency of ``one()`` (a prediction of one row) and throughput of ``many()`` (a
    prediction of ``rows`` rows), with ``threads`` torch threads (restored after).
    ``seconds``: time the latency for that long (at least ``MIN_CALLS`` calls), the figure a
    search that optimises or constrains it relies on; ``None``: briefly, at most
    ``QUICK_CALLS`` calls (an informative figure that costs a fast model milliseconds)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    limits = (MIN_CALLS, seconds, 10**9) if seconds is not None else (QUICK_MIN_CALLS, QUICK_SECONDS, QUICK_CALLS)
    try:
        started = time.perf_counter()
        lat, lat_cpu = _timed(one, sync, WARMUP, limits[0], limits[1], limits[2], 2 * limits[1], MIN_SLOW_CALLS)
        spent = time.perf_counter() - started
        thr, _ = _timed(many, sync, 2, THROUGHPUT_MIN_CALLS, THROUGHPUT_MIN_SECONDS, 1000, THROUGHPUT_MAX_SECONDS, 1)
    finally:
        torch.set_num_threads(old)
    calls = [t for b in lat for t in b]
    return {"latency_ms": round(_quiet(lat) * 1e3, 4),
            "latency_p95_ms": round(float(np.percentile(calls, 95)) * 1e3, 4),
            "latency_cpu_ms": round(_quiet(lat_cpu) * 1e3, 4) if device.type == "cpu" else None,
            "throughput": round(rows / _quiet(thr), 1),
            "latency_calls": len(calls), "latency_blocks": len(lat), "latency_seconds": round(spent, 3),
            "throughput_batch": rows, "latency_threads": max(1, int(threads)), "latency_device": str(device)}


def _predictor(model: Any, split: Split, data: DataBundle, device: torch.device) -> Callable[[], Any]:
    """One prediction of ``split`` as evaluation and ``automl predict`` compute it, to numpy:
    a torch module's :func:`automl.training.batch_outputs` (the model put in eval mode once,
    beforehand, as a deployed model is; the rows moved to the device once), an ArrayModel's
    ``predict`` through :func:`automl.training.split_outputs`."""
    if not isinstance(model, nn.Module):
        return lambda: split_outputs(model, split, data.info, device)[1]
    model.eval()
    inputs = split.to(device).inputs
    return lambda: batch_outputs(model, inputs, data.info, device).cpu().numpy()


def measure(model: Any, data: DataBundle, path: Path | None, device: str | torch.device = "cpu",
            threads: int = 1, batch: int = BATCH, seconds: float | None = SECONDS) -> dict[str, Any]:
    """The deployment figures of a trained ``model`` (see the module docstring), predicting
    rows of ``data.val`` on ``device``; ``path``: where the model is stored (its size);
    ``seconds``: how long the latency is timed (:func:`time_calls`)."""
    dev = torch.device(device)
    if isinstance(model, nn.Module):
        model.to(dev)
    figures = static_figures(model, path)
    figures.update(_time_model(model, data, dev, threads, batch, seconds))
    return figures


def static_figures(model: Any, path: Path | None) -> dict[str, Any]:
    """``params``, ``size_bytes`` and ``size_mb`` of a model stored at ``path``."""
    size = stored_size(path)
    return {"params": count_params(model), "size_bytes": size,
            "size_mb": round(size / 1e6, 6) if size is not None else None}


def _time_model(model: Any, data: DataBundle, dev: torch.device, threads: int, batch: int,
                seconds: float | None) -> dict[str, Any]:
    if len(data.val) == 0:
        raise ValueError("the validation split is empty: no rows to time")
    many = sample_split(data.val, min(batch, len(data.val)))
    return time_calls(_predictor(model, sample_split(data.val, 1), data, dev),
                      _predictor(model, many, data, dev), len(many), dev, threads, seconds)


#: The figures training does not change, each with how far an untrained model's figure must
#: miss a constraint for its configuration to be rejected before training (a share of the
#: bound): the parameters and the stored size of a torch module depend on its shapes only
#: (exact); a timed figure (the fastest block's median) depends on its operations, not on
#: its weights' values, but is measured briefly before training and for ``--latency-seconds``
#: after, so it must miss by more than ``TIMED_MARGIN``. ``latency_p95_ms`` is left out: a
#: tail figure of a brief measurement is mostly the machine's noise.
TIMED_MARGIN = 0.25
BEFORE_TRAINING = {"params": 0.0, "size_bytes": 0.0, "size_mb": 0.0,
                   "latency_ms": TIMED_MARGIN, "latency_cpu_ms": TIMED_MARGIN, "throughput": TIMED_MARGIN}


def checkable_before_training(constraints: list[str]) -> bool:
    """Whether any constraint names a figure :func:`untrained_misses` can check."""
    return any(parse_constraint(c)[0] in BEFORE_TRAINING for c in constraints)


def untrained_misses(model: Any, data: DataBundle, constraints: list[str], device: str | torch.device = "cpu",
                     threads: int = 1, seconds: float = SECONDS) -> tuple[dict[str, Any], dict[str, float]]:
    """The figures of an untrained torch ``model`` that the constraints name (the size from
    the file :func:`automl.training.save_model` writes, in a temporary folder; timed only when
    one names a timed figure) and the constraints it misses by more than its figure's margin
    (:data:`BEFORE_TRAINING`): constraint -> violation. The model is timed briefly; a miss on
    a timed figure is confirmed by timing it for ``seconds`` (``--latency-seconds``), as the
    trained model would be, since a brief measurement on a loaded machine can read twice too
    slow. Only figures training does not change are checked: a model that is not a torch
    module, or one that fits itself (:func:`automl.training.fits_itself`: a fitted model's
    size and speed depend on what it learnt), is not checked: ``({}, {})``."""
    import tempfile

    from automl.study.artifacts import model_path

    names = {parse_constraint(c)[0] for c in constraints} & set(BEFORE_TRAINING)
    if not names or not isinstance(model, nn.Module) or fits_itself(model):
        return {}, {}
    dev = torch.device(device)
    model.to(dev)
    with tempfile.TemporaryDirectory(prefix="automl-untrained-") as tmp:
        path = None
        if names & {"size_bytes", "size_mb"}:
            path = model_path(Path(tmp), model)
            save_model(model, path)
        figures = static_figures(model, path)

    def misses() -> dict[str, float]:
        out = {}
        for text in constraints:
            name, _, bound = parse_constraint(text)
            if name in names and figures.get(name) is not None:
                gap = violations([text], figures, {})[text]
                if gap > BEFORE_TRAINING[name] * abs(bound):
                    out[text] = gap
        return out

    timed = names & {"latency_ms", "latency_cpu_ms", "throughput"}
    if timed:
        figures.update(_time_model(model, data, dev, threads, BATCH, None))
        if any(parse_constraint(k)[0] in timed for k in misses()):
            figures.update(_time_model(model, data, dev, threads, BATCH, seconds))
    return figures, misses()


def violations(constraints: list[str], figures: Mapping[str, Any],
               metrics: Mapping[str, Any]) -> dict[str, float]:
    """Each constraint (``"latency_ms<=2"``) as Optuna's constraint value: how far the trial is
    from meeting it (``value - bound`` for ``<=``, ``bound - value`` for ``>=``), zero or less
    when met; a strict ``<`` / ``>`` met with equality counts as a tiny violation. A figure or
    metric that was not measured counts as ``UNMEASURED`` (infeasible)."""
    out: dict[str, float] = {}
    for text in constraints:
        name, op, bound = parse_constraint(text)
        value = figures.get(name) if name in FIGURES else metrics.get(name)
        if value is None or not math.isfinite(float(value)):
            out[text] = UNMEASURED
            continue
        gap = float(value) - bound if op in ("<=", "<") else bound - float(value)
        if op in ("<", ">") and gap == 0:
            gap = 1e-12
        out[text] = gap
    return out


def measure_ensemble(session: Session, weights: Mapping[int, float]) -> dict[str, Any]:
    """The deployment figures of the ensemble of trials ``weights`` (number -> weight): the
    members are loaded from their trials' folders and each timed call runs every member on
    its own prepared rows and averages the outputs with the weights, as ``automl predict``
    does. ``params`` and ``size`` are the members' sums. One that cannot be timed has ``error``."""
    from automl.study.artifacts import saved_model
    from automl.training import build_model, load_model

    spec = session.spec
    dev = torch.device(spec.latency_device)
    configs = {t.number: t.user_attrs.get("config") for t in session.ref.load().get_trials(deepcopy=False)}
    try:
        members = []
        for number, weight in weights.items():
            config = configs[int(number)]
            space = session.resolved.plugin.spaces[config["space"]]
            data = space.prepare(session.bundle, config) if space.prepare else session.bundle
            source = saved_model(session.ref.trial_dir(int(number)))
            model = load_model(build_model(space, config["model"], data.info), source)
            if isinstance(model, nn.Module):
                model.to(dev)
            rows = min(BATCH, len(data.val))
            members.append((float(weight), _predictor(model, sample_split(data.val, 1), data, dev),
                            _predictor(model, sample_split(data.val, rows), data, dev), model, source))
        figures = time_calls(lambda: sum(w * one() for w, one, _, _, _ in members),
                             lambda: sum(w * many() for w, _, many, _, _ in members), rows, dev, spec.latency_threads,
                             spec.latency_window)
        params = [count_params(m[3]) for m in members]
        sizes = [stored_size(m[4]) for m in members]
        size = sum(sizes) if all(s is not None for s in sizes) else None
        figures.update(params=sum(params) if all(p is not None for p in params) else None,
                       size_bytes=size, size_mb=round(size / 1e6, 6) if size is not None else None)
    except Exception as exc:  # noqa: BLE001 - an ensemble that cannot be timed is recorded as such
        figures = {"error": f"{type(exc).__name__}: {exc}"}
    return figures


def ensemble_figures(session: Session, record: dict[str, Any], weights: Mapping[int, float],
                     figures: dict[str, Any] | None = None) -> bool:
    """Add an ensemble's figures (``figures``, or :func:`measure_ensemble`'s) to its record
    (``deploy``); with constraints, also ``violations`` and ``feasible``. Returns whether the
    ensemble may be kept: it meets every constraint (a metric's from the record's ``metrics``,
    the plugin's metrics on the ensemble's combined validation predictions; one it lacks
    counts as not met)."""
    spec = session.spec
    if figures is None:
        figures = measure_ensemble(session, weights)
    record["deploy"] = figures
    if not spec.constraints:
        return True
    gaps = violations(spec.constraints, figures, {**(record.get("metrics") or {}),
                                                  session.metric.name: record.get("val_value")})
    record["violations"] = {k: v for k, v in gaps.items() if v > 0}
    record["feasible"] = not record["violations"]
    return record["feasible"]


#: How an ensemble's figure follows from its members' (each timed call runs every member once,
#: whatever its weight): a sum, or for a rate the inverse of the summed inverses.
_SUMMED = ("params", "size_bytes", "size_mb", "latency_ms", "latency_p95_ms", "latency_cpu_ms")
#: The timed figures, whose estimate :func:`ensemble_admits` scales (``scale``).
_TIMED = ("latency_ms", "latency_p95_ms", "latency_cpu_ms", "throughput")


def ensemble_estimate(names: list[str], figures: Mapping[int, Mapping[str, Any]], members: frozenset[int],
                      scale: float = 1.0) -> dict[str, float] | None:
    """The figures ``names`` of trials ``members`` served together, from each trial's
    (``figures``: number -> ``deploy``): sums, throughput as rows per second of the members
    one after the other; a timed figure's estimate made ``scale`` times slower. ``None`` when
    a member lacks one."""
    out: dict[str, float] = {}
    for name in names:
        values = [figures.get(n, {}).get(name) for n in members]
        if any(v is None or not math.isfinite(float(v)) or (name == "throughput" and v <= 0) for v in values):
            return None
        value = sum(float(v) for v in values) if name in _SUMMED else 1.0 / sum(1.0 / float(v) for v in values)
        if name in _TIMED:
            value = value / scale if name == "throughput" else value * scale
        out[name] = value
    return out


def ensemble_admits(constraints: list[str], figures: Mapping[int, Mapping[str, Any]], scale: float = 1.0
                    ) -> Callable[[frozenset[int]], bool] | None:
    """For ensemble selection under ``--constraint`` on deployment figures: whether a set of
    trials (numbers), served together, meets every such constraint by
    :func:`ensemble_estimate` (``scale``: how much slower than the members' sum the ensemble
    is taken to be). A member without the figure is not admitted. ``None`` when no constraint
    names a figure. The ensemble's own measurement then decides (:func:`ensemble_overshoot`)."""
    checks = [c for c in constraints if parse_constraint(c)[0] in FIGURES]
    if not checks:
        return None
    names = sorted({parse_constraint(c)[0] for c in checks})

    def admits(members: frozenset[int]) -> bool:
        combined = ensemble_estimate(names, figures, members, scale)
        return combined is not None and all(gap <= 0 for gap in violations(checks, combined, {}).values())

    return admits


def ensemble_overshoot(constraints: list[str], measured: Mapping[str, Any], estimate: Mapping[str, float]
                       ) -> float | None:
    """How many times slower than its estimate a measured ensemble is on the timed figures
    whose constraints it misses (the largest ratio), or ``None`` when it misses none of them:
    the scale for selecting again (the averaging of outputs costs time too, and figures
    measured apart vary)."""
    worst = None
    for text in constraints:
        name = parse_constraint(text)[0]
        if name not in _TIMED or not estimate.get(name) or measured.get(name) is None:
            continue
        if violations([text], measured, {})[text] > 0:
            ratio = (estimate[name] / float(measured[name]) if name == "throughput"
                     else float(measured[name]) / estimate[name])
            worst = ratio if worst is None else max(worst, ratio)
    return worst


#: Where a study keeps the record of an ensemble dropped for missing a constraint.
DROPPED_KEY = "automl:ensemble_dropped"


def keep_ensemble(session: Session, study: Any, record: dict[str, Any], weights: Mapping[int, float],
                  figures: dict[str, Any] | None = None) -> bool:
    """finalize's hook before it stores an ensemble: its figures (``figures``, or measured:
    :func:`ensemble_figures`); when it misses a constraint, store none (the selected trial is
    the study's model) and keep its record under ``automl:ensemble_dropped`` for the CLI to say
    why."""
    from automl.study.store import ENSEMBLE_KEY

    if ensemble_figures(session, record, weights, figures):
        if study.user_attrs.get(DROPPED_KEY):
            study.set_user_attr(DROPPED_KEY, None)
        return True
    study.set_user_attr(ENSEMBLE_KEY, None)
    study.set_user_attr(DROPPED_KEY, record)
    return False
