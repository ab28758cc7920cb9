"""The study store: an Optuna storage, the spec in the study's user attrs, and artifacts.

Layout of the default store (``./studies`` or ``$AUTOML_STUDIES``)::

    studies/NAME/study.db        the Optuna storage (SQLite, WAL mode)
    studies/NAME/storage.url     only when --storage named another storage
    studies/NAME/trials/N/       per-trial weights, config and in-flight checkpoint
    studies/NAME/best/           the best model: model.pt, config.json, summary.json

The spec is JSON in the study's user attrs (key ``automl:spec``), never pickle, so plain
``optuna.load_study`` and optuna-dashboard read every study. Every ``automl:*`` key is a
constant here; no other module spells one out.
"""

from __future__ import annotations

import os
import re
import sqlite3
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from automl.errors import UserError

#: Study user attrs: the spec, test scores of the selected models, baseline rows, the data
#: summary shown to the user, the best trial's details and the ensemble (written by finalize).
SPEC_KEY = "automl:spec"
TEST_KEY = "automl:test_values"
BASELINE_KEY = "automl:baselines"
SUMMARY_KEY = "automl:data_summary"
BEST_KEY = "automl:best"
ENSEMBLE_KEY = "automl:ensemble"
#: Study system attr: the artifact ids of ``best/``'s files in the study's ``--artifacts`` store.
BEST_ARTIFACTS_KEY = "automl:best_artifacts"
#: Trial system attr: the artifact id of a running trial's latest checkpoint in that store.
CHECKPOINT_KEY = "automl:checkpoint"
#: Trials that used up a slot of the target: finished ones.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
#: Every running trial beats (Optuna's heartbeat table) so that a worker that died on another
#: machine is detected: its trial is recovered after GRACE_S (automl.study.recovery.recover_stale).
HEARTBEAT_S = 5
GRACE_S = 20


def quiet_optuna() -> None:
    """Keep Optuna's logging and experimental-feature warnings out of automl's output."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*(independent sampling|constant_liar).*")
    # automl's workers beat the heartbeat themselves around ask/tell (see backends.local).
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used with Study.optimize.*")


def studies_root() -> Path:
    return Path(os.environ.get("AUTOML_STUDIES", "studies")).resolve()


def validate_study_name(name: str) -> str:
    if not STUDY_NAME_RE.match(name or "") or ".." in name:
        raise UserError(f"invalid study name {name!r}: use letters, digits, '.', '_' and '-' "
                        "(at most 100), starting with a letter or digit")
    return name


def validate_storage_url(url: str) -> str:
    """Check a ``--storage`` URL without connecting or writing anything."""
    scheme = url_scheme(url)
    if scheme not in RDB_SCHEMES:
        raise UserError(f"unsupported storage URL {url!r}; valid schemes: sqlite:///PATH, "
                        "postgresql://..., mysql://...")
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's URL
        raise UserError(f"bad storage URL {url!r}: {exc}") from None
    if scheme == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            raise UserError(f"storage URL {url!r} needs a file path (sqlite:///PATH); "
                            "an in-memory database cannot be resumed")
        parent = Path(db).resolve().parent
        if not parent.is_dir():
            raise UserError(f"storage URL {url!r}: folder {parent} does not exist")
    return url


#: Where the storage URL's database lives is shown to the user as this in refusals.
POSTGRES_HINT = "--storage postgresql+psycopg://USER:PASSWORD@HOST:5432/DB (pip install 'automl[postgres]')"


def url_scheme(url: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (the driver after ``+`` dropped)."""
    return url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""


def require_shared(url: str | None, what: str) -> None:
    """Refuse a storage that only one machine can use for ``what`` (a Ray cluster, a worker on
    another machine): SQLite locks through the file system, and its WAL mode, which automl
    uses, does not work over a network file system (sqlite.org/wal.html), so processes on
    several machines would corrupt the study or block one another. ``None`` is the default
    storage, a SQLite file in the study folder."""
    if url is None or url_scheme(url) == "sqlite":
        shown = url or "the default storage, studies/NAME/study.db"
        raise UserError(f"{what} needs a storage every machine reaches over the network; SQLite ({shown}) works "
                        f"on one machine only: use {POSTGRES_HINT}")


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    return Path(make_url(url).database or "")


#: Storages opened by this process, by (pid, URL): opening one (engine, schema check) costs
#: about 0.1 s, and a search opens its study several times. Keyed by pid: an engine must not
#: cross a fork.
_STORAGES: dict[tuple[int, str], RDBStorage] = {}


def forget_storage(url: str) -> None:
    """Drop this process's cached storage for ``url`` (its database is being replaced)."""
    cached = _STORAGES.pop((os.getpid(), url), None)
    if cached is not None:
        cached.engine.dispose()


def make_storage(url: str, create: bool = False) -> RDBStorage:
    """An RDB storage with heartbeats and busy timeouts; one
    per URL and process (``create=True`` always makes a new one).

    SQLite files are switched to WAL mode: readers (the progress display, ``automl
    leaderboard``) never block the workers' writes, and a killed writer leaves a consistent
    database. ``timeout`` makes a writer wait for the lock instead of failing. Only
    ``create=True`` (a new study) creates tables: a reader racing a new study's creation
    must not create them too.
    """
    key = (os.getpid(), url)
    if not create and key in _STORAGES:
        return _STORAGES[key]
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs: dict[str, Any] = {}
    db = _sqlite_path(url)
    if db is not None:
        engine_kwargs["connect_args"] = {"timeout": 60}
        if db.exists() and db.stat().st_size > 0:
            _check_sqlite(db)
        with closing(sqlite3.connect(db, timeout=60)) as con:
            con.execute("PRAGMA journal_mode=WAL")
    for attempt in range(3):
        try:
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                skip_table_creation=not create,
            )
            break
        except Exception as exc:  # re-raised unless it is the race below
            # Two processes making the schema of a new server database at once (a search
            # creating its study while a worker already polls for it): PostgreSQL's CREATE
            # TABLE / CREATE TYPE is not idempotent under concurrency, and the loser gets a
            # unique violation on the catalog. The tables exist then: doing it again passes.
            race = "pg_type_typname_nsp_index" in str(exc) or "already exists" in str(exc)
            if db is not None or attempt == 2 or not race:
                raise
    if db is not None:
        # In WAL mode, synchronous=NORMAL still survives a killed process (only a power cut
        # can lose the last commits) and makes every commit several times cheaper.
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()
    if not create:
        _STORAGES[key] = storage
    return storage


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def requeue(study: optuna.Study, trial: FrozenTrial, deaths: int) -> None:
    """Enqueue a trial's exact parameters again as a retry, in one commit.

    The retry carries Optuna's own markers (system attrs ``failed_trial`` and
    ``retry_history``, as ``RetryHeartbeatStaleTrialCallback`` writes them, so
    ``retried_trial_number`` works), automl's count of the configuration's deaths so far
    (``automl_deaths``, for the retry cap) and the user attr ``retry_of``. Unlike that callback
    it does not copy the dead trial's user attrs (its error, its worker), which would make the
    retry look failed. Intermediate values are kept, so pruning sees the whole curve.
    """
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    original = trial.system_attrs.get("failed_trial", trial.number)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={"retry_of": trial.number},
        system_attrs={"failed_trial": original, "retry_history": history, "automl_deaths": deaths},
        intermediate_values=trial.intermediate_values))


def _check_sqlite(db: Path) -> None:
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{db} is not a readable SQLite database ({exc})") from None
    if tables and "studies" not in tables:
        raise UserError(f"{db} is a SQLite database but not an Optuna study store")


@dataclass
class StudyRef:
    """Where a study lives: its name, its folder of artifacts, and its storage URL."""

    name: str
    dir: Path
    url: str

    @property
    def custom_storage(self) -> bool:
        return (self.dir / "storage.url").exists()

    def trial_dir(self, number: int) -> Path:
        return self.dir / "trials" / str(number)

    def ensure_dir(self) -> None:
        """Make the local artifact folder of a study found through --storage."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.url != default_url(self.dir) and not (self.dir / "storage.url").exists():
            (self.dir / "storage.url").write_text(self.url + "\n")

    def load(self) -> optuna.Study:
        try:
            return optuna.load_study(study_name=self.name, storage=make_storage(self.url))
        except KeyError:
            raise UserError(f"study {self.name!r} is not in its storage {self.url}") from None
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt or foreign files are user errors
            raise UserError(f"cannot open study {self.name!r} at {self.url}: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def new_ref(name: str, storage: str | None) -> StudyRef:
    """The place for a new study; refuses a name already taken. Writes nothing."""
    validate_study_name(name)
    folder = studies_root() / name
    if folder.exists():
        raise UserError(f"study {name!r} already exists in {folder.parent}; "
                        f"continue it with: automl resume {name}")
    url = validate_storage_url(storage) if storage else default_url(folder)
    return StudyRef(name, folder, url)


def default_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'study.db'}"


def create(ref: StudyRef, spec: dict[str, Any], direction: str | list[str], sampler, pruner) -> optuna.Study:
    """Create the study with its spec. A new SQLite file is built under a temporary name and
    renamed into place complete, so a reader (``automl studies``, a progress display) never
    sees - or races to initialise - a half-created database."""
    ref.dir.mkdir(parents=True, exist_ok=False)
    forget_storage(ref.url)
    if ref.url != default_url(ref.dir):
        (ref.dir / "storage.url").write_text(ref.url + "\n")
    db = _sqlite_path(ref.url)
    staged = db is not None and not db.exists()
    url = f"sqlite:///{db.with_name(db.name + '.creating')}" if staged else ref.url
    try:
        storage = make_storage(url, create=True)
        # A list of directions: a multi-objective study (--objective, see automl.study.spec).
        study = optuna.create_study(study_name=ref.name, storage=storage, **(
            {"direction": direction} if isinstance(direction, str) else {"directions": list(direction)}))
        study.set_user_attr(SPEC_KEY, spec)
        if staged:
            storage.engine.dispose()
            tmp = db.with_name(db.name + ".creating")
            # Every connection is closed now: SQLite folded the WAL into the file when the
            # last one closed, so the file alone is the whole database.
            with closing(sqlite3.connect(tmp)) as con:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            tmp.replace(db)
    except optuna.exceptions.DuplicatedStudyError:
        _remove_empty(ref)
        raise UserError(f"study {ref.name!r} already exists in {ref.url}") from None
    except Exception as exc:  # noqa: BLE001 - nothing half-written stays behind
        _remove_empty(ref)
        raise UserError(f"cannot create study in {ref.url}: {str(exc).splitlines()[0]}") from None
    return optuna.load_study(study_name=ref.name, storage=make_storage(ref.url), sampler=sampler, pruner=pruner)


def delete(ref: StudyRef) -> None:
    """Remove a study: from its storage, and its folder under the study store (weights,
    checkpoints, the SQLite file). Used when creating it failed half-way."""
    import shutil

    forget_storage(ref.url)
    try:
        optuna.delete_study(study_name=ref.name, storage=make_storage(ref.url))
    except Exception:  # noqa: BLE001 - already gone, or the file goes with the folder below
        pass
    forget_storage(ref.url)
    shutil.rmtree(ref.dir, ignore_errors=True)


def _remove_empty(ref: StudyRef) -> None:
    forget_storage(ref.url)
    for p in sorted(ref.dir.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    ref.dir.rmdir()


def open_ref(name: str, storage: str | None = None) -> StudyRef:
    """The stored study NAME. With ``storage`` (``automl worker NAME --storage URL`` on another
    machine), the study is looked up in that storage; its local folder is made when used. A
    SQLite ``storage`` is refused: a study in a SQLite file is worked on from the folder that
    holds it (``AUTOML_STUDIES``), on its machine."""
    validate_study_name(name)
    folder = studies_root() / name
    if storage:
        require_shared(validate_storage_url(storage), "automl worker --storage (a worker on another machine)")
        return StudyRef(name, folder, storage)
    if not folder.is_dir():
        known = ", ".join(r.name for r in list_refs()) or "none"
        raise UserError(f"unknown study {name!r} in {folder.parent}; studies: {known}")
    url_file = folder / "storage.url"
    url = url_file.read_text().strip() if url_file.exists() else default_url(folder)
    if not url_file.exists() and not (folder / "study.db").exists():
        raise UserError(f"{folder} holds no study.db: not a study folder")
    return StudyRef(name, folder, url)


def list_refs() -> list[StudyRef]:
    root = studies_root()
    if not root.is_dir():
        return []
    refs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / "study.db").exists() or (folder / "storage.url").exists():
            try:
                refs.append(open_ref(folder.name))
            except UserError:
                continue
    return refs


def spec_of(study: optuna.Study) -> dict[str, Any]:
    """The stored spec (JSON) of an automl study; a :class:`UserError` for a foreign study."""
    spec = study.user_attrs.get(SPEC_KEY)
    if not isinstance(spec, dict):
        raise UserError(f"study {study.study_name!r} was not made by automl (no {SPEC_KEY} attribute)")
    return spec
