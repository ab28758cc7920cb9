"""A trial's files: its model and its predictions, in the trial's folder of the study store.

- ``model.pt``: a torch module's ``state_dict`` (read back with ``weights_only=True``), or
  ``model/``: an :class:`automl.ArrayModel` saved by its own ``save`` (the library's format).
- ``predictions.npz``: the trained model's predictions on the validation and test splits
  (float32 arrays, ``val`` and ``test``), what ensembles are selected and scored from; written
  only where a prediction is numbers per row (classes, values; not a ranked list).
- ``STUDY/predictions/targets.npz``: the targets those predictions are scored against.

Arrays are numpy's compressed ``.npz`` and are always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

MODULE_FILE, ARRAY_DIR, PREDICTIONS = "model.pt", "model", "predictions.npz"
#: A refit model's test predictions (beside it in ``refit/N/``).
TEST_PREDICTIONS = "test_predictions.npz"


def model_path(folder: Path, model: Any) -> Path:
    """Where a trained ``model`` is stored in a trial's ``folder``."""
    return folder / (MODULE_FILE if hasattr(model, "state_dict") else ARRAY_DIR)


def saved_model(folder: Path) -> Path | None:
    """The model stored in a trial's (or ``best/``) folder, or ``None``."""
    for candidate in (folder / MODULE_FILE, folder / ARRAY_DIR):
        if candidate.exists():
            return candidate
    return None


#: The record beside a refit model (:mod:`automl.search.refit`): what it was trained on.
REFIT_RECORD = "refit.json"


def refit_folder(study_dir: Path, number: int) -> Path:
    """Where trial ``number``'s model refit on train + validation lives."""
    return study_dir / "refit" / str(number)


def refit_model(study_dir: Path, number: int) -> Path | None:
    """Trial ``number``'s refit model file, when a finalize made one (its record is written
    last, so a half-written one does not count)."""
    folder = refit_folder(study_dir, number)
    return saved_model(folder) if (folder / REFIT_RECORD).is_file() else None


def numeric(pred: Any) -> np.ndarray | None:
    """``pred`` as a float32 array when it is numbers per row (what ensembles can average)."""
    arr = np.asarray(pred) if not isinstance(pred, dict) else None
    if arr is None or arr.dtype.kind not in "fiu" or arr.ndim == 0:
        return None
    return arr.astype(np.float32)


def _write(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_predictions(folder: Path, val: Any, test: Any) -> bool:
    """Store a model's validation and test predictions; ``False`` when they are not numbers."""
    v, t = numeric(val), numeric(test)
    if v is None or t is None:
        return False
    _write(folder / PREDICTIONS, val=v, test=t)
    return True


def load_predictions(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(val, test)`` predictions stored for a trial, or ``None``."""
    path = folder / PREDICTIONS
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["val"], npz["test"]


def save_test_predictions(folder: Path, test: Any) -> bool:
    """Store a refit model's test predictions (it trained on the validation rows, so it has
    no validation predictions to store); ``False`` when they are not numbers."""
    t = numeric(test)
    if t is None:
        return False
    _write(folder / TEST_PREDICTIONS, test=t)
    return True


def load_test_predictions(folder: Path) -> np.ndarray | None:
    """The test predictions :func:`save_test_predictions` stored in ``folder``, or ``None``."""
    path = folder / TEST_PREDICTIONS
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["test"]


def save_targets(study_dir: Path, y_val: Any, y_test: Any) -> None:
    """The validation and test targets of a study, once (every trial's are the same)."""
    path = study_dir / "predictions" / "targets.npz"
    if not path.exists():
        _write(path, val=np.asarray(y_val), test=np.asarray(y_test))


def load_targets(study_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    path = study_dir / "predictions" / "targets.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["val"], npz["test"]


# ---------------------------------------------------------------------------------------------
# The shared artifact store (``--artifacts URL``): where trial files go when the processes that
# work a study do not share a disk. Optuna's own artifact stores do the moving; every uploaded
# file is recorded by Optuna on its trial (or the study), so any machine that reaches the study's
# storage finds them (``optuna.artifacts.get_all_artifact_meta``).
# ---------------------------------------------------------------------------------------------

#: What a trial uploads: its model (a ``model/`` folder travels as ``model.tar``) and its
#: predictions. ``best/`` (the selected model and its config) and the targets go to the study.
MODEL_TAR = ARRAY_DIR + ".tar"
TRIAL_FILES = (MODULE_FILE, MODEL_TAR, PREDICTIONS)
TARGETS = "targets.npz"
BEST_FILES = ("config.json", MODULE_FILE, MODEL_TAR)


def check_artifacts_url(url: str) -> str:
    """A ``--artifacts`` URL, normalised (a folder becomes absolute); a :class:`UserError`
    for one that cannot work. Connects to nothing and writes nothing."""
    from automl.errors import UserError

    if not url or not url.strip():
        raise UserError("--artifacts needs a folder every machine mounts (/shared/automl-artifacts) or s3://BUCKET")
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        if not bucket or prefix.strip("/"):
            raise UserError(f"--artifacts {url}: give a bucket only (s3://BUCKET); Optuna's Boto3ArtifactStore "
                            "writes its files at the bucket's top level")
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise UserError(f"--artifacts {url} needs boto3 (Optuna's Boto3ArtifactStore): pip install boto3") from None
        return f"s3://{bucket}"
    if "://" in url and not url.startswith("file://"):
        raise UserError(f"unsupported --artifacts URL {url!r}; give a folder every machine mounts at the same path "
                        "(/shared/automl-artifacts or file:///shared/...) or s3://BUCKET")
    path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser().resolve()
    if not path.parent.is_dir():
        raise UserError(f"--artifacts {url}: folder {path.parent} does not exist")
    if path.exists() and not path.is_dir():
        raise UserError(f"--artifacts {url}: {path} is not a folder")
    return str(path)


_STORES: dict[str, Any] = {}


def open_store(url: str | None) -> Any:
    """The Optuna artifact store of a checked ``--artifacts`` URL (one per process), or ``None``."""
    if not url:
        return None
    if url not in _STORES:
        if url.startswith("s3://"):
            from optuna.artifacts import Boto3ArtifactStore

            _STORES[url] = Boto3ArtifactStore(url[5:])  # endpoint and keys: boto3's own settings
        else:
            from optuna.artifacts import FileSystemArtifactStore

            Path(url).mkdir(exist_ok=True)
            _STORES[url] = FileSystemArtifactStore(url)
    return _STORES[url]


def _metas(study_or_trial: Any, storage: Any) -> dict[str, str]:
    """Uploaded file name -> artifact id, of a trial or a study."""
    from optuna.artifacts import get_all_artifact_meta

    return {m.filename: m.artifact_id for m in get_all_artifact_meta(study_or_trial, storage=storage)}


def _upload(store: Any, path: Path, owner: Any, storage: Any) -> str:
    """Upload a file, or a folder as one tar (no compression: weights do not compress)."""
    from optuna.artifacts import upload_artifact

    if path.is_dir():
        import tarfile

        with tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / (path.name + ".tar")
            with tarfile.open(tar, "w") as fh:
                fh.add(path, arcname=path.name)
            return upload_artifact(artifact_store=store, file_path=str(tar), study_or_trial=owner, storage=storage)
    return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=owner, storage=storage)


def _download(store: Any, artifact_id: str, target: Path) -> None:
    """Download an artifact into ``target`` atomically; a ``.tar`` is unpacked next to it."""
    from optuna.artifacts import download_artifact

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        got = Path(tmp) / target.name
        download_artifact(artifact_store=store, file_path=str(got), artifact_id=artifact_id)
        if target.suffix == ".tar":
            import tarfile

            with tarfile.open(got) as fh:
                fh.extractall(tmp, filter="data")  # only plain files and folders, inside tmp
            unpacked = Path(tmp) / target.stem
            if not target.with_suffix("").exists():
                os.replace(unpacked, target.with_suffix(""))
        else:
            os.replace(got, target)


def upload_trial(store: Any, trial: Any, folder: Path, study_dir: Path) -> list[str]:
    """After a trial trained (it is still RUNNING, so Optuna can record the files on it): upload
    its model and predictions, and the study's targets once. Returns the names uploaded."""
    storage = trial.storage
    done = []
    for path in (folder / MODULE_FILE, folder / ARRAY_DIR, folder / PREDICTIONS):
        if path.exists():
            _upload(store, path, trial, storage)
            done.append(path.name + (".tar" if path.is_dir() else ""))
    targets = study_dir / "predictions" / TARGETS
    if targets.exists() and TARGETS not in _metas(trial.study, storage):
        _upload(store, targets, trial.study, storage)  # two workers at once may both: same content
        done.append(TARGETS)
    return done


def fetch_trial(store: Any, frozen: Any, storage: Any, folder: Path, model: bool = True) -> list[str]:
    """Download what trial ``frozen`` uploaded and ``folder`` lacks (its model only with
    ``model``). Returns the names downloaded."""
    got = []
    for name, artifact_id in _metas(frozen, storage).items():
        local = folder / (ARRAY_DIR if name == MODEL_TAR else name)
        if name not in TRIAL_FILES or local.exists() or (not model and name != PREDICTIONS):
            continue
        if name in (MODULE_FILE, MODEL_TAR) and saved_model(folder) is not None:
            continue
        _download(store, artifact_id, folder / name)
        got.append(name)
    return got


def fetch_targets(store: Any, study: Any, study_dir: Path) -> bool:
    """Download the study's targets when they are not here; whether they are here now."""
    target = study_dir / "predictions" / TARGETS
    if not target.exists():
        artifact_id = _metas(study, study._storage).get(TARGETS)
        if artifact_id is None:
            return False
        _download(store, artifact_id, target)
    return True


def publish_best(store: Any, study: Any, best_dir: Path) -> dict[str, Any]:
    """Upload ``best/`` after finalize (unless the study's published best is already this
    trial's) and record its artifact ids on the study, so that export and predict on another
    machine use the model this finalize selected."""
    import json

    from automl.study.store import BEST_ARTIFACTS_KEY

    number = json.loads((best_dir / "config.json").read_text()).get("number")
    record = study._storage.get_study_system_attrs(study._study_id).get(BEST_ARTIFACTS_KEY) or {}
    if record.get("number") == number and record.get("files"):
        return record
    files = {}
    for name in ("config.json", MODULE_FILE, ARRAY_DIR):
        path = best_dir / name
        if path.exists():
            files[name + (".tar" if path.is_dir() else "")] = _upload(store, path, study, study._storage)
    record = {"number": number, "files": files}
    study._storage.set_study_system_attr(study._study_id, BEST_ARTIFACTS_KEY, record)
    return record


def fetch_best(store: Any, study: Any, best_dir: Path) -> list[str]:
    """Download the published ``best/`` where this machine has none, or one of another trial.
    Returns the names downloaded."""
    import json
    import shutil

    from automl.study.store import BEST_ARTIFACTS_KEY

    record = study._storage.get_study_system_attrs(study._study_id).get(BEST_ARTIFACTS_KEY) or {}
    if "config.json" not in (record.get("files") or {}):
        return []
    config = best_dir / "config.json"
    if config.exists() and saved_model(best_dir) is not None:
        try:
            if json.loads(config.read_text()).get("number") == record.get("number"):
                return []
        except ValueError:
            pass
    shutil.rmtree(best_dir, ignore_errors=True)
    for name, artifact_id in record["files"].items():
        _download(store, artifact_id, best_dir / name)
    return sorted(record["files"])


def study_store(study: Any) -> Any:
    """The artifact store a study's spec names (``--artifacts``), or ``None``."""
    from automl.study.store import SPEC_KEY

    return open_store((study.user_attrs.get(SPEC_KEY) or {}).get("artifacts"))


def fetch_study(study: Any, study_dir: Path, numbers: Any = ()) -> list[str]:
    """Before a model of the study is used here (export, predict): where the study has an
    artifact store, bring ``best/`` and the files of trials ``numbers`` that this machine
    lacks (they ran, or were finalized, on another machine). Returns what was downloaded."""
    store = study_store(study)
    if store is None:
        return []
    got = fetch_best(store, study, study_dir / "best")
    wanted = {int(n) for n in numbers}
    for t in study.get_trials(deepcopy=False) if wanted else []:
        if t.number in wanted:
            got += fetch_trial(store, t, study._storage, study_dir / "trials" / str(t.number))
    return got


#: A running trial's checkpoint travels under this name; its trial's system attr
#: ``automl.study.store.CHECKPOINT_KEY`` names the latest copy in the store.
CHECKPOINT = "checkpoint.pt"


class SharedFiles:
    """A worker's side of the artifact store (``--artifacts``), for each trial it runs:

    - :meth:`running`: before training, the checkpoint of the run this trial retries (a trial
      whose machine died) is downloaded, so it continues from its last epoch here; while it
      trains, each new checkpoint (``automl.training`` writes it atomically) is copied to the
      store, replacing the previous copy, and the trial's system attr names it. Optuna's
      ``upload_artifact`` would add an attr per copy, so the copies are written with the
      store's own ``write``/``remove``.
    - :meth:`upload`: after training, the model and predictions (:func:`upload_trial`).
    """

    def __init__(self, store: Any, study_dir: Path, poll_s: float = 1.0) -> None:
        self.store, self.study_dir, self.poll_s = store, Path(study_dir), poll_s

    def folder(self, number: int) -> Path:
        return self.study_dir / "trials" / str(number)

    def upload(self, trial: Any) -> list[str]:
        return upload_trial(self.store, trial, self.folder(trial.number), self.study_dir)

    def fetch_checkpoint(self, trial: Any) -> str | None:
        """Download the newest checkpoint of the runs this trial retries into the folder of
        the run it retries (where the trial looks for it), unless a checkpoint is here already.
        Returns the artifact id downloaded."""
        from automl.study.store import CHECKPOINT_KEY

        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is None or (self.folder(trial.number) / CHECKPOINT).exists() \
                or (self.folder(retry_of) / CHECKPOINT).exists():
            return None
        storage, study_id = trial.storage, trial.study._study_id
        history = [retry_of, *reversed(storage.get_trial_system_attrs(trial._trial_id).get("retry_history", []))]
        for number in dict.fromkeys(history):
            tid = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
            artifact_id = storage.get_trial_system_attrs(tid).get(CHECKPOINT_KEY)
            if artifact_id:
                try:
                    _download(self.store, artifact_id, self.folder(retry_of) / CHECKPOINT)
                except Exception:  # noqa: BLE001 - removed meanwhile: an older one, or none
                    continue
                return artifact_id
        return None

    @contextmanager
    def running(self, trial: Any):
        """Around a trial's training: fetch its predecessor's checkpoint, ship its own."""
        import optuna

        try:
            inherited = self.fetch_checkpoint(trial)
        except Exception:  # noqa: BLE001 - the store or the storage failing here: train from the start
            inherited = None
        shipper = _Shipper(self.store, trial, self.folder(trial.number) / CHECKPOINT, self.poll_s)
        shipper.start()
        finished = False
        try:
            yield
            finished = True
        except BaseException as exc:
            finished = isinstance(exc, optuna.TrialPruned)
            raise
        finally:
            shipper.stop(final=not finished)
            if finished:  # a finished trial is never rerun: its checkpoints go
                shipper.forget()
                if inherited:
                    self.store.remove(inherited)


class _Shipper:
    """A thread that copies a trial's checkpoint file to the store whenever it changes."""

    def __init__(self, store: Any, trial: Any, path: Path, poll_s: float) -> None:
        self.store, self.trial, self.path, self.poll_s = store, trial, path, poll_s
        self.last: tuple[int, int] | None = None
        self.artifact_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="automl-checkpoint-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.ship()
            except Exception:  # noqa: BLE001 - the next change tries again; training goes on
                pass

    def ship(self) -> None:
        import uuid

        from automl.study.store import CHECKPOINT_KEY

        try:
            fh = open(self.path, "rb")  # the file is replaced (renamed over), never rewritten in place
        except FileNotFoundError:
            return
        with fh:
            st = os.fstat(fh.fileno())
            key = (st.st_mtime_ns, st.st_size)
            if key == self.last:
                return
            new_id = str(uuid.uuid4())
            self.store.write(new_id, fh)
        self.trial.storage.set_trial_system_attr(self.trial._trial_id, CHECKPOINT_KEY, new_id)
        old, self.artifact_id, self.last = self.artifact_id, new_id, key
        if old:
            self.store.remove(old)

    def stop(self, final: bool) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if final:  # interrupted or failed: the newest state, for the rerun on any machine
            try:
                self.ship()
            except Exception:  # noqa: BLE001 - the trial already ended; an older copy stays
                pass

    def forget(self) -> None:
        if self.artifact_id:
            self.store.remove(self.artifact_id)
            self.artifact_id = None


def shared_files(url: str | None, study_dir: str | Path) -> SharedFiles | None:
    """For a backend: the study's artifact store ``url`` as a worker uses it, or ``None`` when
    the study has none (the local folder is all)."""
    store = open_store(url)
    return SharedFiles(store, Path(study_dir)) if store is not None else None
